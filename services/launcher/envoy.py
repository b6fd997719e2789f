"""Envoy gateway config, generated from the descriptor set: REST/JSON on the
listener, transcoded to gRPC, one HTTP/2 cluster per mesh service.

Filter order (gateway-mesh-facts §1.5): header_mutation first, so that every answer
(Envoy's own included) gets the security headers; health_check answers /healthz; cors
answers preflights before jwt_authn could refuse them; the Lua guard drops headers gRPC
metadata cannot carry and refuses what must not reach a service (long URL 414, bytes
that are not UTF-8 400, a body that is not JSON 415, in HTTP's form and the JSON error
shape even to a client that sent a gRPC content type); jwt_authn rejects before a rate-
limit token is spent, and names the verified token's subject to local_ratelimit (one
bucket per user, else per client IP); buffer enforces the body limit (413); the strict-
input Lua filter checks the body and query against the route's request message
(strict_input.py: unknown fields and wrong JSON types are a 400 naming the field); the
transcoder runs last, on the route matched by the original REST path
(match_incoming_request_route).
Every answer Envoy makes itself has the services' JSON error shape with an ErrorInfo
reason (local_reply_config; docs/errors.md). Unknown paths need no token: they are 404."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from services.kit.config.settings import GatewayLimits, GatewayResilience, MeshSettings, RateLimit
from services.launcher import strict_input
from services.launcher.gateway_errors import (
    LOCAL_REPLIES,
    RATE_LIMIT_RETRY_AFTER,
    RETRYABLE,
    TOKEN_MISSING,
    UNKNOWN,
    error_info,
    quota_failure,
    retry_info,
)
from services.launcher.routes import DESCRIPTOR_SET, HttpRoute, RestSurface, load_descriptor_set

Target = Literal["local", "compose"]
TARGETS: tuple[Target, ...] = ("local", "compose")
JWT_PROVIDER = "expense_auth"
HEALTHZ = "/healthz"
WEB_CLUSTER = "web"
TYPES = "type.googleapis.com/envoy.extensions"
# In the compose/k8s gateway container (see docker-compose.yml and the Dockerfile).
CONTAINER_DESCRIPTOR = "/etc/envoy/expense_mesh.binpb"
CONTAINER_JWKS = "/etc/envoy/published/jwks.json"
# On every answer, Envoy's own included (header_mutation is the first filter).
SECURITY_HEADERS = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}
# Answers carrying tokens must not be stored by a browser or a proxy.
TOKEN_RESPONSE = "expense.auth.v1.AuthTokens"
DOWNLOAD_RESPONSE = "google.api.HttpBody"
# Lua filters that write a whole google.rpc.Status body mark their answer so in this
# dynamic metadata namespace; local_reply_config then passes the body on unchanged.
REPLY_METADATA = "expense.gateway.reply"
LOCAL_RATE_LIMIT = "envoy.filters.http.local_ratelimit"
# Where jwt_authn puts a verified token's claims (dynamic metadata, which clients cannot set).
JWT_PAYLOAD = "jwt_payload"
# The rate-limit descriptor value of a request without a verified token (subjects are UUIDs).
ANONYMOUS = "none"


@dataclass(frozen=True)
class Placement:
    """What differs between a local `make up` and a container deployment."""

    listen_host: str
    descriptor: str
    jwks: str
    cluster_type: str
    health_interval: str
    upstream_hosts: dict[str, str]


def placement(settings: MeshSettings, target: Target) -> Placement:
    if target == "local":
        return Placement(
            listen_host=settings.host,
            descriptor=str(DESCRIPTOR_SET),
            jwks=str((settings.keys_dir / "jwks.json").resolve()),
            cluster_type="STATIC",
            # Short, so `up` is ready soon after the services are.
            health_interval="1s",
            upstream_hosts={
                name: settings.service_address(name).rpartition(":")[0] for name in settings.mesh.services
            }
            | {WEB_CLUSTER: settings.web_host},
        )
    return Placement(
        listen_host="0.0.0.0",
        descriptor=CONTAINER_DESCRIPTOR,
        jwks=CONTAINER_JWKS,
        cluster_type="STRICT_DNS",
        health_interval="5s",
        upstream_hosts={name: name for name in [*settings.mesh.services, WEB_CLUSTER]},
    )


def envoy_config(settings: MeshSettings, surface: RestSurface, target: Target) -> dict[str, Any]:
    where = placement(settings, target)
    schema = strict_input.Schema(load_descriptor_set().file)
    # In a container the admin port is out of a scraper's reach: a listener serves its stats.
    stats = target != "local" and settings.metrics.enabled
    return {
        "admin": {"address": _socket("127.0.0.1", settings.envoy_admin_port)},
        "overload_manager": _overload_manager(),
        "static_resources": {
            "listeners": [
                _listener(settings, surface, where, schema),
                *([_stats_listener(settings)] if stats else []),
            ],
            "clusters": [
                *(_cluster(settings, name, where) for name in settings.mesh.services),
                *([_web_cluster(settings, where)] if settings.web.enabled else []),
                *([_admin_cluster(settings)] if stats else []),
                *([_collector_cluster(settings)] if settings.tracing.enabled else []),
            ],
        },
    }


STATS_PATH = "/stats/prometheus"
ADMIN_CLUSTER = "envoy-admin"


def _stats_listener(settings: MeshSettings) -> dict[str, Any]:
    """GET /stats/prometheus on [metrics] gateway_port, from the admin API; nothing else of
    the admin API (it can drain and stop Envoy) is reachable."""
    stats_route = {"match": {"path": STATS_PATH}, "route": {"cluster": ADMIN_CLUSTER}}
    refused = {"match": {"prefix": "/"}, "direct_response": {"status": 404}}
    host = {"name": "stats", "domains": ["*"], "routes": [stats_route, refused]}
    router = {"name": "envoy.filters.http.router", "typed_config": _typed("filters.http.router.v3.Router")}
    manager = _typed(
        "filters.network.http_connection_manager.v3.HttpConnectionManager",
        stat_prefix="stats",
        route_config={"name": "stats", "virtual_hosts": [host]},
        http_filters=[router],
    )
    return {
        "name": "stats",
        "address": _socket("0.0.0.0", settings.metrics.gateway_port),
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}
        ],
    }


def _admin_cluster(settings: MeshSettings) -> dict[str, Any]:
    endpoint = {"endpoint": {"address": _socket("127.0.0.1", settings.envoy_admin_port)}}
    return {
        "name": ADMIN_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": ADMIN_CLUSTER, "endpoints": [{"lb_endpoints": [endpoint]}]},
    }


def _socket(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _typed(type_name: str, **config: Any) -> dict[str, Any]:
    return {"@type": f"{TYPES}.{type_name}", **config}


def _percent(value: int) -> dict[str, Any]:
    return {"numerator": value, "denominator": "HUNDRED"}


def _overload_manager() -> dict[str, Any]:
    # An edge proxy needs a bound on downstream connections (Envoy warns without one).
    monitor = _typed(
        "resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
        max_active_downstream_connections=10000,
    )
    return {
        "resource_monitors": [
            {"name": "envoy.resource_monitors.global_downstream_max_connections", "typed_config": monitor}
        ]
    }


def _listener(
    settings: MeshSettings, surface: RestSurface, where: Placement, schema: strict_input.Schema
) -> dict[str, Any]:
    manager = _typed(
        "filters.network.http_connection_manager.v3.HttpConnectionManager",
        stat_prefix="gateway",
        codec_type="AUTO",
        use_remote_address=True,
        normalize_path=True,
        merge_slashes=True,
        common_http_protocol_options={"headers_with_underscores_action": "REJECT_REQUEST"},
        # Request line and headers together: larger is 431 here, not a service's
        # RESOURCE_EXHAUSTED naming its metadata.
        max_request_headers_kb=settings.limits.gateway_max_request_headers_kib,
        local_reply_config=_local_replies(settings),
        access_log=[
            {
                "name": "envoy.access_loggers.stdout",
                "typed_config": _typed("access_loggers.stream.v3.StdoutAccessLog"),
            }
        ],
        # Routes first: their metadata adds the request types the strict-input filter checks.
        route_config=_route_config(settings, surface, schema),
        http_filters=_http_filters(settings, surface, where, schema),
        **({"tracing": _tracing(settings)} if settings.tracing.enabled else {}),
    )
    return {
        "name": "gateway",
        "address": _socket(where.listen_host, settings.gateway_port),
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}
        ],
    }


def _http_filters(
    settings: MeshSettings, surface: RestSurface, where: Placement, schema: strict_input.Schema
) -> list[dict[str, Any]]:
    filters = [
        ("envoy.filters.http.header_mutation", _security_headers()),
        ("envoy.filters.http.health_check", _health_check(settings)),
        ("envoy.filters.http.cors", _typed("filters.http.cors.v3.Cors")),
        ("envoy.filters.http.lua", _request_guard(settings, surface)),
        ("envoy.filters.http.jwt_authn", _jwt_authn(settings, surface, where)),
        (LOCAL_RATE_LIMIT, _rate_limit(settings)),
        ("envoy.filters.http.buffer", _body_limit(settings)),
        (strict_input.FILTER_NAME, _strict_input(settings, schema)),
        ("envoy.filters.http.grpc_json_transcoder", _transcoder(settings, surface, where)),
        ("envoy.filters.http.router", _typed("filters.http.router.v3.Router")),
    ]
    return [{"name": name, "typed_config": config} for name, config in filters]


def _security_headers() -> dict[str, Any]:
    mutations = [
        {"append": {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}}
        for key, value in SECURITY_HEADERS.items()
    ]
    return _typed(
        "filters.http.header_mutation.v3.HeaderMutation", mutations={"response_mutations": mutations}
    )


# Runs before jwt_authn: what it refuses never costs a token check or reaches a service.
# A service would answer bytes that are not UTF-8 in a string field with a decoding
# error (500), and a gRPC content type would pass the transcoder untouched. Envoy makes
# its own answer to a request with a gRPC content type in gRPC's form (HTTP 200, the
# status in grpc-status, the body local_reply_config formatted in grpc-message), having
# decided so on arrival, before any filter: envoy_on_response turns the guard's refusals
# back into the HTTP status and JSON body every other client gets.
_REQUEST_GUARD = """
local MAX_URL_BYTES = @MAX_URL_BYTES@
-- Paths whose body goes to the service as it came (google.api.HttpBody): providers'
-- callbacks, form-urlencoded or JSON, signed over their exact bytes.
local RAW_BODY_PATHS = {@RAW_BODY_PATHS@}
local REFUSED = "expense.gateway.refused"

-- RFC 3629: a lead byte and the continuation bytes it announces; no overlong forms,
-- surrogates or code points past U+10FFFF.
local function valid_utf8(s)
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local count, low, high = 0, 0x80, 0xBF
    if c < 0x80 then count = 0
    elseif c >= 0xC2 and c <= 0xDF then count = 1
    elseif c == 0xE0 then count, low = 2, 0xA0
    elseif (c >= 0xE1 and c <= 0xEC) or c == 0xEE or c == 0xEF then count = 2
    elseif c == 0xED then count, high = 2, 0x9F
    elseif c == 0xF0 then count, low = 3, 0x90
    elseif c >= 0xF1 and c <= 0xF3 then count = 3
    elseif c == 0xF4 then count, high = 3, 0x8F
    else return false end
    for k = 1, count do
      local b = s:byte(i + k)
      if b == nil or b < low or b > high then return false end
      low, high = 0x80, 0xBF
    end
    i = i + count + 1
  end
  return true
end

local function percent_decoded(s)
  return (s:gsub("%%(%x%x)", function(hex) return string.char(tonumber(hex, 16)) end))
end

local function is_json(content_type)
  local media_type = content_type:lower():match("^%s*([^;%s]+)")
  return media_type == "application/json"
end

local function refuse(handle, status, message)
  handle:streamInfo():dynamicMetadata():set(REFUSED, "status", status)
  handle:respond({[":status"] = status}, message)
end

-- gRPC metadata keys are [0-9a-z_.-] (Envoy lowercases names): a service's gRPC server
-- fails the whole call (INTERNAL, "Illegal header key") on any other HTTP token character
-- (~ ^ ` ! # $ % & ' * + |). Such headers mean nothing to the mesh: they are dropped.
local function drop_non_metadata_headers(headers)
  local illegal = {}
  for name, _ in pairs(headers) do
    if name:sub(1, 1) ~= ":" and name:find("[^0-9a-z_.%-]") then illegal[#illegal + 1] = name end
  end
  for _, name in ipairs(illegal) do headers:remove(name) end
end

function envoy_on_request(handle)
  local headers = handle:headers()
  drop_non_metadata_headers(headers)
  local path = headers:get(":path")
  if #path > MAX_URL_BYTES then
    refuse(handle, "414", "request URL too long")
  elseif not valid_utf8(percent_decoded(path)) then
    refuse(handle, "400", "the URL is not valid UTF-8")
  else
    local content_type = headers:get("content-type")
    local raw_body = RAW_BODY_PATHS[path:match("^[^?]*")] == true
    if content_type ~= nil and not raw_body and not is_json(content_type) then
      refuse(handle, "415", "content-type must be application/json")
    end
  end
end

function envoy_on_response(handle)
  local headers = handle:headers()
  local message = headers:get("grpc-message")
  if message == nil then return end
  local refused = handle:streamInfo():dynamicMetadata():get(REFUSED)
  if refused == nil then return end
  headers:replace(":status", refused["status"])
  headers:replace("content-type", "application/json")
  headers:remove("grpc-status")
  headers:remove("grpc-message")
  handle:body(true):setBytes(percent_decoded(message))
end
"""


def _request_guard(settings: MeshSettings, surface: RestSurface) -> dict[str, Any]:
    raw_paths = sorted(route.template for route in surface.routes if route.raw_body and route.is_literal)
    code = _REQUEST_GUARD.replace("@MAX_URL_BYTES@", str(settings.limits.gateway_max_url_bytes)).replace(
        "@RAW_BODY_PATHS@", ", ".join(f'["{path}"] = true' for path in raw_paths)
    )
    return _typed("filters.http.lua.v3.Lua", default_source_code={"inline_string": code.lstrip()})


def _strict_input(settings: MeshSettings, schema: strict_input.Schema) -> dict[str, Any]:
    code = strict_input.lua_source(schema, settings.limits.gateway_max_json_depth)
    return _typed("filters.http.lua.v3.Lua", default_source_code={"inline_string": code})


def _local_replies(settings: MeshSettings) -> dict[str, Any]:
    """Envoy's own answers (jwt_authn, the rate limit, the transcoder, the Lua filters,
    direct responses, codec errors) in the services' google.rpc.Status JSON shape, with
    an ErrorInfo naming a stable reason (and RetryInfo, QuotaFailure where they apply)."""
    passed_on = {
        # A Lua filter wrote the whole body already (strict input, the request guard).
        "filter": {
            "metadata_filter": {
                "matcher": {
                    "filter": REPLY_METADATA,
                    "path": [{"key": "json"}],
                    "value": {"bool_match": True},
                },
                "match_if_key_not_found": False,
            }
        },
        "body_format_override": {
            "text_format_source": {"inline_string": "%LOCAL_REPLY_BODY%"},
            "content_type": "application/json",
        },
    }
    successes = {
        # /healthz and other successes keep their (empty) body.
        "filter": _status_filter("LE", 399),
        "body_format_override": {"text_format_source": {"inline_string": "%LOCAL_REPLY_BODY%"}},
    }
    token_missing = {
        "filter": {
            "and_filter": {
                "filters": [
                    _status_filter("EQ", 401),
                    {"header_filter": {"header": {"name": "authorization", "present_match": False}}},
                ]
            }
        },
        **_error_reply(401, *TOKEN_MISSING, settings),
    }
    mappers = [passed_on, successes, token_missing]
    for status, (code, message, reason) in LOCAL_REPLIES.items():
        mappers.append(
            {"filter": _status_filter("EQ", status), **_error_reply(status, code, message, reason, settings)}
        )
    return {"mappers": mappers, "body_format": _error_body(UNKNOWN[0], [error_info(UNKNOWN[2])])}


def _error_reply(
    status: int, code: int, message: str | None, reason: str, settings: MeshSettings
) -> dict[str, Any]:
    details = [error_info(reason)]
    if status == 429:
        details += [retry_info("%RESP(RETRY-AFTER)%s"), quota_failure(settings.limits.gateway)]
    elif status in RETRYABLE:
        details.append(retry_info(f"{RATE_LIMIT_RETRY_AFTER}s"))
    mapper: dict[str, Any] = {"body_format_override": _error_body(code, details)}
    if message is not None:
        mapper["body"] = {"inline_string": message}
    if status == 429 or status in RETRYABLE:
        mapper["headers_to_add"] = [
            {
                "header": {"key": "retry-after", "value": RATE_LIMIT_RETRY_AFTER},
                "append_action": "ADD_IF_ABSENT",
            }
        ]
    return mapper


def _status_filter(op: str, status: int) -> dict[str, Any]:
    value = {"default_value": status, "runtime_key": f"local_reply_{op.lower()}_{status}"}
    return {"status_code_filter": {"comparison": {"op": op, "value": value}}}


def _error_body(code: int, details: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "json_format": {"code": code, "message": "%LOCAL_REPLY_BODY%", "details": details},
        "content_type": "application/json",
    }


def _health_check(settings: MeshSettings) -> dict[str, Any]:
    return _typed(
        "filters.http.health_check.v3.HealthCheck",
        pass_through_mode=False,
        headers=[{"name": ":path", "string_match": {"exact": HEALTHZ}}],
        # The gateway is healthy only when every service it routes to is.
        cluster_min_healthy_percentages={name: {"value": 100} for name in settings.mesh.services},
    )


def _jwt_authn(settings: MeshSettings, surface: RestSurface, where: Placement) -> dict[str, Any]:
    provider = {
        "issuer": settings.jwt.issuer,
        "audiences": [settings.jwt.audience],
        "local_jwks": {"filename": where.jwks},
        "require_expiration": True,
        # The scheme is case-insensitive (RFC 9110 11.1) and Envoy's prefix match is not:
        # "bearer <token>" (the services and Kong take it) must not read as no token.
        "from_headers": [
            {"name": "Authorization", "value_prefix": f"{scheme} "} for scheme in ("Bearer", "bearer")
        ],
        # The services verify the token again (and check the session): keep it.
        "forward": True,
        # The rate limit keys an authenticated request by its subject (see _client_rate_limit).
        "payload_in_metadata": JWT_PAYLOAD,
    }
    # Every route of the surface but the public ones needs a valid token. A path no route
    # knows needs none: the not-found route answers it 404 without reaching a service
    # (a 401 there would tell a client to fix its token, not its URL).
    public = {route.name for route in surface.public(settings)}
    requirement = {"provider_name": JWT_PROVIDER}
    rules = [
        {"match": _route_match(route), **({} if route.name in public else {"requires": requirement})}
        for route in surface.routes
    ]
    # The dashboard's page, assets and session endpoint carry no token (the session
    # endpoint is how the page gets one), nor does the OpenAPI document.
    if settings.web.enabled:
        rules += [{"match": match} for match in WEB_MATCHES.values()]
    return _typed(
        "filters.http.jwt_authn.v3.JwtAuthentication",
        providers={JWT_PROVIDER: provider},
        rules=rules,
        bypass_cors_preflight=True,
    )


def _rate_limit(settings: MeshSettings) -> dict[str, Any]:
    """Every route's limit but the password routes' (each of which has its own)."""
    gateway = settings.limits.gateway
    return _client_rate_limit(gateway, gateway.per_user, gateway.per_ip, "gateway_rate_limit")


def _password_route_rate_limit(settings: MeshSettings, route: HttpRoute) -> dict[str, Any]:
    """A route's own, tighter limit when its RPC takes a password (mesh.password_methods)."""
    if route.full_method not in settings.mesh.password_methods:
        return {}
    gateway = settings.limits.gateway
    limit = _client_rate_limit(
        gateway, gateway.password_routes, gateway.password_routes, "gateway_password_rate_limit"
    )
    return {"typed_per_filter_config": {LOCAL_RATE_LIMIT: limit}}


def _client_rate_limit(
    gateway: GatewayLimits, per_user: RateLimit, per_ip: RateLimit, stat_prefix: str
) -> dict[str, Any]:
    """One token bucket per client: the token's subject when jwt_authn verified one, else
    the client address (use_remote_address: the TCP peer, not what headers claim).

    Each request yields exactly one matching descriptor: `user` only with a verified
    token, and the per-address one only without (its `anonymous` entry is the subject,
    ANONYMOUS when there is none), so one user's flood never spends another's tokens
    nor those of an address they share."""
    subject = {"key": "envoy.filters.http.jwt_authn", "path": [{"key": JWT_PAYLOAD}, {"key": "sub"}]}
    user = {"metadata": {"descriptor_key": "user", "metadata_key": subject, "source": "DYNAMIC"}}
    anonymous = {
        "metadata": {
            "descriptor_key": "anonymous",
            "metadata_key": subject,
            "default_value": ANONYMOUS,
            "source": "DYNAMIC",
        }
    }
    enabled = {"runtime_key": "gateway_rate_limit_enabled", "default_value": _percent(100)}
    enforced = {"runtime_key": "gateway_rate_limit_enforced", "default_value": _percent(100)}
    retry_after = str(max(per_user.seconds, per_ip.seconds))
    return _typed(
        "filters.http.local_ratelimit.v3.LocalRateLimit",
        stat_prefix=stat_prefix,
        # Required, but spent only by a request no descriptor matches: none.
        token_bucket=_token_bucket(per_ip),
        always_consume_default_token_bucket=False,
        rate_limits=[{"actions": [user]}, {"actions": [anonymous, {"remote_address": {}}]}],
        descriptors=[
            {"entries": [{"key": "user"}], "token_bucket": _token_bucket(per_user)},
            {
                "entries": [{"key": "anonymous", "value": ANONYMOUS}, {"key": "remote_address"}],
                "token_bucket": _token_bucket(per_ip),
            },
        ],
        # An entry without a value is a bucket per distinct value, this many at most
        # (Envoy's default is 20, and a forgotten client comes back with a full bucket).
        max_dynamic_descriptors=gateway.tracked_clients,
        filter_enabled=enabled,
        filter_enforced=enforced,
        # A bucket is full again at the latest one period after it ran dry.
        response_headers_to_add=[
            {
                "header": {"key": "retry-after", "value": retry_after},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ],
    )


def _token_bucket(limit: RateLimit) -> dict[str, Any]:
    return {
        "max_tokens": limit.requests,
        "tokens_per_fill": limit.requests,
        "fill_interval": f"{limit.seconds}s",
    }


def _body_limit(settings: MeshSettings) -> dict[str, Any]:
    # The transcoder's max_request_body_size bounds only its internal buffer, which
    # streaming keeps small: a 1.1 MB JSON body went through (checked on 1.40). The
    # buffer filter answers 413 for any body over the limit.
    return _typed("filters.http.buffer.v3.Buffer", max_request_bytes=settings.limits.gateway_max_body_bytes)


def _transcoder(settings: MeshSettings, surface: RestSurface, where: Placement) -> dict[str, Any]:
    return _typed(
        "filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
        proto_descriptor=where.descriptor,
        services=list(surface.grpc_services),
        print_options={
            "add_whitespace": False,
            "always_print_primitive_fields": True,
            "preserve_proto_field_names": True,
        },
        match_incoming_request_route=True,
        convert_grpc_status=True,
        # Browsers and form encoders send spaces in query values as '+'.
        query_param_unescape_plus=True,
        request_validation_options={
            "reject_unknown_method": True,
            "reject_unknown_query_parameters": True,
            "reject_binding_body_field_collisions": True,
        },
        max_request_body_size=settings.limits.gateway_max_body_bytes,
    )


def _route_config(
    settings: MeshSettings, surface: RestSurface, schema: strict_input.Schema
) -> dict[str, Any]:
    origins = settings.cors.origins
    cors = _typed(
        "filters.http.cors.v3.CorsPolicy",
        allow_origin_string_match=[{"exact": origin} for origin in origins],
        allow_methods="GET,POST,PATCH,DELETE,OPTIONS",
        allow_headers="authorization,content-type",
        max_age="600",
    )
    routes = [_route(settings, route, schema) for route in surface.routes]
    # Forwarded to any cluster (a mesh without services has none to forward to).
    allowed = [_preflight_route(name, origins) for name in settings.mesh.services[:1] if origins]
    preflight = [*allowed, _refused_preflight_route()]
    return {
        "name": "rest",
        "virtual_hosts": [
            {
                "name": "expense-mesh",
                "domains": ["*"],
                "routes": [*routes, *preflight, *_web_routes(settings), _not_found_route()],
                # On the virtual host, so preflights of any path get an answer.
                "typed_per_filter_config": {"envoy.filters.http.cors": cors},
            }
        ],
    }


def _route_match(route: HttpRoute) -> dict[str, Any]:
    """Exactly this REST binding: method and whole path (query string excluded)."""
    path = {"path": route.template} if route.is_literal else {"safe_regex": {"regex": route.regex}}
    return {**path, "headers": [{"name": ":method", "string_match": {"exact": route.verb}}]}


def _route(settings: MeshSettings, route: HttpRoute, schema: strict_input.Schema) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": route.name,
        "match": _route_match(route),
        "metadata": {
            "filter_metadata": {strict_input.FILTER_NAME: strict_input.route_metadata(schema, route)}
        },
        "route": {"cluster": route.service, "timeout": f"{_route_timeout(settings, route):g}s"},
        **_password_route_rate_limit(settings, route),
    }
    if route.response_type == TOKEN_RESPONSE:
        config["response_headers_to_add"] = [
            {
                "header": {"key": "cache-control", "value": "no-store"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ]
    return config


def _route_timeout(settings: MeshSettings, route: HttpRoute) -> float:
    """Downloads (google.api.HttpBody streams, e.g. a 100,000-row CSV export) get longer
    than one call's deadline; Envoy's route timeout bounds the whole response. A single
    HttpBody answer (a provider's handshake) is one call."""
    if route.response_type == DOWNLOAD_RESPONSE and route.response_streams:
        return settings.limits.gateway_download_timeout_seconds
    return settings.limits.default_deadline_seconds


def _preflight_match(**origin: Any) -> dict[str, Any]:
    present = {"present_match": True}
    return {
        "prefix": "/",
        "headers": [
            {"name": ":method", "string_match": {"exact": "OPTIONS"}},
            {"name": "origin", **origin},
            {"name": "access-control-request-method", **present},
        ],
    }


def _preflight_route(cluster: str, origins: list[str]) -> dict[str, Any]:
    """CORS preflights of every REST path from an allowed origin. The cors filter
    answers them itself, but only on a route that forwards (not on a direct_response
    route); the cluster is never reached."""
    allowed = "|".join(re.escape(origin) for origin in origins)
    return {
        "name": "cors-preflight",
        "match": _preflight_match(string_match={"safe_regex": {"regex": f"(?:{allowed})"}}),
        "route": {"cluster": cluster},
    }


def _refused_preflight_route() -> dict[str, Any]:
    return _direct_response(
        "cors-preflight-refused", _preflight_match(present_match=True), 403, "origin not allowed"
    )


def _not_found_route() -> dict[str, Any]:
    # Anything else must not reach a backend: the transcoder would pass it through
    # and the service would reset the stream (503, gateway-mesh-facts §1.1 pitfall 2).
    return _direct_response("not-found", {"prefix": "/"}, 404, "no such route")


def _direct_response(name: str, match: dict[str, Any], status: int, message: str) -> dict[str, Any]:
    """An answer of the gateway's own; local_reply_config gives it the JSON error shape."""
    return {
        "name": name,
        "match": match,
        "direct_response": {"status": status, "body": {"inline_string": message}},
        # Else the transcoder answers first, in text/plain (reject_unknown_method).
        "typed_per_filter_config": {
            "envoy.filters.http.grpc_json_transcoder": {
                "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                "disabled": True,
            }
        },
    }


COLLECTOR_CLUSTER = "otel-collector"


def _tracing(settings: MeshSettings) -> dict[str, Any]:
    """The gateway's own span (OpenTelemetry, to the same OTLP collector as the services),
    parent of the service's: its `traceparent` goes upstream as gRPC metadata. Only when
    [tracing] otlp_endpoint is set: the committed envoy/envoy.yaml has none."""
    provider = {
        "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
        "grpc_service": {"envoy_grpc": {"cluster_name": COLLECTOR_CLUSTER}, "timeout": "1s"},
        "service_name": "gateway",
    }
    return {
        "provider": {"name": "envoy.tracers.opentelemetry", "typed_config": provider},
        # Requests without a caller's decision are sampled as the services sample theirs.
        "random_sampling": {"value": settings.tracing.sample_ratio * 100},
        "spawn_upstream_span": False,
    }


def _collector_cluster(settings: MeshSettings) -> dict[str, Any]:
    endpoint = urlsplit(settings.tracing.otlp_endpoint)
    host, port = endpoint.hostname or "127.0.0.1", endpoint.port or 4317
    http2 = _typed(
        "upstreams.http.v3.HttpProtocolOptions", explicit_http_config={"http2_protocol_options": {}}
    )
    address = {"endpoint": {"address": _socket(host, port)}}
    return {
        "name": COLLECTOR_CLUSTER,
        "type": "STRICT_DNS",
        "connect_timeout": "1s",
        "dns_lookup_family": "V4_ONLY",
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": http2},
        "load_assignment": {"cluster_name": COLLECTOR_CLUSTER, "endpoints": [{"lb_endpoints": [address]}]},
    }


# What the gateway sends to the web service: the page, its assets, its session endpoint,
# and the API's OpenAPI document (served from gen/ like the descriptor set, no token).
WEB_MATCHES = {
    "web-openapi": {
        "path": "/v1/openapi.json",
        "headers": [{"name": ":method", "string_match": {"exact": "GET"}}],
    },
    "web-page": {"path": "/", "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
    "web-assets": {"prefix": "/assets/", "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
    "web-session": {
        "prefix": "/web/session/",
        "headers": [{"name": ":method", "string_match": {"exact": "POST"}}],
    },
}


def _web_routes(settings: MeshSettings) -> list[dict[str, Any]]:
    """The dashboard (services/web) on the API's origin: no CORS, and the refresh cookie
    is first-party. The transcoder stays out of these routes (they are not gRPC)."""
    if not settings.web.enabled:
        return []
    transcoder_off = {
        "envoy.filters.http.grpc_json_transcoder": {
            "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
            "disabled": True,
        }
    }
    timeout = f"{settings.web.auth_call_timeout_seconds + 1:g}s"
    return [
        {
            "name": name,
            "match": match,
            "route": {"cluster": WEB_CLUSTER, "timeout": timeout},
            "typed_per_filter_config": transcoder_off,
        }
        for name, match in WEB_MATCHES.items()
    ]


def _web_cluster(settings: MeshSettings, where: Placement) -> dict[str, Any]:
    endpoint = {"endpoint": {"address": _socket(where.upstream_hosts[WEB_CLUSTER], settings.web.port)}}
    return {
        "name": WEB_CLUSTER,
        "type": where.cluster_type,
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        **({"dns_lookup_family": "V4_ONLY"} if where.cluster_type == "STRICT_DNS" else {}),
        "load_assignment": {"cluster_name": WEB_CLUSTER, "endpoints": [{"lb_endpoints": [endpoint]}]},
        "health_checks": [
            {
                "timeout": "1s",
                "interval": where.health_interval,
                "no_traffic_interval": where.health_interval,
                "unhealthy_threshold": 2,
                "healthy_threshold": 1,
                "http_health_check": {"path": "/healthz"},
            }
        ],
        **_resilience(settings.resilience.gateway),
    }


def _cluster(settings: MeshSettings, name: str, where: Placement) -> dict[str, Any]:
    endpoint = {"endpoint": {"address": _socket(where.upstream_hosts[name], settings.service_port(name))}}
    http2 = _typed(
        "upstreams.http.v3.HttpProtocolOptions", explicit_http_config={"http2_protocol_options": {}}
    )
    return {
        "name": name,
        "type": where.cluster_type,
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        **({"dns_lookup_family": "V4_ONLY"} if where.cluster_type == "STRICT_DNS" else {}),
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": http2},
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [endpoint]}]},
        "health_checks": [
            {
                "timeout": "1s",
                "interval": where.health_interval,
                # Envoy checks an idle cluster only every 60 s by default.
                "no_traffic_interval": where.health_interval,
                "unhealthy_threshold": 2,
                "healthy_threshold": 1,
                # "" = the server as a whole, which the kit reports NOT_SERVING
                # until the service's dependencies answer.
                "grpc_health_check": {"service_name": ""},
            }
        ],
        **_resilience(settings.resilience.gateway),
    }


def _resilience(gateway: GatewayResilience) -> dict[str, Any]:
    """Circuit breakers and outlier detection of a service's cluster ([resilience.gateway])."""
    return {
        "circuit_breakers": {
            "thresholds": [
                {
                    "priority": "DEFAULT",
                    "max_connections": gateway.max_connections,
                    "max_pending_requests": gateway.max_pending_requests,
                    "max_requests": gateway.max_requests,
                    "max_retries": gateway.max_retries,
                }
            ]
        },
        "outlier_detection": {
            "consecutive_5xx": gateway.consecutive_5xx,
            "consecutive_gateway_failure": gateway.consecutive_gateway_failure,
            "interval": f"{gateway.interval_seconds:g}s",
            "base_ejection_time": f"{gateway.base_ejection_seconds:g}s",
            "max_ejection_percent": gateway.max_ejection_percent,
        },
    }
