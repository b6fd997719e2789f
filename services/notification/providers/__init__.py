"""Adapters that send one notification over one channel's provider, and the readers of the
providers' signed status callbacks. README.md beside this file: what each speaks, its settings."""

from services.notification.providers.base import (
    OutboundMessage,
    Provider,
    ProviderError,
    SendResult,
    WhatsAppTemplate,
)
from services.notification.providers.callbacks import (
    InboundWhatsApp,
    StatusUpdate,
    meta_inbound_messages,
    meta_status_updates,
    meta_verify_challenge,
    twilio_form,
    twilio_status_update,
    verify_meta_signature,
    verify_twilio_signature,
)
from services.notification.providers.factory import build_providers
from services.notification.providers.settings import ProvidersSettings
from services.notification.providers.webhook import (
    WebhookUrlRefused,
    check_webhook_url,
    generate_webhook_secret,
)

__all__ = [
    "InboundWhatsApp",
    "OutboundMessage",
    "Provider",
    "ProviderError",
    "ProvidersSettings",
    "SendResult",
    "StatusUpdate",
    "WebhookUrlRefused",
    "WhatsAppTemplate",
    "build_providers",
    "check_webhook_url",
    "generate_webhook_secret",
    "meta_inbound_messages",
    "meta_status_updates",
    "meta_verify_challenge",
    "twilio_form",
    "twilio_status_update",
    "verify_meta_signature",
    "verify_twilio_signature",
]
