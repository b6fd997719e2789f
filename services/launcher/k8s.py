"""k8s/ kustomize base: per mesh service a Deployment (gRPC probes, hardened),
a Service and a PodDisruptionBudget; the Envoy gateway; a migration Job; one
ConfigMap of settings; PostgreSQL, Redis and NATS as ExternalName Services in
front of the engines the cluster already runs (k8s/README.md says what the
operator provides: the database Secret, the signing keys, the ledger's page-token
key, a service-credential Secret per service, the JWKS ConfigMap)."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from services.kit.config.settings import MeshSettings
from services.kit.grpc.server import LIVENESS
from services.launcher.compose import app_environment
from services.launcher.nats import authorization_config, password_variable

IMAGE = "expense-mesh"
GATEWAY_IMAGE = "expense-mesh-gateway"
PART_OF = {"app.kubernetes.io/part-of": "expense-mesh"}
CONFIG_MAP = "mesh-config"
DB_SECRET = "expense-mesh-db"
SIGNING_KEYS_SECRET = "expense-mesh-signing-keys"
PAGE_TOKEN_SECRET = "expense-mesh-page-token"
# NATS: a Secret per user (`password`); the authorization the operator's NATS includes.
NATS_SECRET = "expense-mesh-nats-{user}"
NATS_AUTHORIZATION = "expense-mesh-nats-authorization"
# One Secret per mesh service but auth (key `credential`): its service credential.
SERVICE_CREDENTIAL_SECRET = "expense-mesh-service-{name}"
JWKS_CONFIG_MAP = "expense-mesh-jwks"
# The label (app.kubernetes.io/name) of the Prometheus pods the metrics ports admit.
PROMETHEUS_NAME = "prometheus"
APP_UID = 10001
ENVOY_UID = 101
# CPUs of a gateway pod: its limit and its Envoy worker threads.
GATEWAY_CPU_LIMIT = 1
# Placeholders for the engines' real DNS names; an overlay patches them.
EXTERNAL_ENGINES = {
    "postgres": ("postgres.example.internal", 5432),
    "redis": ("redis.example.internal", 6379),
    "nats": ("nats.example.internal", 4222),
}


def _labels(name: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": component, **PART_OF}


def _meta(name: str, component: str) -> dict[str, Any]:
    return {"name": name, "labels": _labels(name, component)}


def _selector(name: str) -> dict[str, Any]:
    return {"matchLabels": {"app.kubernetes.io/name": name}}


def kustomization(settings: MeshSettings) -> dict[str, Any]:
    tag = version("expense-mesh")
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [f"{name}.yaml" for name in resource_files(settings)],
        "images": [{"name": IMAGE, "newTag": tag}, {"name": GATEWAY_IMAGE, "newTag": tag}],
    }


def resource_files(settings: MeshSettings) -> dict[str, list[dict[str, Any]]]:
    """File stem -> the manifests in it."""
    return {
        "mesh-config": [_config_map(settings)],
        "engines": [_external_engine(name, *target) for name, target in EXTERNAL_ENGINES.items()],
        "network-policy": [_network_policy(settings), *_metrics_policy(settings)],
        "nats-authorization": [_nats_authorization(settings)],
        "migrate": [_migrate_job()],
        **{name: _mesh_service(settings, name) for name in settings.mesh.services},
        **({"web": _web(settings)} if settings.web.enabled else {}),
        "gateway": _gateway(settings),
    }


def _config_map(settings: MeshSettings) -> dict[str, Any]:
    data = {key: value for key, value in app_environment(settings).items() if key != "DATABASE_URL"}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(CONFIG_MAP, "config"), "data": data}


def _nats_authorization(settings: MeshSettings) -> dict[str, Any]:
    """For the cluster's NATS (k8s/README.md): a user per service, its own subjects only;
    the passwords are variables of the NATS server's environment, from the same Secrets."""
    text = authorization_config(settings.event_prefix, settings.mesh.services)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(NATS_AUTHORIZATION, "config"),
        "data": {"authorization.conf": text},
    }


def _external_engine(name: str, host: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, "engine"),
        "spec": {"type": "ExternalName", "externalName": host, "ports": [{"name": name, "port": port}]},
    }


def _network_policy(settings: MeshSettings) -> dict[str, Any]:
    # The service ports are for the mesh only: pods of expense-mesh, the gateway among them,
    # may call them (defence in depth: mesh-internal RPCs also need a service token).
    ports = [{"protocol": "TCP", "port": settings.service_port(name)} for name in settings.mesh.services]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta("mesh-services", "policy"),
        "spec": {
            "podSelector": {"matchLabels": {"app.kubernetes.io/component": "service", **PART_OF}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": PART_OF}}], "ports": ports}],
        },
    }


def _pod_security(uid: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _resources(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> dict[str, Any]:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu_limit, "memory": memory_limit}}


def _app_container(name: str, command: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "image": IMAGE,
        "command": command,
        "envFrom": [{"configMapRef": {"name": CONFIG_MAP}}],
        "env": [{"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": DB_SECRET, "key": "url"}}}],
        "resources": _resources("100m", "128Mi", "1", "256Mi"),
        "securityContext": _container_security(),
        "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "tmp", "mountPath": "/tmp"}],
    }


def _pod_spec(containers: list[dict[str, Any]], uid: int, volumes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "automountServiceAccountToken": False,
        # No FOO_SERVICE_HOST variables: settings come from mesh-config only.
        "enableServiceLinks": False,
        "securityContext": _pod_security(uid),
        "terminationGracePeriodSeconds": 15,
        "containers": containers,
        "volumes": volumes,
    }


def _scratch_volumes() -> list[dict[str, Any]]:
    return [{"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]


def _migrate_job() -> dict[str, Any]:
    container = _app_container("migrate", ["python", "-m", "services.launcher", "migrate"])
    pod = {**_pod_spec([container], APP_UID, _scratch_volumes()), "restartPolicy": "OnFailure"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta("migrate", "migration"),
        # Deleted after a while, so the next `kubectl apply -k` runs the migrations again
        # (a Job's pod template is immutable).
        "spec": {"backoffLimit": 6, "ttlSecondsAfterFinished": 600, "template": {"spec": pod}},
    }


def _grpc_probes(port: int) -> dict[str, Any]:
    # Readiness ("" = the server as a whole) follows the dependencies: a pod whose database
    # or NATS is down leaves the Service's endpoints and comes back by itself. Liveness asks
    # the `liveness` name, SERVING while the event loop answers: a restart cures a stuck
    # process, never a dependency that is down. The startup probe covers the first start.
    liveness = {"port": port, "service": LIVENESS}
    return {
        "startupProbe": {"grpc": liveness, "periodSeconds": 2, "failureThreshold": 30},
        "readinessProbe": {"grpc": {"port": port}, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"grpc": liveness, "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3},
    }


def _mesh_service(settings: MeshSettings, name: str) -> list[dict[str, Any]]:
    port = settings.service_port(name)
    container = {
        **_app_container(name, ["python", "-m", f"services.{name}", "serve"]),
        "ports": [{"name": "grpc", "containerPort": port}, *_metrics_container_port(settings, name)],
        **_grpc_probes(port),
    }
    # The service's own NATS user (what it may publish: services/kit/events/permissions.py).
    password = {"secretKeyRef": {"name": NATS_SECRET.format(user=name), "key": "password"}}
    container["env"] = [*container["env"], {"name": password_variable(name), "valueFrom": password}]
    if name == "ledger":
        # Every replica signs and checks page tokens with the same key.
        key = {"secretKeyRef": {"name": PAGE_TOKEN_SECRET, "key": "key"}}
        container["env"] = [*container["env"], {"name": "EM_PAGE_TOKEN_KEY", "valueFrom": key}]
    container["env"] = [*container["env"], *_service_identity_env(settings, name)]
    pod = _pod_spec([container], APP_UID, _scratch_volumes())
    if name == "auth":
        _add_signing_keys(pod)
    labels = _labels(name, "service")
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, "service"),
        "spec": {
            "replicas": 2,
            "selector": _selector(name),
            "template": {"metadata": {"labels": labels, **_scrape_annotations(settings, name)}, "spec": pod},
        },
    }
    service_port = {"name": "grpc", "port": port, "targetPort": "grpc", "appProtocol": "kubernetes.io/h2c"}
    return [deployment, _service(name, "service", service_port), _disruption_budget(name, "service")]


def _web(settings: MeshSettings) -> list[dict[str, Any]]:
    """The dashboard (services/web): static files and the session endpoint, behind the
    gateway. No data, no NATS user, no service credential: it calls auth's public RPCs."""
    port = settings.web.port
    probe = {"httpGet": {"path": "/healthz", "port": "http"}}
    container = {
        **_app_container("web", ["python", "-m", "services.web", "serve"]),
        "ports": [{"name": "http", "containerPort": port}],
        "readinessProbe": {**probe, "periodSeconds": 5},
        "livenessProbe": {**probe, "periodSeconds": 10, "timeoutSeconds": 2},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta("web", "web"),
        "spec": {
            "replicas": 2,
            "selector": _selector("web"),
            "template": {
                "metadata": {"labels": _labels("web", "web")},
                "spec": _pod_spec([container], APP_UID, _scratch_volumes()),
            },
        },
    }
    service_port = {"name": "http", "port": port, "targetPort": "http"}
    return [deployment, _service("web", "web", service_port), _disruption_budget("web", "web")]


def _metrics_container_port(settings: MeshSettings, name: str) -> list[dict[str, Any]]:
    if not settings.metrics.enabled:
        return []
    return [{"name": "metrics", "containerPort": settings.metrics_port(name)}]


def _scrape_annotations(settings: MeshSettings, name: str) -> dict[str, Any]:
    """Prometheus's conventional pod annotations: scrape GET /metrics on the metrics port."""
    if not settings.metrics.enabled:
        return {}
    port = str(settings.metrics_port(name))
    return {
        "annotations": {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": port,
            "prometheus.io/path": "/metrics",
        }
    }


def _metrics_policy(settings: MeshSettings) -> list[dict[str, Any]]:
    """The metrics ports admit Prometheus (pods named `prometheus`, in any namespace;
    k8s/README.md says how to match another scraper), nothing else from outside the mesh."""
    if not settings.metrics.enabled:
        return []
    ports = [{"protocol": "TCP", "port": settings.metrics_port(name)} for name in settings.mesh.services]
    scraper = {
        "namespaceSelector": {},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": PROMETHEUS_NAME}},
    }
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("mesh-metrics", "policy"),
            "spec": {
                "podSelector": {"matchLabels": {"app.kubernetes.io/component": "service", **PART_OF}},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [scraper], "ports": ports}],
            },
        }
    ]


def _gateway_metrics_port(settings: MeshSettings) -> list[dict[str, Any]]:
    if not settings.metrics.enabled:
        return []
    return [{"name": "metrics", "containerPort": settings.metrics.gateway_port}]


def _gateway_scrape_annotations(settings: MeshSettings) -> dict[str, Any]:
    """Envoy's stats listener (launcher/envoy.py) serves its admin API's /stats/prometheus."""
    if not settings.metrics.enabled:
        return {}
    port = str(settings.metrics.gateway_port)
    path = "/stats/prometheus"
    return {
        "annotations": {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": port,
            "prometheus.io/path": path,
        }
    }


def _service_identity_env(settings: MeshSettings, name: str) -> list[dict[str, Any]]:
    """A service reads its own credential's Secret only; auth reads every one, to check them."""

    def from_secret(variable: str, service: str) -> dict[str, Any]:
        secret = SERVICE_CREDENTIAL_SECRET.format(name=service)
        return {"name": variable, "valueFrom": {"secretKeyRef": {"name": secret, "key": "credential"}}}

    if name != "auth":
        return [from_secret("EM_SERVICE_CREDENTIAL", name)]
    callers = [service for service in settings.mesh.services if service != "auth"]
    return [from_secret(f"EM_SERVICE_CREDENTIALS__{service.upper()}", service) for service in callers]


def _add_signing_keys(pod: dict[str, Any]) -> None:
    """The auth service keeps its keys in <data_dir>/keys and writes jwks.json next to
    them, so the Secret is copied into the writable data volume before it starts."""
    copy = "mkdir -p /data/keys && cp /signing-keys/*.pem /data/keys/ && chmod 600 /data/keys/*.pem"
    init = {
        **_app_container("signing-keys", ["sh", "-c", copy]),
        "volumeMounts": [
            {"name": "data", "mountPath": "/data"},
            {"name": "signing-keys", "mountPath": "/signing-keys", "readOnly": True},
        ],
    }
    pod["initContainers"] = [init]
    pod["volumes"].append({"name": "signing-keys", "secret": {"secretName": SIGNING_KEYS_SECRET}})


def _service(name: str, component: str, port: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, component),
        "spec": {"selector": {"app.kubernetes.io/name": name}, "ports": [port]},
    }


def _disruption_budget(name: str, component: str) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(name, component),
        "spec": {"minAvailable": 1, "selector": _selector(name)},
    }


def _gateway(settings: MeshSettings) -> list[dict[str, Any]]:
    port = settings.gateway_port
    container = {
        "name": "envoy",
        # Dockerfile target `gateway`: envoy/envoy.yaml and the descriptor set baked in.
        "image": GATEWAY_IMAGE,
        # One worker per CPU of the limit: by default Envoy starts one per core of the
        # node, and a pod throttled to fewer cores than its workers gets latency spikes.
        "command": ["envoy", "-c", "/etc/envoy/envoy.yaml", "--concurrency", str(GATEWAY_CPU_LIMIT)],
        "ports": [{"name": "http", "containerPort": port}, *_gateway_metrics_port(settings)],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": port}, "initialDelaySeconds": 5, "periodSeconds": 10},
        "resources": _resources("100m", "64Mi", str(GATEWAY_CPU_LIMIT), "256Mi"),
        "securityContext": _container_security(),
        "volumeMounts": [{"name": "jwks", "mountPath": "/etc/envoy/published", "readOnly": True}],
    }
    volumes = [{"name": "jwks", "configMap": {"name": JWKS_CONFIG_MAP}}]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta("gateway", "gateway"),
        "spec": {
            "replicas": 2,
            "selector": _selector("gateway"),
            "template": {
                "metadata": {
                    "labels": _labels("gateway", "gateway"),
                    **_gateway_scrape_annotations(settings),
                },
                "spec": _pod_spec([container], ENVOY_UID, volumes),
            },
        },
    }
    service_port = {"name": "http", "port": 80, "targetPort": "http"}
    return [
        deployment,
        _service("gateway", "gateway", service_port),
        _disruption_budget("gateway", "gateway"),
    ]
