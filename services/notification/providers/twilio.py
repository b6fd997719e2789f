"""SMS through Twilio's Messages API: a form POST to
`{base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json` with HTTP Basic AccountSid:AuthToken,
answered 201 with the message's `sid` (SM...) and `status` `queued` (`accepted` through a
Messaging Service). Status changes come back later to StatusCallback (callbacks.py)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from services.notification.providers.base import OutboundMessage, ProviderError, SendResult
from services.notification.providers.http import json_or_empty, make_client, post, status_error
from services.notification.providers.settings import SmsSettings

CREATED = 201


class TwilioSmsProvider:
    channel = "sms"

    def __init__(self, settings: SmsSettings) -> None:
        if settings.auth_token is None:
            raise ValueError("sms needs an auth_token")
        self._settings = settings
        self._url = (
            f"{settings.base_url.rstrip('/')}/2010-04-01/Accounts/{settings.account_sid}/Messages.json"
        )
        self._total_seconds = settings.timeouts.total_seconds
        self._client = make_client(
            settings.timeouts, auth=(settings.account_sid, settings.auth_token.get_secret_value())
        )

    async def send(self, message: OutboundMessage) -> SendResult:
        response = await post(
            "twilio", self._client, self._url, data=self._form(message), total_seconds=self._total_seconds
        )
        document = json_or_empty(response)
        if response.status_code != CREATED:
            code = document.get("code")
            raise status_error(
                "twilio", response, str(document.get("message", "")), str(code) if code else None
            )
        sid = document.get("sid")
        if not isinstance(sid, str) or not sid:
            # Accepted by someone, but not in Twilio's words: retrying could send it twice.
            raise ProviderError("twilio: 201 without a message sid", retryable=False)
        return SendResult(provider_message_id=sid, status=str(document.get("status", "queued")))

    def _form(self, message: OutboundMessage) -> dict[str, str]:
        form = {"To": message.to, "Body": message.body}
        if self._settings.messaging_service_sid:
            form["MessagingServiceSid"] = self._settings.messaging_service_sid
        else:
            form["From"] = self._settings.from_number or ""
        if self._settings.status_callback_url:
            form["StatusCallback"] = with_query(
                self._settings.status_callback_url, delivery_id=message.delivery_id
            )
        return form

    async def aclose(self) -> None:
        await self._client.aclose()


def with_query(url: str, **params: str) -> str:
    """url with params added to its query (kept: what was there)."""
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))
