"""Users' own endpoints, signed per the Standard Webhooks spec: a JSON POST with headers
`webhook-id` (our delivery id: the same on every retry, so a receiver can dedupe on it),
`webhook-timestamp` (Unix seconds) and `webhook-signature` (`v1,<base64 HMAC-SHA256 of
"id.timestamp.body">` under the user's `whsec_...` secret). A 2xx answer is delivered."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import secrets
import socket
from datetime import UTC, datetime
from urllib.parse import urlsplit

from standardwebhooks import Webhook

from services.notification.providers.base import OutboundMessage, ProviderError, SendResult
from services.notification.providers.http import make_client, post, status_error
from services.notification.providers.settings import WebhookSettings

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
LOOPBACK_NAMES = frozenset({"localhost"})


def generate_webhook_secret() -> str:
    """A new endpoint secret, `whsec_` + base64 of 32 random bytes: shown to the user once."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def sign_webhook(secret: str, webhook_id: str, timestamp: datetime, body: bytes) -> str:
    """The `webhook-signature` header's value for body."""
    return Webhook(secret).sign(webhook_id, timestamp, body)


class WebhookUrlRefused(ValueError):
    """An endpoint we do not post to: not https, or inside our own network."""


def check_webhook_url(url: str, settings: WebhookSettings) -> None:
    """Refuses what is wrong with the URL itself (also when a user registers it): a scheme
    other than https (http only to loopback when allowed), no host, an IP literal that is not
    public. Names are resolved at send time (resolve_public)."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise WebhookUrlRefused("webhook URL has no host")
    if parts.scheme == "http" and settings.allow_http_localhost and _is_loopback(host):
        return
    if parts.scheme != "https":
        raise WebhookUrlRefused("webhook URL must use https")
    if parts.username or parts.password:
        raise WebhookUrlRefused("webhook URL must not carry credentials")
    address = _ip_literal(host)
    if address is not None and not _allowed(address, settings):
        raise WebhookUrlRefused("webhook URL points into a private network")


async def resolve_public(url: str, settings: WebhookSettings) -> None:
    """Refuses a host name that resolves to a non-public address (SSRF through DNS)."""
    host = urlsplit(url).hostname or ""
    if _ip_literal(host) is not None or (settings.allow_http_localhost and _is_loopback(host)):
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        raise ProviderError("webhook: host name does not resolve", retryable=True) from None
    for info in infos:
        if not _allowed(ipaddress.ip_address(info[4][0]), settings):
            raise ProviderError("webhook: host resolves into a private network", retryable=False)


class StandardWebhookProvider:
    channel = "webhook"

    def __init__(self, settings: WebhookSettings) -> None:
        self._settings = settings
        self._client = make_client(settings.timeouts)

    async def send(self, message: OutboundMessage) -> SendResult:
        if not message.webhook_secret:
            raise ProviderError("webhook: endpoint has no secret", retryable=False)
        try:
            check_webhook_url(message.to, self._settings)
        except WebhookUrlRefused as refused:
            raise ProviderError(f"webhook: {refused}", retryable=False) from None
        await resolve_public(message.to, self._settings)
        now = datetime.now(UTC)
        body = webhook_body(message, now)
        headers = {
            "content-type": "application/json",
            "webhook-id": message.delivery_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": sign_webhook(message.webhook_secret, message.delivery_id, now, body),
        }
        response = await post(
            "webhook",
            self._client,
            message.to,
            content=body,
            headers=headers,
            total_seconds=self._settings.timeouts.total_seconds,
            read_body=False,
        )
        if not response.is_success:
            raise status_error("webhook", response, response.reason_phrase)
        return SendResult(provider_message_id=message.delivery_id, status="delivered")

    async def aclose(self) -> None:
        await self._client.aclose()


def webhook_body(message: OutboundMessage, now: datetime) -> bytes:
    """The spec's suggested envelope: type, timestamp, data."""
    envelope = {
        "type": message.webhook_event_type or "notification",
        "timestamp": now.isoformat().replace("+00:00", "Z"),
        "data": {"id": message.delivery_id, "subject": message.subject, "body": message.body},
    }
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _is_loopback(host: str) -> bool:
    address = _ip_literal(host)
    return host.lower() in LOOPBACK_NAMES if address is None else address.is_loopback


def _allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address, settings: WebhookSettings) -> bool:
    if settings.allow_http_localhost and address.is_loopback:
        return True
    return address.is_global
