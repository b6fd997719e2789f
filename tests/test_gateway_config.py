"""The gateways against the protos: every `google.api.http` rule of the mesh services
has exactly one Envoy route and one Kong route (and nothing else is routed), the
token requirement follows settings.mesh.public_methods, the rate limits are per client
(tighter on settings.mesh.password_methods), the generated Envoy configs
pass `envoy --mode validate`, and the committed files are up to date."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from services.auth.keys import ensure_signing_keys
from services.kit.config.settings import REPO_ROOT, MeshSettings, RateLimit
from services.launcher import envoy, generated, kong
from services.launcher.routes import (
    DESCRIPTOR_SET,
    HttpRoute,
    load_descriptor_set,
    rest_surface,
    template_regex,
)
from tests.mesh import free_ports

ENVOY = Path(sys.executable).parent / "envoy"
EXTRA_ENVOY_ROUTES = {"cors-preflight", "cors-preflight-refused", "not-found"}
FILTER_ORDER = [
    "envoy.filters.http.header_mutation",
    "envoy.filters.http.health_check",
    "envoy.filters.http.cors",
    "envoy.filters.http.lua",
    "envoy.filters.http.jwt_authn",
    "envoy.filters.http.local_ratelimit",
    "envoy.filters.http.buffer",
    "expense.strict_input",
    "envoy.filters.http.grpc_json_transcoder",
    "envoy.filters.http.router",
]

SETTINGS = generated.committed_settings()
SURFACE = rest_surface(SETTINGS)
PUBLIC = set(SETTINGS.mesh.public_methods)
PASSWORD_METHODS = set(SETTINGS.mesh.password_methods)
GATEWAY_LIMITS = SETTINGS.limits.gateway


def sample_path(route: HttpRoute) -> str:
    """A concrete request path for a template: every variable becomes `x1`."""
    return re.sub(r"\{[^}]*\}", "x1", route.template)


def _listener_config(config: dict[str, Any]) -> dict[str, Any]:
    listener = config["static_resources"]["listeners"][0]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]


def _http_filter(config: dict[str, Any], name: str) -> dict[str, Any]:
    filters = _listener_config(config)["http_filters"]
    return next(f["typed_config"] for f in filters if f["name"] == name)


def _envoy_routes(config: dict[str, Any]) -> list[dict[str, Any]]:
    return _listener_config(config)["route_config"]["virtual_hosts"][0]["routes"]


def envoy_match(match: dict[str, Any], method: str, path: str) -> bool:
    """Envoy's RouteMatch semantics for the fields the generator uses."""
    if "path" in match and match["path"] != path:
        return False
    if "prefix" in match and not path.startswith(match["prefix"]):
        return False
    if "safe_regex" in match and not re.fullmatch(match["safe_regex"]["regex"], path):
        return False
    headers = {":method": method}
    for header in match.get("headers", []):
        value = headers.get(header["name"])
        if header.get("present_match") and value is None:
            return False
        if "string_match" in header and value != header["string_match"]["exact"]:
            return False
    return True


def kong_match(route: dict[str, Any], method: str, path: str) -> bool:
    # Kong 3: "~" marks a regex path, anchored at the start.
    return method in route["methods"] and any(re.match(p.removeprefix("~"), path) for p in route["paths"])


@pytest.fixture(scope="module")
def envoy_compose() -> dict[str, Any]:
    return envoy.envoy_config(SETTINGS, SURFACE, "compose")


@pytest.fixture(scope="module")
def kong_routes() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The mesh services' REST routes (the web service's are tested on their own)."""
    config = kong.kong_config(SETTINGS, SURFACE)
    return [
        (service, route)
        for service in config["services"]
        if service["name"] != "web"
        for route in service["routes"]
    ]


def test_the_rest_surface_comes_from_the_mesh_services() -> None:
    assert SURFACE.routes, "no google.api.http rule found in the descriptor set"
    packages = {file.package for file in load_descriptor_set().file}
    assert {f"expense.{name}.v1" for name in SETTINGS.mesh.services} <= packages
    assert {route.service for route in SURFACE.routes} <= set(SETTINGS.mesh.services)
    names = [route.name for route in SURFACE.routes]
    assert len(names) == len(set(names))
    assert {route.full_method for route in SURFACE.public(SETTINGS)} <= PUBLIC


@pytest.mark.parametrize(
    ("template", "path", "matches"),
    [
        ("/v1/expenses/{expense_id}", "/v1/expenses/e1", True),
        ("/v1/expenses/{expense_id}", "/v1/expenses/e1/history", False),
        ("/v1/expenses:import", "/v1/expenses:import", True),
        ("/v1/expenses:import", "/v1/expensesXimport", False),
        ("/v1/{name=users/*}/items", "/v1/users/u1/items", True),
        ("/v1/files/{path=**}", "/v1/files/a/b/c", True),
    ],
)
def test_template_regex(template: str, path: str, matches: bool) -> None:
    assert bool(re.fullmatch(template_regex(template), path)) is matches


def test_kong_exports_its_metrics_with_bounded_labels() -> None:
    plugins = {plugin["name"]: plugin for plugin in kong.kong_config(SETTINGS, SURFACE)["plugins"]}
    assert plugins["prometheus"]["config"]["per_consumer"] is False
    off = SETTINGS.model_copy(update={"metrics": SETTINGS.metrics.model_copy(update={"enabled": False})})
    assert "prometheus" not in {plugin["name"] for plugin in kong.kong_config(off, SURFACE)["plugins"]}


@pytest.mark.parametrize("rule", SURFACE.routes, ids=lambda route: route.name)
def test_each_rule_has_exactly_one_envoy_route(rule: HttpRoute, envoy_compose: dict[str, Any]) -> None:
    routes = [r for r in _envoy_routes(envoy_compose) if r["name"] not in EXTRA_ENVOY_ROUTES]
    matching = [r for r in routes if envoy_match(r["match"], rule.verb, sample_path(rule))]
    assert [r["name"] for r in matching] == [rule.name]
    first = next(
        r for r in _envoy_routes(envoy_compose) if envoy_match(r["match"], rule.verb, sample_path(rule))
    )
    assert first["route"]["cluster"] == rule.service


def test_envoy_routes_nothing_else(envoy_compose: dict[str, Any]) -> None:
    names = [r["name"] for r in _envoy_routes(envoy_compose)]
    # No origin is allowed by default, so no preflight is forwarded.
    assert not SETTINGS.cors.origins
    expected = {rule.name for rule in SURFACE.routes} | set(envoy.WEB_MATCHES) | EXTRA_ENVOY_ROUTES
    assert set(names) == expected - {"cors-preflight"}
    assert len(names) == len(set(names))
    assert names[-1] == "not-found"
    not_found = _envoy_routes(envoy_compose)[-1]
    assert envoy_match(not_found["match"], "GET", "/v1/anything")
    assert not_found["direct_response"]["status"] == 404


@pytest.mark.parametrize("rule", SURFACE.routes, ids=lambda route: route.name)
def test_envoy_requires_a_token_exactly_on_non_public_rules(
    rule: HttpRoute, envoy_compose: dict[str, Any]
) -> None:
    rules = _http_filter(envoy_compose, "envoy.filters.http.jwt_authn")["rules"]
    first = next(r for r in rules if envoy_match(r["match"], rule.verb, sample_path(rule)))
    assert ("requires" in first) is (rule.full_method not in PUBLIC)


@pytest.mark.parametrize(
    ("method", "path", "to_web"),
    [
        ("GET", "/", True),
        ("GET", "/assets/js/app.js", True),
        ("POST", "/web/session/login", True),
        ("POST", "/", False),
        ("GET", "/web/session/login", False),
        ("GET", "/v1/expenses", False),
        ("GET", "/favicon.ico", False),
    ],
)
def test_envoy_sends_the_dashboard_to_the_web_service_without_a_token(
    envoy_compose: dict[str, Any], method: str, path: str, to_web: bool
) -> None:
    first = next((r for r in _envoy_routes(envoy_compose) if envoy_match(r["match"], method, path)), {})
    assert (first.get("route", {}).get("cluster") == envoy.WEB_CLUSTER) is to_web
    rules = _http_filter(envoy_compose, "envoy.filters.http.jwt_authn")["rules"]
    rule = next((r for r in rules if envoy_match(r["match"], method, path)), None)
    if to_web:
        assert rule is not None and "requires" not in rule
        # Not gRPC: the transcoder stays out of the way.
        assert first["typed_per_filter_config"]["envoy.filters.http.grpc_json_transcoder"]["disabled"]
    elif rule is not None and not path.startswith("/v1/auth/"):
        # A route of the API: its token is required (an unknown path has no rule: 404).
        assert rule["requires"] == {"provider_name": envoy.JWT_PROVIDER}


def test_kong_sends_the_dashboard_to_the_web_service() -> None:
    web = next(s for s in kong.kong_config(SETTINGS, SURFACE)["services"] if s["name"] == "web")
    assert (web["protocol"], web["host"], web["port"]) == ("http", "web", SETTINGS.web.port)
    routes = {route["name"]: route for route in web["routes"]}
    assert routes["web-page"]["paths"] == ["~/$"] and routes["web-page"]["methods"] == ["GET"]
    assert routes["web-session"]["methods"] == ["POST"]
    session_limit = routes["web-session"]["plugins"][0]["config"]
    assert (
        session_limit[SETTINGS.limits.gateway.password_routes.per]
        == SETTINGS.limits.gateway.password_routes.requests
    )
    # No jwt plugin: the page gets its token from the session route.
    assert all(plugin["name"] != "jwt" for route in web["routes"] for plugin in route["plugins"])


def test_envoy_needs_a_token_on_every_private_route_and_none_on_unknown_paths(
    envoy_compose: dict[str, Any],
) -> None:
    """An unknown path is the not-found route's 404, never a 401 (issue 18); every route
    of the surface but the public ones needs a token."""
    jwt = _http_filter(envoy_compose, "envoy.filters.http.jwt_authn")
    assert not [r for r in jwt["rules"] if envoy_match(r["match"], "GET", "/v1/not/a/route")]
    for route in SURFACE.routes:
        path = route.template.replace("{", "").replace("}", "")
        first = next(r for r in jwt["rules"] if envoy_match(r["match"], route.verb, path))
        expected = None if route.full_method in PUBLIC else {"provider_name": envoy.JWT_PROVIDER}
        assert first.get("requires") == expected, route.name
    provider = jwt["providers"][envoy.JWT_PROVIDER]
    assert provider["issuer"] == SETTINGS.jwt.issuer
    assert provider["audiences"] == [SETTINGS.jwt.audience]
    assert provider["forward"] is True
    assert jwt["bypass_cors_preflight"] is True


def test_envoy_filter_chain_and_transcoder(envoy_compose: dict[str, Any]) -> None:
    names = [f["name"] for f in _listener_config(envoy_compose)["http_filters"]]
    assert names == FILTER_ORDER
    transcoder = _http_filter(envoy_compose, "envoy.filters.http.grpc_json_transcoder")
    assert transcoder["services"] == list(SURFACE.grpc_services)
    assert transcoder["match_incoming_request_route"] is True
    assert transcoder["convert_grpc_status"] is True
    assert all(transcoder["request_validation_options"].values())
    assert transcoder["print_options"] == {
        "add_whitespace": False,
        "always_print_primitive_fields": True,
        "preserve_proto_field_names": True,
    }
    limit = _http_filter(envoy_compose, "envoy.filters.http.buffer")["max_request_bytes"]
    assert limit == transcoder["max_request_body_size"] == SETTINGS.limits.gateway_max_body_bytes


def test_envoy_clusters_match_the_launcher(envoy_compose: dict[str, Any]) -> None:
    clusters = {c["name"]: c for c in envoy_compose["static_resources"]["clusters"]}
    assert clusters.pop(envoy.ADMIN_CLUSTER)["type"] == "STATIC"  # the stats listener's
    web = clusters.pop(envoy.WEB_CLUSTER)
    web_address = web["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert web_address["socket_address"] == {"address": "web", "port_value": SETTINGS.web.port}
    assert web["health_checks"][0]["http_health_check"] == {"path": "/healthz"}
    assert list(clusters) == SETTINGS.mesh.services
    for name, cluster in clusters.items():
        address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        assert address["socket_address"] == {"address": name, "port_value": SETTINGS.service_port(name)}
        assert cluster["health_checks"][0]["grpc_health_check"] == {"service_name": ""}


def test_envoy_in_a_container_serves_its_prometheus_stats_and_nothing_else_of_admin(
    envoy_compose: dict[str, Any],
) -> None:
    assert envoy_compose["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    listeners = {listener["name"]: listener for listener in envoy_compose["static_resources"]["listeners"]}
    stats = listeners["stats"]
    assert stats["address"]["socket_address"]["port_value"] == SETTINGS.metrics.gateway_port
    manager = stats["filter_chains"][0]["filters"][0]["typed_config"]
    (host,) = manager["route_config"]["virtual_hosts"]
    assert host["routes"] == [
        {"match": {"path": "/stats/prometheus"}, "route": {"cluster": envoy.ADMIN_CLUSTER}},
        {"match": {"prefix": "/"}, "direct_response": {"status": 404}},
    ]
    local = envoy.envoy_config(SETTINGS, SURFACE, "local")  # `up`: the admin port itself
    assert [listener["name"] for listener in local["static_resources"]["listeners"]] == ["gateway"]


def test_envoy_breakers_and_outlier_detection_come_from_the_settings() -> None:
    gateway = SETTINGS.resilience.gateway.model_copy(
        update={"max_requests": 77, "consecutive_5xx": 9, "base_ejection_seconds": 2.5}
    )
    resilience = SETTINGS.resilience.model_copy(update={"gateway": gateway})
    config = envoy.envoy_config(SETTINGS.model_copy(update={"resilience": resilience}), SURFACE, "compose")
    for cluster in config["static_resources"]["clusters"][: len(SETTINGS.mesh.services)]:
        assert cluster["circuit_breakers"]["thresholds"][0]["max_requests"] == 77
        assert cluster["outlier_detection"]["consecutive_5xx"] == 9
        assert cluster["outlier_detection"]["base_ejection_time"] == "2.5s"


def _token_bucket(limit: RateLimit) -> dict[str, Any]:
    return {
        "max_tokens": limit.requests,
        "tokens_per_fill": limit.requests,
        "fill_interval": f"{limit.seconds}s",
    }


def _client_buckets(rate_limit: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A local_ratelimit config's descriptors, by their first key."""
    return {d["entries"][0]["key"]: d["token_bucket"] for d in rate_limit["descriptors"]}


def _retry_after(rate_limit: dict[str, Any]) -> str:
    (header,) = [
        h["header"] for h in rate_limit["response_headers_to_add"] if h["header"]["key"] == "retry-after"
    ]
    return str(header["value"])


def test_envoy_rate_limits_each_client_not_the_whole_gateway(envoy_compose: dict[str, Any]) -> None:
    limit = _http_filter(envoy_compose, envoy.LOCAL_RATE_LIMIT)
    assert _client_buckets(limit) == {
        "user": _token_bucket(GATEWAY_LIMITS.per_user),
        "anonymous": _token_bucket(GATEWAY_LIMITS.per_ip),
    }
    # Per user: the subject of the token jwt_authn verified (metadata, not a client's header).
    provider = _http_filter(envoy_compose, "envoy.filters.http.jwt_authn")["providers"][envoy.JWT_PROVIDER]
    subject = {
        "key": "envoy.filters.http.jwt_authn",
        "path": [{"key": provider["payload_in_metadata"]}, {"key": "sub"}],
    }
    by_user, by_address = (entry["actions"] for entry in limit["rate_limits"])
    assert by_user == [{"metadata": {"descriptor_key": "user", "metadata_key": subject, "source": "DYNAMIC"}}]
    # Per IP only without a verified token: the address descriptor holds the subject's default.
    anonymous, address = by_address
    assert anonymous["metadata"]["metadata_key"] == subject
    assert anonymous["metadata"]["default_value"] == envoy.ANONYMOUS
    assert address == {"remote_address": {}}
    assert limit["descriptors"][1]["entries"][0] == {"key": "anonymous", "value": envoy.ANONYMOUS}
    # No bucket shared by every client, and a bucket for as many clients as configured.
    assert limit["always_consume_default_token_bucket"] is False
    assert limit["max_dynamic_descriptors"] == GATEWAY_LIMITS.tracked_clients
    assert _retry_after(limit) == "1"


def test_password_methods_are_rest_routes() -> None:
    assert {rule.full_method for rule in SURFACE.routes} >= PASSWORD_METHODS


@pytest.mark.parametrize("rule", SURFACE.routes, ids=lambda route: route.name)
def test_envoy_password_routes_have_their_own_tighter_limit(
    rule: HttpRoute, envoy_compose: dict[str, Any]
) -> None:
    route = next(r for r in _envoy_routes(envoy_compose) if r["name"] == rule.name)
    own = route.get("typed_per_filter_config", {}).get(envoy.LOCAL_RATE_LIMIT)
    if rule.full_method not in PASSWORD_METHODS:
        assert own is None
        return
    password = GATEWAY_LIMITS.password_routes
    assert _client_buckets(own) == {"user": _token_bucket(password), "anonymous": _token_bucket(password)}
    assert own["max_dynamic_descriptors"] == GATEWAY_LIMITS.tracked_clients
    assert _retry_after(own) == str(password.seconds)


def test_kong_rate_limits_per_access_token_unless_a_route_has_its_own() -> None:
    plugins = kong.kong_config(SETTINGS, SURFACE)["plugins"]
    per_user = GATEWAY_LIMITS.per_user
    assert [plugin for plugin in plugins if plugin["name"] == "rate-limiting"] == [
        {
            "name": "rate-limiting",
            "config": {
                per_user.per: per_user.requests,
                "limit_by": "header",
                "header_name": "authorization",
                "policy": "local",
            },
        }
    ]


def test_kong_limits_bodies_as_envoy_does_and_tags_every_request() -> None:
    plugins = {plugin["name"]: plugin["config"] for plugin in kong.kong_config(SETTINGS, SURFACE)["plugins"]}
    assert plugins["request-size-limiting"] == {
        "allowed_payload_size": SETTINGS.limits.gateway_max_body_bytes,
        "size_unit": "bytes",
        "require_content_length": False,
    }
    assert plugins["correlation-id"]["header_name"] == "X-Request-ID"
    assert plugins["correlation-id"]["echo_downstream"] is True


@pytest.mark.parametrize("rule", SURFACE.routes, ids=lambda route: route.name)
def test_kong_public_and_password_routes_have_their_own_limit(
    rule: HttpRoute, kong_routes: list[tuple[dict[str, Any], dict[str, Any]]]
) -> None:
    route = next(r for _, r in kong_routes if r["name"] == rule.name)
    limits = [plugin["config"] for plugin in route["plugins"] if plugin["name"] == "rate-limiting"]
    is_public = rule.full_method in PUBLIC
    client = {"limit_by": "ip"} if is_public else {"limit_by": "header", "header_name": "authorization"}
    if rule.full_method in PASSWORD_METHODS:
        limit: RateLimit | None = GATEWAY_LIMITS.password_routes
    else:
        limit = GATEWAY_LIMITS.per_ip if is_public else None
    expected = [{limit.per: limit.requests, **client, "policy": "local"}] if limit else []
    assert limits == expected


@pytest.mark.parametrize("rule", SURFACE.routes, ids=lambda route: route.name)
def test_each_rule_has_exactly_one_kong_route(
    rule: HttpRoute, kong_routes: list[tuple[dict[str, Any], dict[str, Any]]]
) -> None:
    matching = [(s, r) for s, r in kong_routes if kong_match(r, rule.verb, sample_path(rule))]
    assert [r["name"] for _, r in matching] == [rule.name]
    service, route = matching[0]
    assert (service["name"], service["host"], service["protocol"]) == (rule.service, rule.service, "grpc")
    assert service["port"] == SETTINGS.service_port(rule.service)
    plugins = {plugin["name"]: plugin["config"] for plugin in route["plugins"]}
    assert plugins["grpc-gateway"]["proto"] == f"/usr/local/kong/include/{rule.proto_file}"
    assert (REPO_ROOT / "proto" / rule.proto_file).is_file()
    assert ("jwt" in plugins) is (rule.full_method not in PUBLIC)
    if "jwt" in plugins:
        assert plugins["jwt"]["claims_to_verify"] == ["exp"]


def test_kong_routes_nothing_else(kong_routes: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    names = [route["name"] for _, route in kong_routes]
    assert sorted(names) == sorted(rule.name for rule in SURFACE.routes)
    login = next(route for _, route in kong_routes if route["name"] == "auth-log-in")
    assert "rate-limiting" in {plugin["name"] for plugin in login["plugins"]}


def test_committed_kong_config_holds_no_key() -> None:
    text = (REPO_ROOT / "kong" / "kong.yml").read_text()
    config = yaml.safe_load(text)
    assert config["_format_version"] == "3.0"
    assert [consumer.get("jwt_secrets") for consumer in config["consumers"]] == [None]
    assert "BEGIN" not in text


def test_kong_config_injects_the_public_keys_at_deploy_time(tmp_path: Path) -> None:
    settings = SETTINGS.model_copy(update={"data_dir": tmp_path})
    ring = ensure_signing_keys(settings)
    output = tmp_path / "kong.yml"
    jwks = settings.keys_dir / "jwks.json"
    subprocess.run(
        [sys.executable, "-m", "services.launcher", "kong-config", "--jwks", str(jwks), "-o", str(output)],
        cwd=REPO_ROOT,
        check=True,
    )
    (secret,) = yaml.safe_load(output.read_text())["consumers"][0]["jwt_secrets"]
    assert (secret["key"], secret["algorithm"]) == (ring.current.kid, "RS256")
    public_key = serialization.load_pem_public_key(secret["rsa_public_key"].encode())
    assert public_key.public_numbers() == ring.current.private_key.public_key().public_numbers()
    assert "PRIVATE" not in output.read_text()


def _validate(config_file: Path) -> None:
    result = subprocess.run(
        [str(ENVOY), "--mode", "validate", "-c", str(config_file), "-l", "warn"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _settings_in(data_dir: Path) -> MeshSettings:
    settings = SETTINGS.model_copy(update={"data_dir": data_dir})
    ensure_signing_keys(settings)
    return settings


def test_local_envoy_config_validates(tmp_path: Path) -> None:
    settings = _settings_in(tmp_path)
    config_file = tmp_path / "envoy.yaml"
    config_file.write_text(yaml.safe_dump(envoy.envoy_config(settings, SURFACE, "local")))
    _validate(config_file)


def test_traced_envoy_config_validates(tmp_path: Path) -> None:
    """With [tracing] otlp_endpoint: the OpenTelemetry tracer and the collector's cluster."""
    settings = _settings_in(tmp_path)
    tracing = settings.tracing.model_copy(update={"otlp_endpoint": "http://otel-collector:4317"})
    config = envoy.envoy_config(settings.model_copy(update={"tracing": tracing}), SURFACE, "local")
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert manager["tracing"]["provider"]["name"] == "envoy.tracers.opentelemetry"
    assert envoy.COLLECTOR_CLUSTER in {cluster["name"] for cluster in config["static_resources"]["clusters"]}
    config_file = tmp_path / "envoy.yaml"
    config_file.write_text(yaml.safe_dump(config))
    _validate(config_file)


def test_committed_envoy_config_validates(tmp_path: Path) -> None:
    """envoy/envoy.yaml, with the container paths pointed at real files."""
    settings = _settings_in(tmp_path)
    text = (REPO_ROOT / "envoy" / "envoy.yaml").read_text()
    text = text.replace(envoy.CONTAINER_DESCRIPTOR, str(DESCRIPTOR_SET))
    text = text.replace(envoy.CONTAINER_JWKS, str(settings.keys_dir / "jwks.json"))
    config_file = tmp_path / "envoy.yaml"
    config_file.write_text(text)
    _validate(config_file)


def test_committed_generated_files_are_up_to_date() -> None:
    stale = [str(path.relative_to(REPO_ROOT)) for path in generated.stale_files()]
    assert not stale, f"run `python -m services.launcher deploy-files`; out of date: {stale}"


# --- the edge (issue 21: items 6, 10, 11, 12; end to end in tests/test_gateway_edge.py) ---


def _with_origins(*origins: str) -> dict[str, Any]:
    cors = SETTINGS.cors.model_copy(
        update={"allowed_origins": list(origins[1:]), "dashboard_origin": origins[0]}
    )
    return envoy.envoy_config(SETTINGS.model_copy(update={"cors": cors}), SURFACE, "compose")


def _preflight_origin_allowed(config: dict[str, Any], origin: str) -> bool:
    """Whether a preflight from `origin` reaches the forwarding route the cors filter answers."""
    for route in _envoy_routes(config):
        headers = {h["name"]: h for h in route["match"].get("headers", [])}
        regex = headers.get("origin", {}).get("string_match", {}).get("safe_regex", {}).get("regex")
        if route["name"] == "cors-preflight" and re.fullmatch(regex, origin):
            return True
        if route["name"] == "cors-preflight-refused":
            assert route["direct_response"]["status"] == 403
            return False
    raise AssertionError("no preflight route")


def _cors_policy(config: dict[str, Any]) -> dict[str, Any]:
    host = _listener_config(config)["route_config"]["virtual_hosts"][0]
    return host["typed_per_filter_config"]["envoy.filters.http.cors"]


def test_cors_allows_no_origin_by_default(envoy_compose: dict[str, Any]) -> None:
    assert _cors_policy(envoy_compose)["allow_origin_string_match"] == []
    assert not _preflight_origin_allowed(envoy_compose, "https://evil.example")


def test_cors_allows_the_configured_origins_only() -> None:
    config = _with_origins("https://dash.example", "http://localhost:5173")
    policy = _cors_policy(config)
    assert policy["allow_origin_string_match"] == [
        {"exact": "http://localhost:5173"},
        {"exact": "https://dash.example"},
    ]
    for origin in ("https://dash.example", "http://localhost:5173"):
        assert _preflight_origin_allowed(config, origin)
    for origin in ("https://evil.example", "https://dash.example.evil", "https://dashXexample", "null"):
        assert not _preflight_origin_allowed(config, origin), origin


@pytest.mark.parametrize("origin", ["https://dash.example/", "dash.example", "https://dash.example/app", "*"])
def test_an_origin_is_scheme_host_and_port(origin: str) -> None:
    with pytest.raises(ValueError, match="allowed_origins"):
        MeshSettings.model_validate({"cors": {"allowed_origins": [origin]}})


def test_only_token_answers_are_marked_no_store(envoy_compose: dict[str, Any]) -> None:
    no_store = {
        route["name"]
        for route in _envoy_routes(envoy_compose)
        if {"key": "cache-control", "value": "no-store"}
        in [h["header"] for h in route.get("response_headers_to_add", [])]
    }
    assert no_store == {"auth-sign-up", "auth-log-in", "auth-refresh-token"}


def _local_reply_mapper(config: dict[str, Any], status: int) -> dict[str, Any]:
    mappers = _listener_config(config)["local_reply_config"]["mappers"]
    return next(
        m
        for m in mappers
        if "status_code_filter" in m["filter"]
        and m["filter"]["status_code_filter"]["comparison"]["op"] == "EQ"
        and m["filter"]["status_code_filter"]["comparison"]["value"]["default_value"] == status
    )


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 414, 415, 429, 431, 500, 503, 504])
def test_envoys_own_answers_have_the_json_error_shape(envoy_compose: dict[str, Any], status: int) -> None:
    body = _local_reply_mapper(envoy_compose, status)["body_format_override"]
    assert body["content_type"] == "application/json"
    assert set(body["json_format"]) == {"code", "message", "details"}
    (info,) = [d for d in body["json_format"]["details"] if d["@type"].endswith("ErrorInfo")]
    assert info["reason"] == envoy.LOCAL_REPLIES[status][2] and info["domain"] == "expense-mesh"


def test_the_gateways_429_says_when_to_retry(envoy_compose: dict[str, Any]) -> None:
    """The local rate limit's 429 is a local reply; a service's 429 brings its own header."""
    (header,) = _local_reply_mapper(envoy_compose, 429)["headers_to_add"]
    assert header["header"] == {"key": "retry-after", "value": "1"}
    assert header["append_action"] == "ADD_IF_ABSENT"
    bucket = _http_filter(envoy_compose, "envoy.filters.http.local_ratelimit")["token_bucket"]
    assert bucket["fill_interval"] == "1s"


def test_every_answer_gets_the_security_headers(envoy_compose: dict[str, Any]) -> None:
    mutation = _http_filter(envoy_compose, "envoy.filters.http.header_mutation")
    added = {
        m["append"]["header"]["key"]: m["append"]["header"]["value"]
        for m in mutation["mutations"]["response_mutations"]
    }
    assert added == {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}


def test_the_request_limits_come_from_the_settings(envoy_compose: dict[str, Any]) -> None:
    limits = SETTINGS.limits
    assert _listener_config(envoy_compose)["max_request_headers_kb"] == limits.gateway_max_request_headers_kib
    guard = _http_filter(envoy_compose, "envoy.filters.http.lua")["default_source_code"]["inline_string"]
    assert f"local MAX_URL_BYTES = {limits.gateway_max_url_bytes}\n" in guard
    # A service accepts what the gateway forwards: the headers and the URL a second time.
    forwarded = limits.gateway_max_request_headers_kib * 1024 + limits.gateway_max_url_bytes
    assert limits.max_metadata_bytes >= 2 * forwarded


def test_kong_adds_the_same_headers_and_allows_no_origin_by_default(
    kong_routes: list[tuple[dict[str, Any], dict[str, Any]]],
) -> None:
    global_plugins = kong.kong_config(SETTINGS, SURFACE)["plugins"]
    assert "cors" not in [plugin["name"] for plugin in global_plugins]
    for _, route in kong_routes:
        plugins = {plugin["name"]: plugin["config"] for plugin in route["plugins"]}
        added = set(plugins["response-transformer"]["add"]["headers"])
        assert {"X-Content-Type-Options:nosniff", "Referrer-Policy:no-referrer"} <= added
        is_token_route = route["name"] in {"auth-sign-up", "auth-log-in", "auth-refresh-token"}
        assert ("Cache-Control:no-store" in added) is is_token_route
        # grpc-gateway's `Access-Control-Allow-Origin: *` is taken off again.
        assert plugins["response-transformer"]["remove"] == {"headers": ["Access-Control-Allow-Origin"]}


def test_kong_allows_the_configured_origins() -> None:
    cors = SETTINGS.cors.model_copy(update={"dashboard_origin": "https://dash.example"})
    config = kong.kong_config(SETTINGS.model_copy(update={"cors": cors}), SURFACE)
    (plugin,) = [plugin for plugin in config["plugins"] if plugin["name"] == "cors"]
    assert plugin["config"]["origins"] == ["https://dash.example"]
    transformers = [p for s in config["services"] for r in s["routes"] for p in r["plugins"]]
    assert all("remove" not in p["config"] for p in transformers if p["name"] == "response-transformer")


def test_the_gateways_own_429_has_retry_after_and_the_json_shape(tmp_path: Path) -> None:
    """The real Envoy with a one-request-per-second bucket and no service behind it: the
    rate limit answers before the router would find no backend (503)."""
    port, admin = free_ports(2)
    gateway = SETTINGS.limits.gateway.model_copy(update={"per_ip": RateLimit(requests=1)})
    limits = SETTINGS.limits.model_copy(update={"gateway": gateway})
    settings = _settings_in(tmp_path).model_copy(
        update={"gateway_port": port, "envoy_admin_port": admin, "limits": limits}
    )
    config_file = tmp_path / "envoy.yaml"
    config_file.write_text(yaml.safe_dump(envoy.envoy_config(settings, SURFACE, "local")))
    argv = [str(ENVOY), "-c", str(config_file), "--base-id", str(port), "--concurrency", "1", "-l", "error"]
    with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as process:
        try:
            answers = _get_until_ready(f"http://127.0.0.1:{port}/v1/auth/jwks", count=5)
        finally:
            process.terminate()
    limited = [(headers, body) for status, headers, body in answers if status == 429]
    assert limited, [status for status, _, _ in answers]
    for headers, body in limited:
        assert headers["retry-after"] == "1"
        assert headers["content-type"] == "application/json"
        answer = json.loads(body)
        assert (answer["code"], answer["message"]) == (8, "too many requests")
        types = {detail["@type"].rsplit(".", 1)[1]: detail for detail in answer["details"]}
        assert types["ErrorInfo"]["reason"] == "RATE_LIMITED"
        assert types["RetryInfo"]["retry_delay"] == "1s"
        assert types["QuotaFailure"]["violations"][1]["description"].startswith("1 requests per second")


def _get_until_ready(url: str, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """`count` GETs of url as fast as possible, once the listener accepts connections."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + 30
    answers: list[tuple[int, dict[str, str], bytes]] = []
    while len(answers) < count:
        try:
            with opener.open(url, timeout=2) as response:
                answers.append((response.status, dict(response.headers.items()), response.read()))
        except urllib.error.HTTPError as refused:
            answers.append((refused.code, {k.lower(): v for k, v in refused.headers.items()}, refused.read()))
        except OSError:
            assert time.monotonic() < deadline, "Envoy did not start"
            time.sleep(0.1)
    return answers


def test_downloads_get_the_download_timeout(envoy_compose: dict[str, Any]) -> None:
    """A streamed export outlives one call's deadline; every other route keeps it."""
    host = _listener_config(envoy_compose)["route_config"]["virtual_hosts"][0]
    timeouts = {
        route["name"]: route["route"]["timeout"]
        for route in host["routes"]
        if "route" in route and route["route"]["cluster"] != envoy.WEB_CLUSTER
    }
    download = f"{SETTINGS.limits.gateway_download_timeout_seconds:g}s"
    assert timeouts.pop("ledger-export-expenses") == download
    assert timeouts.pop("user-export-my-data") == download
    assert set(timeouts.values()) <= {f"{SETTINGS.limits.default_deadline_seconds:g}s"}


def test_strict_input_of_a_field_body_and_of_raw_bodies(envoy_compose: dict[str, Any]) -> None:
    """A body naming a field (`body: "preferences"`) is checked as that field's message and
    leaves the other fields to the query; an HttpBody (providers' callbacks) passes unchecked."""
    routes = {route["name"]: route for route in _envoy_routes(envoy_compose)}
    preferences = routes["notification-update-preferences"]["metadata"]["filter_metadata"][
        "expense.strict_input"
    ]
    assert preferences == {"body": "expense.notification.v1.Preferences", "query": {"update_mask": "string"}}
    for name in ("notification-twilio-status", "notification-meta-webhook"):
        assert routes[name]["metadata"]["filter_metadata"]["expense.strict_input"] == {}
