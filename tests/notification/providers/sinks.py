"""Our side of the providers' status callbacks, as small as the gateway route will be:
verify the signature with providers.callbacks, answer 401 when it fails, record the updates."""

from __future__ import annotations

import json

from aiohttp import web

from services.notification.providers.callbacks import (
    StatusUpdate,
    meta_status_updates,
    twilio_status_update,
    verify_meta_signature,
    verify_twilio_signature,
)
from tests.fakes.http import FakeHttpServer


class StatusSink(FakeHttpServer):
    def __init__(self, twilio_auth_token: str = "", meta_app_secret: str = "") -> None:
        super().__init__()
        self.twilio_auth_token = twilio_auth_token
        self.meta_app_secret = meta_app_secret
        self.updates: list[StatusUpdate] = []
        self.delivery_ids: list[str] = []
        self.refused = 0

    @property
    def twilio_url(self) -> str:
        return f"{self.base_url}/v1/providers/twilio/status"

    @property
    def meta_url(self) -> str:
        return f"{self.base_url}/v1/providers/whatsapp/webhook"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/providers/twilio/status", self._twilio),
            web.post("/v1/providers/whatsapp/webhook", self._meta),
        ]

    async def _twilio(self, request: web.Request) -> web.Response:
        form = {name: str(value) for name, value in (await request.post()).items()}
        signature = request.headers.get("X-Twilio-Signature", "")
        if not verify_twilio_signature(str(request.url), form, signature, self.twilio_auth_token):
            self.refused += 1
            return web.Response(status=401)
        self.updates.append(twilio_status_update(form))
        self.delivery_ids.append(request.query.get("delivery_id", ""))
        return web.Response(status=204)

    async def _meta(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if not verify_meta_signature(
            raw, request.headers.get("X-Hub-Signature-256", ""), self.meta_app_secret
        ):
            self.refused += 1
            return web.Response(status=401)
        self.updates.extend(meta_status_updates(json.loads(raw)))
        return web.Response(status=200)
