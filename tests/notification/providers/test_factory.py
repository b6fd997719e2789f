"""Settings from config and the environment, and one adapter per enabled channel."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from services.kit.config.settings import MeshSettings
from services.notification.providers import Provider, ProvidersSettings, build_providers
from services.notification.providers.smtp import SmtpEmailProvider
from services.notification.providers.twilio import TwilioSmsProvider
from services.notification.providers.webhook import StandardWebhookProvider
from services.notification.providers.whatsapp import WhatsAppCloudProvider


class NotificationSection(BaseModel):
    providers: ProvidersSettings = ProvidersSettings()


class NotificationMesh(MeshSettings):
    """How the notification service nests these settings: [notification.providers]."""

    notification: NotificationSection = NotificationSection()


def test_nothing_is_enabled_by_default() -> None:
    assert build_providers(ProvidersSettings()) == {}


async def test_environment_configures_every_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    environment = {
        "EMAIL__ENABLED": "true",
        "EMAIL__HOST": "smtp.relay.example",
        "EMAIL__USERNAME": "mailer",
        "EMAIL__PASSWORD": "smtp-secret",
        "SMS__ENABLED": "true",
        "SMS__ACCOUNT_SID": "AC" + "a" * 32,
        "SMS__AUTH_TOKEN": "twilio-secret",
        "SMS__MESSAGING_SERVICE_SID": "MG" + "b" * 32,
        "WHATSAPP__ENABLED": "true",
        "WHATSAPP__PHONE_NUMBER_ID": "106540352242922",
        "WHATSAPP__ACCESS_TOKEN": "graph-secret",
        "WEBHOOK__ENABLED": "true",
    }
    for name, value in environment.items():
        monkeypatch.setenv(f"EM_NOTIFICATION__PROVIDERS__{name}", value)

    settings = NotificationMesh().notification.providers
    providers = build_providers(settings)

    assert settings.sms.auth_token is not None
    assert settings.sms.auth_token.get_secret_value() == "twilio-secret"
    assert "twilio-secret" not in repr(settings)
    assert "smtp-secret" not in repr(settings)
    assert {channel: type(provider) for channel, provider in providers.items()} == {
        "email": SmtpEmailProvider,
        "sms": TwilioSmsProvider,
        "whatsapp": WhatsAppCloudProvider,
        "webhook": StandardWebhookProvider,
    }
    for channel, provider in providers.items():
        assert isinstance(provider, Provider)
        assert provider.channel == channel
        await provider.aclose()


@pytest.mark.parametrize(
    "section",
    [
        {"sms": {"enabled": True, "account_sid": "AC1", "from_number": "+15005550006"}},  # no token
        {"sms": {"enabled": True, "account_sid": "AC1", "auth_token": "t"}},  # no sender
        {"whatsapp": {"enabled": True, "access_token": "t"}},  # no phone number id
        {"whatsapp": {"api_version": "23"}},
        {"email": {"username": "mailer"}},  # a username without its password
        {"email": {"security": "maybe"}},
    ],
)
def test_incomplete_channel_is_refused_at_start(section: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ProvidersSettings.model_validate(section)
