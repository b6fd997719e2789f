"""Meta's WhatsApp Cloud API as its clients see it: `POST /{version}/{phone_number_id}/messages`
with `Authorization: Bearer <token>` and a JSON message (text or template), answered 200 with
`messages[0].id` ("wamid..."). It can post the WhatsApp Business Account webhooks (statuses,
users' messages) signed with X-Hub-Signature-256, computed here on its own."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from aiohttp import web

from tests.fakes.http import FakeHttpServer

WABA_ID = "102290129340398"


@dataclass
class GraphMessage:
    wamid: str
    to: str
    payload: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.payload.get("type", "text"))


def graph_error(status: int, code: int, message: str, error_type: str = "OAuthException") -> web.Response:
    return web.json_response(
        {
            "error": {
                "message": message,
                "type": error_type,
                "code": code,
                "error_data": {"messaging_product": "whatsapp", "details": message},
                "fbtrace_id": secrets.token_urlsafe(12),
            }
        },
        status=status,
    )


def sign_meta_body(app_secret: str, body: bytes) -> str:
    """X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


class FakeGraphApi(FakeHttpServer):
    def __init__(
        self,
        access_token: str = "fake-graph-token",
        phone_number_id: str = "106540352242922",
        app_secret: str = "fake-app-secret",
        display_phone_number: str = "15550783881",
        webhook_url: str | None = None,
        auto_statuses: Sequence[str] = (),
    ) -> None:
        """webhook_url + auto_statuses: each status posted in order (signed) to our webhook
        right after a message is accepted, as Meta does (e.g. ("sent", "delivered", "read"));
        answers in `callback_answers`."""
        super().__init__()
        self.webhook_url = webhook_url
        self.auto_statuses = tuple(auto_statuses)
        self.access_token = access_token
        self.phone_number_id = phone_number_id
        self.app_secret = app_secret
        self.display_phone_number = display_phone_number
        self.messages: list[GraphMessage] = []
        self.unauthorized_requests = 0

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/{version}/{phone_number_id}/messages", self._send_message)]

    def default_failure_body(self, status: int) -> dict[str, object]:
        return {"error": {"message": "An unknown error has occurred.", "type": "OAuthException", "code": 1}}

    async def _send_message(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.access_token}":
            self.unauthorized_requests += 1
            return graph_error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        if not request.match_info["version"].startswith("v"):
            return graph_error(400, 2500, "Unknown path components")
        if request.match_info["phone_number_id"] != self.phone_number_id:
            return graph_error(
                400, 100, "Unsupported post request. Object does not exist", "GraphMethodException"
            )
        try:
            payload = await request.json()
        except ValueError:
            return graph_error(400, 100, "Invalid parameter")
        problem = _invalid(payload)
        if problem:
            return graph_error(400, 100, problem)
        message = GraphMessage(wamid=_wamid(), to=payload["to"], payload=payload)
        self.messages.append(message)
        if self.webhook_url and self.auto_statuses:
            self.in_background(self._report(self.webhook_url, message.wamid))
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": message.to, "wa_id": message.to}],
                "messages": [{"id": message.wamid}],
            }
        )

    async def _report(self, url: str, wamid: str) -> None:
        for status in self.auto_statuses:
            await self.report(f"{wamid} {status}", self.post_webhook(url, self.status_payload(wamid, status)))

    def message(self, wamid: str) -> GraphMessage:
        return next(message for message in self.messages if message.wamid == wamid)

    def status_payload(
        self, wamid: str, status: str, errors: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        message = self.message(wamid)
        entry: dict[str, Any] = {
            "id": wamid,
            "status": status,
            "timestamp": str(int(time.time())),
            "recipient_id": message.to,
        }
        opaque = message.payload.get("biz_opaque_callback_data")
        if opaque:
            entry["biz_opaque_callback_data"] = opaque
        if errors:
            entry["errors"] = errors
        return self._webhook({"statuses": [entry]})

    def inbound_payload(self, sender: str, text: str) -> dict[str, Any]:
        message = {
            "from": sender.removeprefix("+"),
            "id": _wamid(),
            "timestamp": str(int(time.time())),
            "type": "text",
            "text": {"body": text},
        }
        contacts = [{"profile": {"name": "Test User"}, "wa_id": sender.removeprefix("+")}]
        return self._webhook({"contacts": contacts, "messages": [message]})

    async def post_webhook(
        self, url: str, payload: dict[str, Any], signing_secret: str | None = None
    ) -> httpx.Response:
        """Posts payload as Meta does, signed with the app secret (or `signing_secret`)."""
        body = json.dumps(payload).encode()
        signature = sign_meta_body(signing_secret or self.app_secret, body)
        return await self.post_callback(
            url,
            content=body,
            headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature},
        )

    def _webhook(self, value: dict[str, Any]) -> dict[str, Any]:
        metadata = {
            "display_phone_number": self.display_phone_number,
            "phone_number_id": self.phone_number_id,
        }
        change = {
            "field": "messages",
            "value": {"messaging_product": "whatsapp", "metadata": metadata, **value},
        }
        return {"object": "whatsapp_business_account", "entry": [{"id": WABA_ID, "changes": [change]}]}


def _wamid() -> str:
    return "wamid." + base64.b64encode(secrets.token_bytes(30)).decode()


def _invalid(payload: object) -> str | None:
    """What the Graph API would refuse with code 100 (invalid parameter), else None."""
    if not isinstance(payload, dict) or payload.get("messaging_product") != "whatsapp":
        return "The parameter messaging_product is required."
    if not str(payload.get("to", "")).isdigit():
        return "The parameter to is invalid."
    kind = payload.get("type", "text")
    if kind == "text":
        body = payload.get("text", {}).get("body") if isinstance(payload.get("text"), dict) else None
        return None if isinstance(body, str) and body else "The parameter text['body'] is required."
    if kind == "template":
        template = payload.get("template")
        if not isinstance(template, dict) or not template.get("name"):
            return "The parameter template['name'] is required."
        language = template.get("language")
        if not isinstance(language, dict) or not language.get("code"):
            return "The parameter template['language']['code'] is required."
        return None
    return f"Unsupported message type {kind}."
