"""Providers' status callbacks: verify the signature over exactly what arrived, then read
the status changes. Twilio posts a form to our StatusCallback URL signed with
X-Twilio-Signature; Meta posts JSON to our WhatsApp webhook signed with X-Hub-Signature-256.
Statuses are the providers' words, lower-cased (sent, delivered, read, failed, undelivered,
...): the notification service orders them (a late `sent` never undoes `delivered`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

DEFAULT_PORTS = {"https": 443, "http": 80}
META_SIGNATURE_PREFIX = "sha256="


@dataclass(frozen=True)
class StatusUpdate:
    provider_message_id: str
    status: str
    error: str | None
    # Our delivery id when the provider echoes it (Meta's biz_opaque_callback_data).
    delivery_id: str | None = None


@dataclass(frozen=True)
class InboundWhatsApp:
    """A message a user sent us on WhatsApp: it opens the 24-hour window for free text."""

    sender: str  # E.164, with the +
    provider_message_id: str
    received_at: datetime
    text: str | None


def twilio_form(raw_body: bytes) -> dict[str, str]:
    """The parameters of Twilio's form body, empty ones kept: the signature covers them
    (`ErrorCode=` on a status without error), so dropping one breaks verification."""
    return dict(parse_qsl(raw_body.decode(), keep_blank_values=True, strict_parsing=False))


def twilio_signature(url: str, form: dict[str, str], auth_token: str) -> str:
    """base64 HMAC-SHA1 under the auth token of the full URL followed by each POST
    parameter's name and value, sorted by name, with no separators."""
    signed = url + "".join(name + form[name] for name in sorted(form))
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verify_twilio_signature(url: str, form: dict[str, str], signature: str, auth_token: str) -> bool:
    """url is the full URL Twilio called, query included, as configured in StatusCallback.
    Like Twilio's own validator, the URL with and without its scheme's default port match
    (a proxy may add or drop `:443`)."""
    if not signature or not auth_token:
        return False
    return any(
        hmac.compare_digest(twilio_signature(candidate, form, auth_token).encode(), signature.encode())
        for candidate in _with_and_without_default_port(url)
    )


def twilio_status_update(form: dict[str, str]) -> StatusUpdate:
    """The status callback's form: MessageSid, MessageStatus, ErrorCode (failed and
    undelivered ones). Older accounts still send SmsSid/SmsStatus beside them."""
    sid = form.get("MessageSid") or form.get("SmsSid")
    status = form.get("MessageStatus") or form.get("SmsStatus")
    if not sid or not status:
        raise ValueError("not a Twilio status callback: MessageSid and MessageStatus are required")
    code = form.get("ErrorCode") or None
    error = None
    if code:
        error = f"{code}: {form['ErrorMessage']}" if form.get("ErrorMessage") else code
    return StatusUpdate(provider_message_id=sid, status=status.lower(), error=error)


def meta_signature(raw_body: bytes, app_secret: str) -> str:
    return META_SIGNATURE_PREFIX + hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()


def verify_meta_signature(raw_body: bytes, header: str, app_secret: str) -> bool:
    """header is X-Hub-Signature-256, `sha256=<hex HMAC-SHA256 of the raw body under the
    app secret>`. Over the bytes as received: re-serialised JSON would not match."""
    if not header or not app_secret or not header.startswith(META_SIGNATURE_PREFIX):
        return False
    return hmac.compare_digest(meta_signature(raw_body, app_secret).encode(), header.lower().encode())


def meta_verify_challenge(params: dict[str, str], verify_token: str) -> str | None:
    """The subscription handshake (GET ?hub.mode=subscribe&hub.verify_token=..&hub.challenge=..):
    the challenge to answer with 200, or None (answer 403) when the token is not ours."""
    if params.get("hub.mode") != "subscribe" or not verify_token:
        return None
    if not hmac.compare_digest(params.get("hub.verify_token", "").encode(), verify_token.encode()):
        return None
    return params.get("hub.challenge")


def meta_status_updates(payload: dict[str, Any]) -> list[StatusUpdate]:
    """Every `statuses[]` of a WhatsApp Business Account webhook, in the order they came."""
    updates = []
    for value in _message_values(payload):
        for status in _dicts(value.get("statuses")):
            wamid, word = status.get("id"), status.get("status")
            if not isinstance(wamid, str) or not isinstance(word, str):
                continue
            opaque = status.get("biz_opaque_callback_data")
            updates.append(
                StatusUpdate(
                    provider_message_id=wamid,
                    status=word.lower(),
                    error=_meta_error(_dicts(status.get("errors"))),
                    delivery_id=opaque if isinstance(opaque, str) and opaque else None,
                )
            )
    return updates


def meta_inbound_messages(payload: dict[str, Any]) -> list[InboundWhatsApp]:
    """Every `messages[]` (users writing to us) of a WhatsApp Business Account webhook."""
    inbound = []
    for value in _message_values(payload):
        for message in _dicts(value.get("messages")):
            sender, wamid, timestamp = message.get("from"), message.get("id"), message.get("timestamp")
            if not isinstance(sender, str) or not isinstance(wamid, str) or not str(timestamp).isdigit():
                continue
            text = message.get("text")
            inbound.append(
                InboundWhatsApp(
                    sender="+" + sender.removeprefix("+"),
                    provider_message_id=wamid,
                    received_at=datetime.fromtimestamp(int(timestamp), UTC),
                    text=text.get("body") if isinstance(text, dict) else None,
                )
            )
    return inbound


def _message_values(payload: dict[str, Any]) -> list[dict[str, Any]]:
    if payload.get("object") != "whatsapp_business_account":
        return []
    return [
        change["value"]
        for entry in _dicts(payload.get("entry"))
        for change in _dicts(entry.get("changes"))
        if change.get("field") == "messages" and isinstance(change.get("value"), dict)
    ]


def _meta_error(errors: list[dict[str, Any]]) -> str | None:
    if not errors:
        return None
    first = errors[0]
    title = first.get("title") or first.get("message") or ""
    return f"{first.get('code', '')}: {title}".strip(": ") or "failed"


def _dicts(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _with_and_without_default_port(url: str) -> list[str]:
    parts = urlsplit(url)
    default = DEFAULT_PORTS.get(parts.scheme)
    if default is None or parts.hostname is None:
        return [url]
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    if parts.port is None:
        other = parts._replace(netloc=f"{prefix}{host}:{default}")
    elif parts.port == default:
        other = parts._replace(netloc=f"{prefix}{host}")
    else:
        return [url]
    return [url, urlunsplit(other)]
