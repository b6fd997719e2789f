"""Envoy gateway config, generated from the descriptor set: REST/JSON on the
listener, transcoded to gRPC, one HTTP/2 cluster per mesh service.

Filter order (gateway-mesh-facts §1.5): health_check answers /healthz before
anything else; cors answers preflights before jwt_authn could refuse them;
jwt_authn rejects before a rate-limit token is spent, and names the verified token's
subject to local_ratelimit (one bucket per user, else per client IP); buffer enforces the body
limit (413); the transcoder runs last, on the route matched by the original REST
path (match_incoming_request_route)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from services.kit.config.settings import GatewayLimits, MeshSettings, RateLimit
from services.launcher.routes import DESCRIPTOR_SET, HttpRoute, RestSurface

Target = Literal["local", "compose"]
TARGETS: tuple[Target, ...] = ("local", "compose")
JWT_PROVIDER = "expense_auth"
HEALTHZ = "/healthz"
TYPES = "type.googleapis.com/envoy.extensions"
# In the compose/k8s gateway container (see docker-compose.yml and the Dockerfile).
CONTAINER_DESCRIPTOR = "/etc/envoy/expense_mesh.binpb"
CONTAINER_JWKS = "/etc/envoy/published/jwks.json"
NOT_FOUND_BODY = '{"code":5,"message":"no such route","details":[]}'
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
            },
        )
    return Placement(
        listen_host="0.0.0.0",
        descriptor=CONTAINER_DESCRIPTOR,
        jwks=CONTAINER_JWKS,
        cluster_type="STRICT_DNS",
        health_interval="5s",
        upstream_hosts={name: name for name in settings.mesh.services},
    )


def envoy_config(settings: MeshSettings, surface: RestSurface, target: Target) -> dict[str, Any]:
    where = placement(settings, target)
    return {
        "admin": {"address": _socket("127.0.0.1", settings.envoy_admin_port)},
        "overload_manager": _overload_manager(),
        "static_resources": {
            "listeners": [_listener(settings, surface, where)],
            "clusters": [_cluster(settings, name, where) for name in settings.mesh.services],
        },
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


def _listener(settings: MeshSettings, surface: RestSurface, where: Placement) -> dict[str, Any]:
    manager = _typed(
        "filters.network.http_connection_manager.v3.HttpConnectionManager",
        stat_prefix="gateway",
        codec_type="AUTO",
        use_remote_address=True,
        normalize_path=True,
        merge_slashes=True,
        common_http_protocol_options={"headers_with_underscores_action": "REJECT_REQUEST"},
        access_log=[
            {
                "name": "envoy.access_loggers.stdout",
                "typed_config": _typed("access_loggers.stream.v3.StdoutAccessLog"),
            }
        ],
        route_config=_route_config(settings, surface),
        http_filters=_http_filters(settings, surface, where),
    )
    return {
        "name": "gateway",
        "address": _socket(where.listen_host, settings.gateway_port),
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}
        ],
    }


def _http_filters(settings: MeshSettings, surface: RestSurface, where: Placement) -> list[dict[str, Any]]:
    filters = [
        ("envoy.filters.http.health_check", _health_check(settings)),
        ("envoy.filters.http.cors", _typed("filters.http.cors.v3.Cors")),
        ("envoy.filters.http.jwt_authn", _jwt_authn(settings, surface, where)),
        (LOCAL_RATE_LIMIT, _rate_limit(settings)),
        ("envoy.filters.http.buffer", _body_limit(settings)),
        ("envoy.filters.http.grpc_json_transcoder", _transcoder(settings, surface, where)),
        ("envoy.filters.http.router", _typed("filters.http.router.v3.Router")),
    ]
    return [{"name": name, "typed_config": config} for name, config in filters]


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
        # The services verify the token again (and check the session): keep it.
        "forward": True,
        # The rate limit keys an authenticated request by its subject (see _client_rate_limit).
        "payload_in_metadata": JWT_PAYLOAD,
    }
    # Deny by default: the public routes are listed first without a requirement,
    # and every other request (known route or not) needs a valid token.
    public = [{"match": _route_match(route)} for route in surface.public(settings)]
    everything_else = {"match": {"prefix": "/"}, "requires": {"provider_name": JWT_PROVIDER}}
    return _typed(
        "filters.http.jwt_authn.v3.JwtAuthentication",
        providers={JWT_PROVIDER: provider},
        rules=[*public, everything_else],
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


def _route_config(settings: MeshSettings, surface: RestSurface) -> dict[str, Any]:
    cors = _typed(
        "filters.http.cors.v3.CorsPolicy",
        allow_origin_string_match=[{"safe_regex": {"regex": ".*"}}],
        allow_methods="GET,POST,PATCH,DELETE,OPTIONS",
        allow_headers="authorization,content-type",
        max_age="600",
    )
    routes = [_route(settings, route) for route in surface.routes]
    preflight = [_preflight_route(name) for name in settings.mesh.services[:1]]
    return {
        "name": "rest",
        "virtual_hosts": [
            {
                "name": "expense-mesh",
                "domains": ["*"],
                "routes": [*routes, *preflight, _not_found_route()],
                # On the virtual host, so preflights of any path get an answer.
                "typed_per_filter_config": {"envoy.filters.http.cors": cors},
            }
        ],
    }


def _route_match(route: HttpRoute) -> dict[str, Any]:
    """Exactly this REST binding: method and whole path (query string excluded)."""
    path = {"path": route.template} if route.is_literal else {"safe_regex": {"regex": route.regex}}
    return {**path, "headers": [{"name": ":method", "string_match": {"exact": route.verb}}]}


def _route(settings: MeshSettings, route: HttpRoute) -> dict[str, Any]:
    return {
        "name": route.name,
        "match": _route_match(route),
        "route": {"cluster": route.service, "timeout": f"{settings.limits.default_deadline_seconds:g}s"},
        **_password_route_rate_limit(settings, route),
    }


def _preflight_route(cluster: str) -> dict[str, Any]:
    """CORS preflights of every REST path. The cors filter answers them itself, but
    only on a route that forwards (not on a direct_response route); the cluster is
    never reached, and a preflight the policy refuses stops at the transcoder (404)."""
    present = {"present_match": True}
    return {
        "name": "cors-preflight",
        "match": {
            "prefix": "/",
            "headers": [
                {"name": ":method", "string_match": {"exact": "OPTIONS"}},
                {"name": "origin", **present},
                {"name": "access-control-request-method", **present},
            ],
        },
        "route": {"cluster": cluster},
    }


def _not_found_route() -> dict[str, Any]:
    # Anything else must not reach a backend: the transcoder would pass it through
    # and the service would reset the stream (503, gateway-mesh-facts §1.1 pitfall 2).
    return {
        "name": "not-found",
        "match": {"prefix": "/"},
        "direct_response": {"status": 404, "body": {"inline_string": NOT_FOUND_BODY}},
        # Else the transcoder answers first, in text/plain (reject_unknown_method).
        "typed_per_filter_config": {
            "envoy.filters.http.grpc_json_transcoder": {
                "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                "disabled": True,
            }
        },
        "response_headers_to_add": [
            {
                "header": {"key": "content-type", "value": "application/json"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ],
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
        "circuit_breakers": {
            "thresholds": [
                {
                    "priority": "DEFAULT",
                    "max_connections": 1024,
                    "max_pending_requests": 1024,
                    "max_requests": 1024,
                    "max_retries": 3,
                }
            ]
        },
        "outlier_detection": {
            "consecutive_5xx": 5,
            "consecutive_gateway_failure": 5,
            "interval": "5s",
            "base_ejection_time": "15s",
            "max_ejection_percent": 50,
        },
    }
