"""A user's endpoint receiving our webhooks: verifies the Standard Webhooks signature by the
spec's own steps (written here, not with the sender's library), refuses a bad one with 401,
and records what arrived."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.http import FakeHttpServer

# The spec's suggested tolerance against replays.
TIMESTAMP_TOLERANCE_SECONDS = 5 * 60


@dataclass(frozen=True)
class ReceivedWebhook:
    webhook_id: str
    timestamp: int
    headers: dict[str, str]
    body: bytes
    verified: bool

    def json(self) -> Any:
        return json.loads(self.body)


def standard_webhook_valid(secret: str, headers: dict[str, str], body: bytes, now: float) -> bool:
    """The spec: the key is base64 after `whsec_`; the signed content is `id.timestamp.body`;
    `webhook-signature` holds space-separated `v1,<base64 HMAC-SHA256>`, any of which may match;
    a timestamp too far from now is refused."""
    webhook_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not webhook_id or not timestamp.isdigit() or not signatures:
        return False
    if abs(now - int(timestamp)) > TIMESTAMP_TOLERANCE_SECONDS:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(
        hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    ).decode()
    for versioned in signatures.split(" "):
        version, _, signature = versioned.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return True
    return False


class FakeWebhookReceiver(FakeHttpServer):
    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret
        self.received: list[ReceivedWebhook] = []

    @property
    def url(self) -> str:
        return f"{self.base_url}/hooks/expense-mesh"

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/hooks/expense-mesh", self._receive)]

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {name.lower(): value for name, value in request.headers.items()}
        verified = standard_webhook_valid(self.secret, headers, body, time.time())
        timestamp = headers.get("webhook-timestamp", "")
        self.received.append(
            ReceivedWebhook(
                webhook_id=headers.get("webhook-id", ""),
                timestamp=int(timestamp) if timestamp.isdigit() else 0,
                headers=headers,
                body=body,
                verified=verified,
            )
        )
        return web.Response(status=204 if verified else 401)

    @property
    def verified(self) -> list[ReceivedWebhook]:
        return [webhook for webhook in self.received if webhook.verified]
