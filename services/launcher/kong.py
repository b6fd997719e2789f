"""Kong DB-less config (`kong/kong.yml`): one gRPC Kong service per mesh service and
one REST route per `google.api.http` binding, transcoded by the grpc-gateway plugin.

The jwt plugin needs the auth service's public keys as PEM in a consumer's
jwt_secrets. Those keys are made at first run, per deployment, so they are never
in git: the committed file has the consumer without credentials, and
`kong-config --jwks <data_dir>/keys/jwks.json` adds one RS256 credential per key
of the JWKS at deploy time (compose does it in the one-shot `migrate` service).
`rsa_public_key` is not a referenceable field, so a `{vault://...}` reference
would not be resolved and Kong would refuse the file.

Each credential also gets a `secret`: Kong verifies RS256 tokens with `rsa_public_key`
alone and fills a missing secret with a random one itself, but decK's file schema
requires it (Kong/deck#181). It is random per render, as Kong's own would be, never
committed, and strong enough to be harmless should the algorithm ever become HS256.

Rate limits (limits.gateway), with the rate-limiting plugin: a global instance per
access token, and on each public route its own instance per client IP (tighter on the
password routes). Every token belongs to the one consumer above, so `limit_by: consumer`
would be one bucket for everyone; the token (verified by the jwt plugin, which runs
first) is one bucket per session, the nearest Kong comes to per user.

Strict input and one error shape (issue 18): a global pre-function and post-function carry
Lua rendered from the protos, the same rules and error table as Envoy's (strict_input.py,
gateway_errors.py; docs/errors.md, "Kong")."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.kit.config.settings import MeshSettings, RateLimit
from services.launcher import strict_input
from services.launcher.gateway_errors import kong_error_filters
from services.launcher.routes import HttpRoute, RestSurface, load_descriptor_set

# Where docker-compose.yml mounts proto/ (and the vendored google/api protos).
KONG_INCLUDE = "/usr/local/kong/include"
CONSUMER = "expense-mesh-auth"
# The token's `kid` header names the key (Kong looks in the claims, then the header),
# so both keys of the ring verify across a rotation; `iss` would allow one key only.
KEY_CLAIM = "kid"
# Added to every answer; token answers are also marked not to be stored (as in Envoy).
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
TOKEN_RESPONSE = "expense.auth.v1.AuthTokens"
CORS_METHODS = ["GET", "POST", "PATCH", "DELETE", "OPTIONS"]
TOKEN_HEADER = "authorization"
CORRELATION_HEADER = "X-Request-ID"


def kong_config(
    settings: MeshSettings, surface: RestSurface, jwks: dict[str, Any] | None = None
) -> dict[str, Any]:
    services = [_service(settings, name, surface.for_service(name)) for name in settings.mesh.services]
    if settings.web.enabled:
        services.append(_web_service(settings))
    consumer: dict[str, Any] = {"username": CONSUMER}
    if jwks is not None:
        consumer["jwt_secrets"] = jwt_secrets(jwks)
    plugins = [
        *_strict_input_and_error_shape(settings, surface),
        _rate_limiting(settings.limits.gateway.per_user, is_public=False),
        _request_size_limiting(settings.limits.gateway_max_body_bytes),
        _correlation_id(),
    ]
    if settings.cors.origins:
        plugins.append(_cors(settings.cors.origins))
    if settings.metrics.enabled:
        plugins.append(_prometheus())
    return {"_format_version": "3.0", "services": services, "consumers": [consumer], "plugins": plugins}


def _strict_input_and_error_shape(settings: MeshSettings, surface: RestSurface) -> list[dict[str, Any]]:
    """Issue 18 behind Kong, with Kong OSS's serverless plugins (Lua in Kong's sandbox).
    pre-function (first in the access phase) checks the body and query against the route's
    request message, the same rules as Envoy's strict-input filter (strict_input.py), and
    keeps its verdict; post-function (last) answers it after jwt, the rate limits and the
    body limit, and rewrites every answer Kong makes itself into the google.rpc.Status shape
    (gateway_errors.py; docs/errors.md)."""
    schema = strict_input.Schema(load_descriptor_set().file)
    limits = settings.limits
    check = strict_input.kong_access_source(
        schema, surface.routes, limits.gateway_max_json_depth, limits.gateway_max_body_bytes
    )
    header_filter, body_filter = kong_error_filters(limits.gateway, strict_input.KONG_VERDICT)
    post = {
        "access": [strict_input.KONG_REFUSE],
        "header_filter": [header_filter],
        "body_filter": [body_filter],
    }
    return [
        {"name": "pre-function", "config": {"access": [check]}},
        {"name": "post-function", "config": post},
    ]


def kong_edge_env(settings: MeshSettings) -> dict[str, str]:
    """Kong settings the pre-/post-function rely on, for its container's environment:
    bodies up to the limit stay in memory (beyond client_body_buffer_size nginx buffers them
    to a file and kong.request.get_raw_body gives nil: strict input could not read them), and
    any answer no plugin reaches is at least JSON (Kong's own `{"message": ...}` template).
    The serverless plugins run in Kong's Lua sandbox, its default, named here: with
    `untrusted_lua = off` Kong would refuse the config."""
    return {
        "KONG_UNTRUSTED_LUA": "sandbox",
        "KONG_CLIENT_BODY_BUFFER_SIZE": f"{-(-settings.limits.gateway_max_body_bytes // 1024)}k",
        "KONG_ERROR_DEFAULT_TYPE": "application/json",
    }


def _request_size_limiting(max_body_bytes: int) -> dict[str, Any]:
    """413 beyond the body size Envoy also allows ([limits] gateway_max_body_bytes), with or
    without a Content-Length (a chunked body is counted as it is read)."""
    config = {"allowed_payload_size": max_body_bytes, "size_unit": "bytes", "require_content_length": False}
    return {"name": "request-size-limiting", "config": config}


def _correlation_id() -> dict[str, Any]:
    """Every request carries X-Request-ID to the service (kept when the client sent one, the
    header Envoy uses too) and back to the client, to find its log lines and its trace."""
    config = {"header_name": CORRELATION_HEADER, "generator": "uuid", "echo_downstream": True}
    return {"name": "correlation-id", "config": config}


def _cors(origins: list[str]) -> dict[str, Any]:
    # Kong's cors plugin allows every origin when none is listed: it is added only with some.
    return {
        "name": "cors",
        "config": {
            "origins": origins,
            "methods": CORS_METHODS,
            "headers": ["authorization", "content-type"],
            "max_age": 600,
            "credentials": False,
            "preflight_continue": False,
        },
    }


def _service(settings: MeshSettings, name: str, routes: tuple[HttpRoute, ...]) -> dict[str, Any]:
    return {
        "name": name,
        "protocol": "grpc",
        "host": name,
        "port": settings.service_port(name),
        "routes": [_route(settings, route) for route in routes],
    }


def _web_service(settings: MeshSettings) -> dict[str, Any]:
    """The dashboard (services/web), plain HTTP, on the API's origin: the page, its assets,
    its session endpoint (which trades a password, so the password routes' limit), and the
    API's OpenAPI document (no token)."""
    gateway = settings.limits.gateway

    def route(name: str, method: str, path: str, limit: RateLimit) -> dict[str, Any]:
        return {
            "name": f"web-{name}",
            "protocols": ["http", "https"],
            "methods": [method],
            "paths": [path],
            "strip_path": False,
            "plugins": [_rate_limiting(limit, is_public=True)],
        }

    return {
        "name": "web",
        "protocol": "http",
        "host": "web",
        "port": settings.web.port,
        "routes": [
            route("page", "GET", "~/$", gateway.per_ip),
            route("assets", "GET", "/assets/", gateway.per_ip),
            route("session", "POST", "/web/session/", gateway.password_routes),
            route("openapi", "GET", r"~/v1/openapi\.json$", gateway.per_ip),
        ],
    }


def _route(settings: MeshSettings, route: HttpRoute) -> dict[str, Any]:
    is_public = route.full_method in settings.mesh.public_methods
    has_cors_origins = bool(settings.cors.origins)
    plugins: list[dict[str, Any]] = [
        {"name": "grpc-gateway", "config": {"proto": f"{KONG_INCLUDE}/{route.proto_file}"}},
        _response_headers(route, has_cors_origins),
    ]
    if not is_public:
        plugins.append(
            {
                "name": "jwt",
                "config": {
                    "claims_to_verify": ["exp"],
                    "key_claim_name": KEY_CLAIM,
                    "header_names": ["authorization"],
                    # Tokens only in the Authorization header, never in URLs (logs).
                    "uri_param_names": [],
                },
            }
        )
    gateway = settings.limits.gateway
    if route.full_method in settings.mesh.password_methods:
        plugins.append(_rate_limiting(gateway.password_routes, is_public))
    elif is_public:
        plugins.append(_rate_limiting(gateway.per_ip, is_public))
    return {
        "name": route.name,
        "protocols": ["http", "https"],
        "methods": [route.verb],
        # Kong 3 regex paths start with "~" and are anchored at the start only.
        "paths": [f"~{route.regex}$"],
        "strip_path": False,
        "plugins": plugins,
    }


def _response_headers(route: HttpRoute, has_cors_origins: bool) -> dict[str, Any]:
    headers = dict(SECURITY_HEADERS)
    if route.response_type == TOKEN_RESPONSE:
        headers["Cache-Control"] = "no-store"
    config: dict[str, Any] = {"add": {"headers": [f"{key}:{value}" for key, value in headers.items()]}}
    if not has_cors_origins:
        # grpc-gateway answers every origin with `Access-Control-Allow-Origin: *`.
        config["remove"] = {"headers": ["Access-Control-Allow-Origin"]}
    return {"name": "response-transformer", "config": config}


def _prometheus() -> dict[str, Any]:
    """Kong's own metrics, on its Status API's /metrics (compose: KONG_STATUS_LISTEN). Not per
    consumer: one consumer holds every user, and labels stay bounded."""
    metrics = ("status_code_metrics", "latency_metrics", "bandwidth_metrics", "upstream_health_metrics")
    return {"name": "prometheus", "config": {"per_consumer": False, **dict.fromkeys(metrics, True)}}


def _rate_limiting(limit: RateLimit, is_public: bool) -> dict[str, Any]:
    """Per client IP on a public route (a token there is not verified, so it names no
    one), else per access token. Counted by each Kong node (`policy: redis` shares them)."""
    key = {"limit_by": "ip"} if is_public else {"limit_by": "header", "header_name": TOKEN_HEADER}
    return {"name": "rate-limiting", "config": {limit.per: limit.requests, **key, "policy": "local"}}


def jwt_secrets(jwks: dict[str, Any]) -> list[dict[str, str]]:
    return [
        {
            "key": key["kid"],
            "algorithm": "RS256",
            "rsa_public_key": _pem(key),
            # Unused by RS256; decK requires one (see the module docstring).
            "secret": secrets.token_urlsafe(32),
        }
        for key in jwks["keys"]
        if key.get("kty") == "RSA"
    ]


def _pem(jwk: dict[str, str]) -> str:
    numbers = rsa.RSAPublicNumbers(_b64_uint(jwk["e"]), _b64_uint(jwk["n"]))
    public_key = numbers.public_key()
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _b64_uint(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def read_jwks(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())
