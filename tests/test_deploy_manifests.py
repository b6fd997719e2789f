"""What docker-compose.yml, the Dockerfile and k8s/ (base and overlays) must hold for the
mesh to run, which no schema says: ports and commands of the launcher, probes, hardening,
secrets from outside git, who may call whom, replicas, the engines of each overlay.
Whether the files are valid at all is test_deploy_validators.py's (compose spec,
kubernetes-validate --strict, decK, Kong plugin schemas), not repeated here."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.kit.config.settings import REPO_ROOT
from services.kit.grpc.server import LIVENESS
from services.launcher import generated, k8s
from services.launcher.callers import GATEWAYS, callers
from services.launcher.compose import LIMITS, NATS_CONFIG, credential_variable
from services.launcher.nats import nats_users, password_variable
from services.launcher.routes import rest_surface
from tests.infra import NATS_SERVER

SETTINGS = generated.committed_settings()
MESH = SETTINGS.mesh.services
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
K8S = REPO_ROOT / "k8s"
BASE = K8S / "base"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    return [
        (name, doc)
        for name in kustomization["resources"]
        for doc in yaml.safe_load_all((BASE / name).read_text())
    ]


MANIFESTS = _manifests()


def _find(kind: str, name: str) -> dict[str, Any]:
    (found,) = [doc for _, doc in MANIFESTS if doc["kind"] == kind and doc["metadata"]["name"] == name]
    return found


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


def test_every_notification_replica_gets_the_webhook_secrets_key_from_outside_git(
    compose: dict[str, Any],
) -> None:
    environment = compose["services"]["notification"]["environment"]
    assert environment["EM_NOTIFICATION_SECRETS_KEY"].startswith("${EM_NOTIFICATION_SECRETS_KEY:?")
    assert not {"EM_NOTIFICATION_SECRETS_KEY"} & set(compose["services"]["ledger"]["environment"])
    (container,) = _find("Deployment", "notification")["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item for item in container["env"]}
    assert env["EM_NOTIFICATION_SECRETS_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "expense-mesh-notification-secrets", "key": "key"}
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


def test_dockerfile_builds_from_the_lock_in_stages_and_runs_as_non_root() -> None:
    text = (REPO_ROOT / "Dockerfile").read_text()
    stages = [line.split()[1:] for line in text.splitlines() if line.startswith("FROM ")]
    assert [stage[-1] for stage in stages] == ["gateway", "kong", "build", "service"]
    # Every base pinned to a release: no `latest`, no bare major version.
    assert all(re.search(r":v?\d+\.\d+\.\d+", image) for image, *_ in stages), stages
    assert "pip install --require-hashes -r /tmp/requirements.lock" in text
    assert "pip install --no-deps ." in text
    assert "COPY --from=build /venv /venv" in text
    final = text[text.index("AS service") :]
    assert "\nUSER 10001:10001" in final and "pip install" not in final


def test_the_lock_pins_every_runtime_dependency_with_a_hash() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    wanted = {
        re.split(r"[\[<>=~!; ]", spec, maxsplit=1)[0].lower() for spec in pyproject["project"]["dependencies"]
    }
    lock = (REPO_ROOT / "requirements.lock").read_text()
    pinned = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+) \\\n    --hash=sha256:[0-9a-f]{64}$", lock, re.M))
    normalised = {name.lower().replace("_", "-") for name in pinned}
    assert {name.replace("_", "-") for name in wanted} <= normalised


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_build_context() -> None:
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".expense-mesh", ".git"} <= set(ignored)


def test_the_base_kustomization_lists_every_manifest_file() -> None:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    files = {path.name for path in BASE.glob("*.yaml")} - {"kustomization.yaml"}
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
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    service = _find("Service", name)
    assert service["spec"]["ports"][0]["port"] == port
    assert _find("PodDisruptionBudget", name)["spec"]["selector"] == deployment["spec"]["selector"]
    # The autoscaler owns the replicas; they spread over nodes and zones.
    assert "replicas" not in deployment["spec"]
    autoscaler = _find("HorizontalPodAutoscaler", name)["spec"]
    assert autoscaler["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    assert autoscaler["minReplicas"] >= 2 and autoscaler["maxReplicas"] > autoscaler["minReplicas"]
    (cpu,) = autoscaler["metrics"]
    assert cpu["resource"]["name"] == "cpu"
    spread = {item["topologyKey"] for item in pod["topologySpreadConstraints"]}
    assert spread == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}


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
    for rule in _find("NetworkPolicy", f"{name}-callers")["spec"]["ingress"]:
        assert {"protocol": "TCP", "port": port} not in rule["ports"]


def test_the_base_brings_no_engine_and_points_at_the_overlays_ones() -> None:
    kinds = {doc["kind"] for _, doc in MANIFESTS}
    assert "StatefulSet" not in kinds
    names = {doc["metadata"]["name"] for _, doc in MANIFESTS if doc["kind"] == "Service"}
    assert not {"postgres", "redis", "nats"} & names
    config = _find("ConfigMap", "mesh-config")["data"]
    assert config["NATS_URL"] == "nats://nats:4222"
    assert config["REDIS_URL"].startswith("redis://redis:")
    assert "DATABASE_URL" not in config


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


def _admitted(name: str) -> set[str]:
    """The pods (app.kubernetes.io/name) a service's NetworkPolicy admits on its gRPC port."""
    policy = _find("NetworkPolicy", f"{name}-callers")["spec"]
    assert policy["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": name}}
    admitted: set[str] = set()
    for rule in policy["ingress"]:
        assert rule["ports"] == [{"protocol": "TCP", "port": SETTINGS.service_port(name)}]
        for source in rule["from"]:
            (expression,) = source["podSelector"]["matchExpressions"]
            assert expression["key"] == "app.kubernetes.io/name" and expression["operator"] == "In"
            admitted.update(expression["values"])
    return admitted


def test_every_pod_is_denied_ingress_unless_a_policy_admits_it() -> None:
    deny = _find("NetworkPolicy", "default-deny-ingress")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": []}


def test_each_service_admits_its_real_callers_only() -> None:
    """auth: every service; a service with REST routes: the gateways; ledger's internal
    service: the callers [mesh.internal_callers] names, not the others."""
    surface = rest_surface(SETTINGS)
    for name in MESH:
        assert _admitted(name) == set(callers(SETTINGS, surface)[name])
    assert _admitted("auth") >= set(MESH) - {"auth"}
    # The user service reads the caller's data for GET /v1/users/me:export ([mesh.peers] user).
    assert _admitted("ledger") == {"reporting", "billing", "ds", "user", *GATEWAYS}
    assert all("user" in _admitted(name) for name in ("billing", "notification", "ds", "reporting"))
    assert "ledger" not in _admitted("reporting") and "billing" not in _admitted("reporting")
    assert "gateway" not in _admitted("templating")  # internal only: no route


# A service's calls to another: a client of its gRPC services in its own code.
PEER_CLIENT = re.compile(r'service_address\("(\w+)"\)|(PreferencesClient)\(')


def _calls_in_code(name: str) -> set[str]:
    """The peers services/<name>/ dials (its clients' addresses), itself excepted."""
    called: set[str] = set()
    for source in (REPO_ROOT / "services" / name).rglob("*.py"):
        for address, _preferences in PEER_CLIENT.findall(source.read_text()):
            called.add(address or "user")  # PreferencesClient calls the user service
    return called - {name}


def test_the_code_scan_finds_the_calls_we_know_of() -> None:
    assert {"user"} <= _calls_in_code("ledger")
    assert {"user", "ledger"} <= _calls_in_code("reporting")
    assert {"ledger"} <= _calls_in_code("billing")


@pytest.mark.parametrize("name", MESH)
def test_the_policies_admit_every_call_the_code_makes(name: str) -> None:
    """A call the NetworkPolicies did not admit would time out in k8s only: a new one needs
    its [mesh.peers] entry or an internal caller's. (Every service's kit calls auth.)"""
    for peer in _calls_in_code(name) | ({"auth"} - {name}):
        assert name in _admitted(peer), f"{name} calls {peer}, whose NetworkPolicy does not admit it"


def test_compose_limits_every_container_and_env_example_names_every_required_variable(
    compose: dict[str, Any],
) -> None:
    for name, service in compose["services"].items():
        limits = service["deploy"]["resources"]["limits"]
        assert (limits["cpus"], limits["memory"]) == LIMITS.get(name, LIMITS["service"]), name
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE_FILE.read_text()))
    example = (REPO_ROOT / ".env.example").read_text()
    assignments = dict(
        line.split("=", 1) for line in example.splitlines() if line and not line.startswith("#")
    )
    assert required <= set(assignments)
    assert all(value == "" for value in assignments.values()), "no value (let alone a secret) in git"
    assert {credential_variable(name) for name in MESH if name != "auth"} <= set(assignments)


def _overlay(name: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (kustomize) is not installed")
    built = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / name)], check=True, capture_output=True, text=True
    )
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


def _of(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [doc for doc in documents if doc["kind"] == kind and doc["metadata"]["name"] == name]
    return found


def _pods(documents: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    kinds = ("Deployment", "StatefulSet", "Job")
    return [
        (doc["metadata"]["name"], doc["spec"]["template"]["spec"])
        for doc in documents
        if doc["kind"] in kinds
    ]


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_every_pod_of_an_overlay_is_hardened(overlay: str) -> None:
    for name, pod in _pods(_overlay(overlay)):
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in [*pod["containers"], *pod.get("initContainers", [])]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            assert set(container["resources"]) == {"requests", "limits"}, name


def test_dev_runs_one_of_everything_with_its_engines_in_the_namespace() -> None:
    documents = _overlay("dev")
    for name in MESH:
        assert _of(documents, "HorizontalPodAutoscaler", name)["spec"]["minReplicas"] == 1
        assert _of(documents, "PodDisruptionBudget", name)["spec"]["minAvailable"] == 0
    for name in ("gateway", "kong"):
        assert _of(documents, "Deployment", name)["spec"]["replicas"] == 1
    assert _of(documents, "StatefulSet", "postgres")["spec"]["replicas"] == 1
    assert _of(documents, "StatefulSet", "nats")["spec"]["replicas"] == 1
    assert _of(documents, "Deployment", "redis")["spec"]["replicas"] == 1
    nats_conf = _of(documents, "ConfigMap", "nats-server")["data"]["nats.conf"]
    assert "jetstream" in nats_conf and "cluster" not in nats_conf
    assert "EM_EVENT_STREAM_REPLICAS" not in _of(documents, "ConfigMap", "mesh-config")["data"]


def test_prod_runs_a_postgres_operator_cluster_and_a_replicated_nats() -> None:
    documents = _overlay("prod")
    cluster = _of(documents, "Cluster", k8s.PG_CLUSTER)
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1" and cluster["spec"]["instances"] == 3
    assert not [doc for doc in documents if doc["metadata"]["name"] == "postgres"]
    for name, pod in _pods(documents):
        for container in pod["containers"]:
            env = {item["name"]: item.get("valueFrom") for item in container.get("env", [])}
            if "DATABASE_URL" in env:
                assert env["DATABASE_URL"] == {"secretKeyRef": {"name": k8s.PG_APP_SECRET, "key": "uri"}}, (
                    name
                )
    assert k8s.DB_SECRET not in yaml.safe_dump_all(documents)
    nats = _of(documents, "StatefulSet", "nats")["spec"]
    assert nats["replicas"] == 3 and nats["volumeClaimTemplates"]
    nats_conf = _of(documents, "ConfigMap", "nats-server")["data"]["nats.conf"]
    assert all(f"nats-{index}.nats-cluster:6222" in nats_conf for index in range(3))
    assert _of(documents, "PodDisruptionBudget", "nats")["spec"]["minAvailable"] == 2
    # The events stream keeps 3 copies (services read it from mesh-config: EventBus).
    assert _of(documents, "ConfigMap", "mesh-config")["data"]["EM_EVENT_STREAM_REPLICAS"] == "3"
    assert _of(documents, "Service", "kong")["spec"]["type"] == "LoadBalancer"
    monitored = {doc["metadata"]["name"] for doc in documents if doc["kind"] == "PodMonitor"}
    assert monitored == {"mesh-services", "gateway", "kong"}
