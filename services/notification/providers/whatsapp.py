"""WhatsApp through Meta's Cloud API: `POST {base_url}/{version}/{phone_number_id}/messages`
with `Authorization: Bearer <token>` and a JSON message, answered 200 with
`messages[0].id` (`wamid...`). Inside the 24-hour customer-service window a free-text message
goes; outside it only an approved template (name, language code, body parameters in order).
Status changes come back to our webhook (callbacks.py)."""

from __future__ import annotations

from typing import Any

import httpx

from services.notification.providers.base import OutboundMessage, ProviderError, SendResult
from services.notification.providers.http import json_or_empty, make_client, post, status_error
from services.notification.providers.settings import WhatsAppSettings

OK = 200
# Meta answers these throttling and outage codes with a 400 at times; waiting helps:
# 2 service unavailable, 4 / 80007 app and account rate limits, 130429 throughput, 131056 pair rate.
RETRYABLE_ERROR_CODES = frozenset({2, 4, 80007, 130429, 131056})


class WhatsAppCloudProvider:
    channel = "whatsapp"

    def __init__(self, settings: WhatsAppSettings) -> None:
        if settings.access_token is None:
            raise ValueError("whatsapp needs an access_token")
        self._url = (
            f"{settings.base_url.rstrip('/')}/{settings.api_version}/{settings.phone_number_id}/messages"
        )
        self._total_seconds = settings.timeouts.total_seconds
        self._client = make_client(
            settings.timeouts,
            headers={"Authorization": f"Bearer {settings.access_token.get_secret_value()}"},
        )

    async def send(self, message: OutboundMessage) -> SendResult:
        response = await post(
            "whatsapp",
            self._client,
            self._url,
            json=message_payload(message),
            total_seconds=self._total_seconds,
        )
        document = json_or_empty(response)
        if response.status_code != OK:
            raise _error(response, document)
        messages = document.get("messages")
        first = messages[0] if isinstance(messages, list) and messages else {}
        wamid = first.get("id") if isinstance(first, dict) else None
        if not isinstance(wamid, str) or not wamid:
            raise ProviderError("whatsapp: 200 without messages[0].id", retryable=False)
        return SendResult(provider_message_id=wamid, status=str(first.get("message_status", "accepted")))

    async def aclose(self) -> None:
        await self._client.aclose()


def message_payload(message: OutboundMessage) -> dict[str, Any]:
    """The Graph API message: free text inside the window, else the approved template."""
    payload: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        # Meta takes the number in international form without the leading +.
        "to": message.to.removeprefix("+"),
        # Echoed in every status webhook of this message: it names our delivery even if
        # the send's answer (the wamid) was lost.
        "biz_opaque_callback_data": message.delivery_id,
    }
    if message.whatsapp_session_open:
        payload["type"] = "text"
        payload["text"] = {"body": message.body, "preview_url": False}
        return payload
    template = message.whatsapp_template
    if template is None:
        raise ProviderError(
            "whatsapp: outside the 24-hour window only a template message may be sent", retryable=False
        )
    if not all(value.strip() for value in template.parameters):
        # Meta refuses an empty parameter (code 100); better said before sending.
        raise ProviderError("whatsapp: a template parameter is empty", retryable=False)
    payload["type"] = "template"
    payload["template"] = {"name": template.name, "language": {"code": template.language}}
    if template.parameters:
        parameters = [{"type": "text", "text": value} for value in template.parameters]
        payload["template"]["components"] = [{"type": "body", "parameters": parameters}]
    return payload


def _error(response: httpx.Response, document: dict[str, Any]) -> ProviderError:
    error = document.get("error")
    error = error if isinstance(error, dict) else {}
    code = error.get("code")
    details = (
        error.get("error_data", {}).get("details") if isinstance(error.get("error_data"), dict) else None
    )
    failure = status_error(
        "whatsapp", response, str(details or error.get("message", "")), str(code) if code else None
    )
    if code in RETRYABLE_ERROR_CODES:
        failure.retryable = True
    return failure
