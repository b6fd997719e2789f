"""Wiring of the web service: the static single-page app (static/), the session
endpoint (/web/session/*) and the API's OpenAPI document (/v1/openapi.json), behind the
gateway on the API's origin (README.md)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from pathlib import Path

from aiohttp import web

from services.kit.config.settings import REPO_ROOT, MeshSettings
from services.web.sessions import AuthClient, AuthRefused, Client, Tokens, UserAgentChannels

STATIC_DIR = Path(__file__).parent / "static"
log = logging.getLogger("web")

# Every answer, pages and JSON alike. Scripts, styles, images and fetches from this
# origin only: no inline script or style, no eval, no framing, no form posts elsewhere.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "manifest-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}
# The session endpoints answer only the page's own fetches: a cross-site form cannot
# send this header, and SameSite=Strict keeps the cookie off cross-site requests anyway.
CSRF_HEADER = "x-em-csrf"
SESSION_PATH = "/web/session"
# Written by `make gen` (tools/openapi.py); the gateways route OPENAPI_PATH here, without a token.
OPENAPI_DOCUMENT = REPO_ROOT / "gen" / "openapi" / "expense-mesh.openapi.json"
OPENAPI_PATH = "/v1/openapi.json"


@web.middleware
async def security_headers(request: web.Request, handler):  # type: ignore[no-untyped-def]
    try:
        response = await handler(request)
    except web.HTTPException as error:
        response = error
    response.headers.update(SECURITY_HEADERS)
    return response


class SessionEndpoint:
    """POST /web/session/{signup,login,refresh,logout}: the page gets the access token,
    the refresh token goes into (and comes back from) the HttpOnly cookie."""

    def __init__(self, auth: AuthClient, settings: MeshSettings) -> None:
        self.auth = auth
        self.cookie = settings.web.refresh_cookie_name
        self.secure = settings.web.refresh_cookie_secure
        self.max_age = settings.jwt.refresh_ttl_days * 86400

    async def sign_up(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        tokens = await self.auth.sign_up(
            _text(body, "email"), _text(body, "password"), _text(body, "display_name"), _client(request)
        )
        return self._with_cookie(tokens)

    async def log_in(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        tokens = await self.auth.log_in(_text(body, "email"), _text(body, "password"), _client(request))
        return self._with_cookie(tokens)

    async def refresh(self, request: web.Request) -> web.Response:
        _require_csrf_header(request)
        refresh_token = request.cookies.get(self.cookie, "")
        if not refresh_token:
            return _error(401, 16, "not signed in")
        try:
            tokens = await self.auth.refresh(refresh_token, _client(request))
        except AuthRefused:
            response = _error(401, 16, "the session has ended: sign in again")
            self._clear(response)
            return response
        return self._with_cookie(tokens)

    async def log_out(self, request: web.Request) -> web.Response:
        _require_csrf_header(request)
        refresh_token = request.cookies.get(self.cookie, "")
        if refresh_token:
            try:
                await self.auth.log_out(refresh_token, _client(request))
            except AuthRefused as refused:
                # An already ended session is logged out; anything else is the page's to show.
                if refused.status != 401:
                    raise
        response = web.json_response({"signed_out": True}, headers={"cache-control": "no-store"})
        self._clear(response)
        return response

    def _with_cookie(self, tokens: Tokens) -> web.Response:
        response = web.json_response(tokens.for_page(), headers={"cache-control": "no-store"})
        response.set_cookie(
            self.cookie,
            tokens.refresh_token,
            max_age=self.max_age,
            path=SESSION_PATH,
            httponly=True,
            secure=self.secure,
            samesite="Strict",
        )
        return response

    def _clear(self, response: web.Response) -> None:
        response.del_cookie(self.cookie, path=SESSION_PATH, secure=self.secure, samesite="Strict")


def _client(request: web.Request) -> Client:
    return Client(
        forwarded_for=request.headers.get("x-forwarded-for", request.remote or ""),
        user_agent=request.headers.get("user-agent", "")[:512],
    )


def _require_csrf_header(request: web.Request) -> None:
    if request.headers.get(CSRF_HEADER) != "1":
        raise _refusal(403, 7, f"missing {CSRF_HEADER} header")


async def _json_body(request: web.Request) -> dict[str, object]:
    _require_csrf_header(request)
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise _refusal(400, 3, "the body must be a JSON object")
    return body


def _text(body: dict[str, object], field: str) -> str:
    value = body.get(field, "")
    if not isinstance(value, str):
        raise _refusal(400, 3, f"{field} must be a string")
    return value


def _error(
    status: int, code: int, message: str, details: list[dict[str, object]] | None = None
) -> web.Response:
    """The gateway's error shape, so the page reads one shape everywhere."""
    body = {"code": code, "message": message, "details": details or []}
    return web.json_response(body, status=status, headers={"cache-control": "no-store"})


def _refusal(status: int, code: int, message: str) -> web.HTTPException:
    error = web.HTTPException(
        text=json.dumps({"code": code, "message": message, "details": []}), content_type="application/json"
    )
    error.set_status(status)
    return error


@web.middleware
async def auth_refusals(request: web.Request, handler):  # type: ignore[no-untyped-def]
    try:
        return await handler(request)
    except AuthRefused as refused:
        return _error(refused.status, refused.code, refused.message, refused.details)


async def index(request: web.Request) -> web.FileResponse:
    # The page itself is never cached: a new deploy's asset list is seen at once.
    return web.FileResponse(STATIC_DIR / "index.html", headers={"cache-control": "no-cache"})


async def openapi_document(request: web.Request) -> web.FileResponse:
    return web.FileResponse(
        OPENAPI_DOCUMENT, headers={"content-type": "application/json", "cache-control": "no-cache"}
    )


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def build_app(settings: MeshSettings, channels: UserAgentChannels) -> web.Application:
    app = web.Application(middlewares=[security_headers, auth_refusals], client_max_size=64 * 1024)
    session = SessionEndpoint(AuthClient(channels, settings.web.auth_call_timeout_seconds), settings)
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get(OPENAPI_PATH, openapi_document)
    app.router.add_static("/assets/", STATIC_DIR, append_version=False, show_index=False)
    app.router.add_post(f"{SESSION_PATH}/signup", session.sign_up)
    app.router.add_post(f"{SESSION_PATH}/login", session.log_in)
    app.router.add_post(f"{SESSION_PATH}/refresh", session.refresh)
    app.router.add_post(f"{SESSION_PATH}/logout", session.log_out)
    return app


async def serve(settings: MeshSettings) -> None:
    channels = UserAgentChannels(settings.service_address("auth"))
    runner = web.AppRunner(build_app(settings, channels), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.web.port)
    await site.start()
    log.info("web serving", extra={"port": settings.web.port})
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    await stopped.wait()
    await runner.cleanup()
    await channels.close()
