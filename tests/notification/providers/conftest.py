"""The fakes on free loopback ports, and adapters configured to talk to them."""

from __future__ import annotations

from pydantic import SecretStr

from services.notification.providers.settings import (
    EmailSettings,
    SmsSettings,
    TimeoutSettings,
    WebhookSettings,
    WhatsAppSettings,
)
from tests.fakes.fixtures import fake_graph, fake_smtp, fake_twilio
from tests.fakes.graph import FakeGraphApi
from tests.fakes.smtp import FakeSmtpServer
from tests.fakes.twilio import FakeTwilio

__all__ = ["fake_graph", "fake_smtp", "fake_twilio"]

# The adapters' own defaults: generous on a loaded machine. The stall tests use STALL_TIMEOUTS
# with a fake that stalls far longer (STALL_SECONDS), so they fail fast yet never by chance.
TIMEOUTS = TimeoutSettings()
STALL_TIMEOUTS = TimeoutSettings(connect_seconds=5.0, total_seconds=0.3)
STALL_SECONDS = 3.0


def email_settings(server: FakeSmtpServer, **overrides: object) -> EmailSettings:
    values: dict[str, object] = {
        "enabled": True,
        "host": server.host,
        "port": server.port,
        "username": server.username,
        "password": SecretStr(server.password),
        "from_address": "Expense Mesh <alerts@mesh.example>",
        "ca_file": str(server.certificate.cert_file),
        "timeouts": TIMEOUTS,
    }
    return EmailSettings.model_validate(values | overrides)


def sms_settings(fake: FakeTwilio, **overrides: object) -> SmsSettings:
    values: dict[str, object] = {
        "enabled": True,
        "base_url": fake.base_url,
        "account_sid": fake.account_sid,
        "auth_token": SecretStr(fake.auth_token),
        "from_number": "+15005550006",
        "timeouts": TIMEOUTS,
    }
    return SmsSettings.model_validate(values | overrides)


def whatsapp_settings(fake: FakeGraphApi, **overrides: object) -> WhatsAppSettings:
    values: dict[str, object] = {
        "enabled": True,
        "base_url": fake.base_url,
        "phone_number_id": fake.phone_number_id,
        "access_token": SecretStr(fake.access_token),
        "app_secret": SecretStr(fake.app_secret),
        "timeouts": TIMEOUTS,
    }
    return WhatsAppSettings.model_validate(values | overrides)


def webhook_settings(**overrides: object) -> WebhookSettings:
    values: dict[str, object] = {"enabled": True, "allow_http_localhost": True, "timeouts": TIMEOUTS}
    return WebhookSettings.model_validate(values | overrides)
