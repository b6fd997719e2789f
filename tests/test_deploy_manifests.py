"""docker-compose.yml, the Dockerfile and the k8s/ kustomize base, without a Docker
engine or a cluster: the compose spec schema (vendored in check-jsonschema), the
Kubernetes schemas (vendored in kubernetes-validate), and the services and ports
of the launcher."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from services.kit.config.settings import REPO_ROOT
from services.kit.grpc.server import LIVENESS
from services.launcher import generated
from services.launcher.compose import NATS_CONFIG
from services.launcher.nats import nats_users, password_variable
from tests.infra import NATS_SERVER

SETTINGS = generated.committed_settings()
MESH = SETTINGS.mesh.services
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
K8S = REPO_ROOT / "k8s"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [
        (name, doc)
        for name in kustomization["resources"]
        for doc in yaml.safe_load_all((K8S / name).read_text())
    ]


MANIFESTS = _manifests()


def _find(kind: str, name: str) -> dict[str, Any]:
    (found,) = [doc for _, doc in MANIFESTS if doc["kind"] == kind and doc["metadata"]["name"] == name]
    return found


def test_compose_file_matches_the_compose_spec() -> None:
    # The schema ships inside check-jsonschema: nothing is downloaded.
    result = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", MESH)
def test_compose_runs_each_mesh_service_on_the_launcher_port(name: str, compose: dict[str, Any]) -> None:
    service = compose["services"][name]
    port = str(SETTINGS.service_port(name))
    assert service["command"] == ["python", "-m", f"services.{name}", "serve"]
    assert service["expose"] == [port]
    assert service["healthcheck"]["test"] == ["CMD", "python", "-m", "services.launcher", "probe", port]
    assert service["environment"]["EM_HOST"] == "0.0.0.0"
    assert {"DATABASE_URL", "REDIS_URL", "NATS_URL"} <= set(service["environment"])
    assert service["environment"][f"EM_SERVICE_HOSTS__{name.upper()}"] == name
    assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}


def test_compose_has_the_engines_gateways_and_one_image(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "redis", "nats", "kong", "envoy", "migrate"} <= set(services)
    assert "-js" in services["nats"]["command"]
    assert services["kong"]["environment"]["KONG_DATABASE"] == "off"
    assert f"{SETTINGS.gateway_port}:{SETTINGS.gateway_port}" in services["envoy"]["ports"]
    app_images = {services[name]["image"] for name in [*MESH, "migrate"]}
    assert len(app_images) == 1
    # No password in git: compose interpolates it from the environment (or .env).
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")


def test_every_ledger_replica_gets_the_page_token_key_from_outside_git(compose: dict[str, Any]) -> None:
    """Compose interpolates it (environment or .env); k8s reads it from a Secret."""
    assert compose["services"]["ledger"]["environment"]["EM_PAGE_TOKEN_KEY"].startswith(
        "${EM_PAGE_TOKEN_KEY:?"
    )
    assert not {"EM_PAGE_TOKEN_KEY"} & set(compose["services"]["auth"]["environment"])
    (container,) = _find("Deployment", "ledger")["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item for item in container["env"]}
    assert env["EM_PAGE_TOKEN_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "expense-mesh-page-token", "key": "key"}
    }


def test_each_service_has_its_own_nats_user_with_the_password_from_outside_git(
    compose: dict[str, Any],
) -> None:
    """The NATS server reads every password from its environment (nats/nats.conf names the
    variables), each service only its own: compose interpolates them, k8s takes a Secret each."""
    nats = compose["services"]["nats"]
    assert nats["command"][:3] == ["nats-server", "-c", "/etc/nats/nats.conf"]
    assert f"./{NATS_CONFIG}:/etc/nats/nats.conf:ro" in nats["volumes"]
    users = nats_users(MESH)
    assert set(nats["environment"]) == {password_variable(user) for user in users}
    for name in MESH:
        environment = compose["services"][name]["environment"]
        mine = password_variable(name)
        assert {key for key in environment if key.startswith("EM_NATS_PASSWORDS__")} == {mine}
        assert environment[mine].startswith(f"${{{mine}:?")
        (container,) = _find("Deployment", name)["spec"]["template"]["spec"]["containers"]
        env = {item["name"]: item for item in container["env"]}
        secret = {"secretKeyRef": {"name": f"expense-mesh-nats-{name}", "key": "password"}}
        assert env[mine]["valueFrom"] == secret
    authorization = _find("ConfigMap", "expense-mesh-nats-authorization")["data"]["authorization.conf"]
    assert authorization in (REPO_ROOT / NATS_CONFIG).read_text()
    assert "password" not in _find("ConfigMap", "mesh-config")["data"]


def test_the_committed_nats_config_starts_a_nats_server(tmp_path: Path) -> None:
    passwords = {password_variable(user): "k" + "0" * 40 for user in nats_users(MESH)}
    result = subprocess.run(
        [str(NATS_SERVER), "-c", str(REPO_ROOT / NATS_CONFIG), "-t"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", **passwords},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_service_gets_only_its_own_credential_and_auth_gets_them_all(compose: dict[str, Any]) -> None:
    """From outside git: compose interpolates them (environment or .env); k8s reads a Secret
    per service. A service sees its own credential only; auth checks every one."""
    callers = [name for name in MESH if name != "auth"]
    for name in callers:
        variable = f"{name.upper()}_SERVICE_CREDENTIAL"
        environment = compose["services"][name]["environment"]
        assert environment["EM_SERVICE_CREDENTIAL"].startswith(f"${{{variable}:?")
        assert not [key for key in environment if key.startswith("EM_SERVICE_CREDENTIALS__")]
        (container,) = _find("Deployment", name)["spec"]["template"]["spec"]["containers"]
        secrets = {
            item["name"]: item["valueFrom"]["secretKeyRef"]
            for item in container["env"]
            if "valueFrom" in item
        }
        assert secrets["EM_SERVICE_CREDENTIAL"] == {
            "name": f"expense-mesh-service-{name}",
            "key": "credential",
        }
        assert [s for s in secrets.values() if s["name"].startswith("expense-mesh-service-")] == [
            secrets["EM_SERVICE_CREDENTIAL"]
        ]
    auth = compose["services"]["auth"]["environment"]
    assert "EM_SERVICE_CREDENTIAL" not in auth
    for name in callers:
        assert auth[f"EM_SERVICE_CREDENTIALS__{name.upper()}"].startswith(
            f"${{{name.upper()}_SERVICE_CREDENTIAL:?"
        )
    (container,) = _find("Deployment", "auth")["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item.get("valueFrom") for item in container["env"]}
    for name in callers:
        assert env[f"EM_SERVICE_CREDENTIALS__{name.upper()}"] == {
            "secretKeyRef": {"name": f"expense-mesh-service-{name}", "key": "credential"}
        }


def test_compose_bind_mounts_exist(compose: dict[str, Any]) -> None:
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO_ROOT / source).exists(), source


def test_dockerfile_builds_a_non_root_service_image_and_the_gateway_image() -> None:
    text = (REPO_ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim AS service" in text
    assert "AS gateway" in text
    assert "pip install" in text
    assert "\nUSER 10001" in text


@pytest.mark.parametrize(("file", "manifest"), MANIFESTS, ids=lambda value: str(value)[:40])
def test_k8s_manifest_is_valid(file: str, manifest: dict[str, Any]) -> None:
    version = kubernetes_validate.utils.latest_version()
    kubernetes_validate.validate(manifest, version, strict=True)


def test_kustomization_lists_every_manifest_file() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


@pytest.mark.parametrize("name", MESH)
def test_k8s_runs_each_mesh_service_on_the_launcher_port(name: str) -> None:
    port = SETTINGS.service_port(name)
    deployment = _find("Deployment", name)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", f"services.{name}", "serve"]
    metrics = {"name": "metrics", "containerPort": SETTINGS.metrics_port(name)}
    assert container["ports"] == [{"name": "grpc", "containerPort": port}, metrics]
    # Readiness asks "" (NOT_SERVING while a dependency is down); startup and liveness ask
    # `liveness`, SERVING while the process answers: a dependency outage restarts nothing.
    assert container["readinessProbe"]["grpc"] == {"port": port}
    assert container["livenessProbe"]["grpc"] == {"port": port, "service": LIVENESS}
    assert container["startupProbe"]["grpc"] == {"port": port, "service": LIVENESS}
    assert set(container["resources"]) == {"requests", "limits"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    service = _find("Service", name)
    assert service["spec"]["ports"][0]["port"] == port
    assert _find("PodDisruptionBudget", name)["spec"]["selector"] == deployment["spec"]["selector"]


@pytest.mark.parametrize("name", MESH)
def test_k8s_pods_are_scraped_on_their_metrics_port_by_prometheus_only(name: str) -> None:
    port = SETTINGS.metrics_port(name)
    annotations = _find("Deployment", name)["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": "/metrics",
    }
    policy = _find("NetworkPolicy", "mesh-metrics")["spec"]
    (rule,) = policy["ingress"]
    assert {"protocol": "TCP", "port": port} in rule["ports"]
    assert rule["from"] == [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
    ]
    mesh_policy = _find("NetworkPolicy", "mesh-services")["spec"]["ingress"][0]["ports"]
    assert {"protocol": "TCP", "port": port} not in mesh_policy


def test_k8s_uses_the_existing_engines() -> None:
    kinds = {doc["kind"] for _, doc in MANIFESTS}
    assert "StatefulSet" not in kinds
    for engine in ("postgres", "redis", "nats"):
        assert _find("Service", engine)["spec"]["type"] == "ExternalName"
    config = _find("ConfigMap", "mesh-config")["data"]
    assert config["NATS_URL"] == "nats://nats:4222"
    assert config["REDIS_URL"].startswith("redis://redis:")


def test_k8s_gateway_serves_on_the_gateway_port() -> None:
    (container,) = _find("Deployment", "gateway")["spec"]["template"]["spec"]["containers"]
    metrics = {"name": "metrics", "containerPort": SETTINGS.metrics.gateway_port}
    assert container["ports"] == [{"name": "http", "containerPort": SETTINGS.gateway_port}, metrics]
    annotations = _find("Deployment", "gateway")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/stats/prometheus"
    assert annotations["prometheus.io/port"] == str(SETTINGS.metrics.gateway_port)
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    # As many Envoy workers as the pod has CPUs, not one per core of the node.
    command = container["command"]
    workers = command[command.index("--concurrency") + 1]
    assert float(workers) == float(container["resources"]["limits"]["cpu"])


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_builds_a_valid_base() -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    version = kubernetes_validate.utils.latest_version()
    for manifest in yaml.safe_load_all(result.stdout):
        kubernetes_validate.validate(manifest, version, strict=True)
