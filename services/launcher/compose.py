"""docker-compose.yml: the engines (PostgreSQL, Redis, NATS), a one-shot `migrate`
(keys, migrations, and the gateways' public key files), one container per mesh
service from one image, Kong as the edge and Envoy beside it."""

from __future__ import annotations

from typing import Any

from services.kit.config.settings import MeshSettings
from services.launcher.envoy import CONTAINER_DESCRIPTOR
from services.launcher.kong import KONG_INCLUDE
from services.launcher.nats import nats_users, password_variable

IMAGE = "expense-mesh:local"
ENVOY_IMAGE = "envoyproxy/envoy:v1.40.0"
KONG_IMAGE = "kong:3.10"
NATS_IMAGE = "nats:2.15.1-alpine"
POSTGRES_IMAGE = "postgres:16-alpine"
REDIS_IMAGE = "redis:7-alpine"
KONG_PROXY_PORT = 8000
KONG_STATUS_PORT = 8100
# Written by `migrate` (`prepare --publish-dir`), read by both gateways.
PUBLISHED = "/published"
# No password in git: `docker compose` refuses to start until it is set (e.g. in .env).
POSTGRES_PASSWORD = "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD (environment or .env)}"
DATABASE_URL = "postgresql+psycopg://expense:${POSTGRES_PASSWORD}@postgres:5432/expense"
# The ledger's page-token key, likewise: every ledger container must sign with the same one.
PAGE_TOKEN_KEY = "${EM_PAGE_TOKEN_KEY:?set EM_PAGE_TOKEN_KEY (environment or .env), 32 characters or more}"
# NATS's authorization (services/launcher/nats.py), rendered by `deploy-files`.
NATS_CONFIG = "nats/nats.conf"


def nats_password(user: str) -> str:
    """A NATS user's password, interpolated like POSTGRES_PASSWORD: nats-server gets
    every one, each service its own."""
    variable = password_variable(user)
    return f"${{{variable}:?a letter then 31+ letters/digits (environment or .env)}}"


def app_environment(settings: MeshSettings) -> dict[str, str]:
    return {
        "EM_HOST": "0.0.0.0",
        "EM_DATA_DIR": "/data",
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": "redis://redis:6379/0",
        "NATS_URL": "nats://nats:4222",
        **{f"EM_SERVICE_HOSTS__{name.upper()}": name for name in settings.mesh.services},
        **({"EM_SERVICE_HOSTS__WEB": "web"} if settings.web.enabled else {}),
    }


def compose_config(settings: MeshSettings) -> dict[str, Any]:
    services = {
        **_engines(settings),
        "migrate": _migrate(settings),
        **{name: _mesh_service(settings, name) for name in settings.mesh.services},
        **({"web": _web(settings)} if settings.web.enabled else {}),
        "envoy": _envoy(settings),
        "kong": _kong(),
    }
    volumes = {name: {} for name in ("postgres-data", "nats-data", "mesh-data", "published")}
    return {"name": "expense-mesh", "services": services, "volumes": volumes}


def _healthcheck(test: list[str]) -> dict[str, Any]:
    return {"test": test, "interval": "5s", "timeout": "3s", "retries": 12, "start_period": "10s"}


def _engines(settings: MeshSettings) -> dict[str, Any]:
    return {
        "postgres": {
            "image": POSTGRES_IMAGE,
            "environment": {
                "POSTGRES_USER": "expense",
                "POSTGRES_DB": "expense",
                "POSTGRES_PASSWORD": POSTGRES_PASSWORD,
            },
            "volumes": ["postgres-data:/var/lib/postgresql/data"],
            "healthcheck": _healthcheck(["CMD", "pg_isready", "-U", "expense", "-d", "expense"]),
        },
        "redis": {
            "image": REDIS_IMAGE,
            "command": ["redis-server", "--save", "", "--appendonly", "no"],
            "healthcheck": _healthcheck(["CMD", "redis-cli", "ping"]),
        },
        "nats": {
            "image": NATS_IMAGE,
            # A user per service, allowed its own subjects only (the config reads the passwords).
            "command": ["nats-server", "-c", "/etc/nats/nats.conf", "-js", "-sd", "/data", "-m", "8222"],
            "environment": {
                password_variable(u): nats_password(u) for u in nats_users(settings.mesh.services)
            },
            "volumes": ["nats-data:/data", f"./{NATS_CONFIG}:/etc/nats/nats.conf:ro"],
            "healthcheck": _healthcheck(
                ["CMD", "wget", "-q", "--spider", "http://127.0.0.1:8222/healthz?js-enabled-only=true"]
            ),
        },
    }


def _app(settings: MeshSettings, command: list[str]) -> dict[str, Any]:
    # Every app container builds/uses the same image; the layer cache makes it one build.
    return {
        "build": {"context": ".", "target": "service"},
        "image": IMAGE,
        "command": command,
        "environment": app_environment(settings),
    }


def _migrate(settings: MeshSettings) -> dict[str, Any]:
    command = ["python", "-m", "services.launcher", "prepare", "--publish-dir", PUBLISHED]
    return {
        **_app(settings, command),
        "volumes": ["mesh-data:/data", f"published:{PUBLISHED}"],
        "depends_on": {"postgres": {"condition": "service_healthy"}},
        "restart": "no",
    }


def _mesh_service(settings: MeshSettings, name: str) -> dict[str, Any]:
    port = str(settings.service_port(name))
    app = _app(settings, ["python", "-m", f"services.{name}", "serve"])
    app["environment"][password_variable(name)] = nats_password(name)
    service = {
        **app,
        "expose": [port],
        "depends_on": {
            **_after_migrate(),
            "nats": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        },
        # Readiness (service ""): what `depends_on: service_healthy` waits for. Compose restarts
        # a container that exits (restart policy), never an unhealthy one: no liveness check here.
        "healthcheck": _healthcheck(["CMD", "python", "-m", "services.launcher", "probe", port]),
        "restart": "unless-stopped",
    }
    if name == "auth":
        # The signing keys (private) made by `migrate`: the auth service only.
        service["volumes"] = ["mesh-data:/data"]
    if name == "ledger":
        service["environment"] = {**service["environment"], "EM_PAGE_TOKEN_KEY": PAGE_TOKEN_KEY}
    service["environment"] = {**service["environment"], **service_identity_env(settings, name)}
    return service


def _web(settings: MeshSettings) -> dict[str, Any]:
    """The dashboard (services/web): static files and the session endpoint; it calls auth only."""
    port = settings.web.port
    probe = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/healthz', timeout=2)"
    return {
        **_app(settings, ["python", "-m", "services.web", "serve"]),
        "expose": [str(port)],
        "depends_on": {"auth": {"condition": "service_healthy"}},
        "healthcheck": _healthcheck(["CMD", "python", "-c", probe]),
        "restart": "unless-stopped",
    }


def credential_variable(name: str) -> str:
    """The variable (environment or .env) holding a mesh service's service credential."""
    return f"{name.upper()}_SERVICE_CREDENTIAL"


def service_identity_env(settings: MeshSettings, name: str) -> dict[str, str]:
    """Each service's credential (it trades it with auth for service tokens); auth gets
    them all, to check them. Required, like the page-token key: no default in git."""

    def required(service: str) -> str:
        variable = credential_variable(service)
        return f"${{{variable}:?set {variable} (environment or .env), 32+ characters}}"

    if name != "auth":
        return {"EM_SERVICE_CREDENTIAL": required(name)}
    callers = [service for service in settings.mesh.services if service != "auth"]
    return {f"EM_SERVICE_CREDENTIALS__{service.upper()}": required(service) for service in callers}


def _after_migrate() -> dict[str, Any]:
    return {"migrate": {"condition": "service_completed_successfully"}}


def _envoy(settings: MeshSettings) -> dict[str, Any]:
    return {
        "image": ENVOY_IMAGE,
        "command": ["envoy", "-c", "/etc/envoy/envoy.yaml"],
        "volumes": [
            "./envoy/envoy.yaml:/etc/envoy/envoy.yaml:ro",
            f"./gen/expense_mesh.binpb:{CONTAINER_DESCRIPTOR}:ro",
            "published:/etc/envoy/published:ro",
        ],
        "ports": [f"{settings.gateway_port}:{settings.gateway_port}"],
        "depends_on": _after_migrate(),
        "restart": "unless-stopped",
    }


def _kong() -> dict[str, Any]:
    return {
        "image": KONG_IMAGE,
        "environment": {
            "KONG_DATABASE": "off",
            # kong/kong.yml plus the consumer's public keys, rendered by `migrate`.
            "KONG_DECLARATIVE_CONFIG": "/etc/kong/published/kong.yml",
            "KONG_PROXY_LISTEN": f"0.0.0.0:{KONG_PROXY_PORT}",
            "KONG_ADMIN_LISTEN": "127.0.0.1:8001",
            # GET /metrics (the prometheus plugin) on the compose network only, never published.
            "KONG_STATUS_LISTEN": f"0.0.0.0:{KONG_STATUS_PORT}",
            "KONG_PROXY_ACCESS_LOG": "/dev/stdout",
            "KONG_PROXY_ERROR_LOG": "/dev/stderr",
            "KONG_ADMIN_ERROR_LOG": "/dev/stderr",
        },
        "volumes": [
            f"./proto/expense:{KONG_INCLUDE}/expense:ro",
            # google/api only: Kong's own google/protobuf well-known types stay visible.
            f"./third_party/google/api:{KONG_INCLUDE}/google/api:ro",
            "published:/etc/kong/published:ro",
        ],
        "ports": [f"{KONG_PROXY_PORT}:{KONG_PROXY_PORT}"],
        "depends_on": _after_migrate(),
        "healthcheck": _healthcheck(["CMD", "kong", "health"]),
        "restart": "unless-stopped",
    }
