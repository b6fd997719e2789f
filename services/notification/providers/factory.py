"""One adapter per enabled channel, built from settings."""

from __future__ import annotations

from services.notification.providers.base import Provider
from services.notification.providers.settings import ProvidersSettings
from services.notification.providers.smtp import SmtpEmailProvider
from services.notification.providers.twilio import TwilioSmsProvider
from services.notification.providers.webhook import StandardWebhookProvider
from services.notification.providers.whatsapp import WhatsAppCloudProvider


def build_providers(settings: ProvidersSettings) -> dict[str, Provider]:
    """channel -> adapter, for the channels enabled in settings; call aclose() on each at shutdown."""
    providers: dict[str, Provider] = {}
    if settings.email.enabled:
        providers["email"] = SmtpEmailProvider(settings.email)
    if settings.sms.enabled:
        providers["sms"] = TwilioSmsProvider(settings.sms)
    if settings.whatsapp.enabled:
        providers["whatsapp"] = WhatsAppCloudProvider(settings.whatsapp)
    if settings.webhook.enabled:
        providers["webhook"] = StandardWebhookProvider(settings.webhook)
    return providers
