"""k8s/: a kustomize base and two overlays, `dev` and `prod` (k8s/README.md).

Base: per mesh service a Deployment (gRPC startup/readiness/liveness probes, hardened,
spread over nodes and zones), a Service, a PodDisruptionBudget and a CPU
HorizontalPodAutoscaler; NetworkPolicies denying every ingress but the real callers
(services/launcher/callers.py), Prometheus and the gateways' clients; the Envoy gateway;
Kong as the ingress (DB-less, the same declarative config as compose); a migration Job;
one ConfigMap of settings. No engines: each overlay brings its own.
- dev: single pods of PostgreSQL, Redis and NATS (JetStream), one replica of everything.
- prod: a CloudNativePG `Cluster` (3 instances), a 3-node NATS JetStream cluster with the
  events stream replicated 3 times, Redis as an ExternalName to a managed one, PodMonitors
  for the Prometheus operator, Kong behind a LoadBalancer.

What the operator provides (Secrets, the JWKS and Kong ConfigMaps) is in k8s/README.md."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import yaml

from services.kit.config.settings import MeshSettings
from services.kit.grpc.server import LIVENESS
from services.launcher.callers import GATEWAYS, callers
from services.launcher.compose import NATS_IMAGE, POSTGRES_IMAGE, REDIS_IMAGE, app_environment
from services.launcher.kong import kong_edge_env
from services.launcher.nats import authorization_config, nats_users, password_variable
from services.launcher.routes import RestSurface, rest_surface

IMAGE = "expense-mesh"
GATEWAY_IMAGE = "expense-mesh-gateway"
PART_OF = {"app.kubernetes.io/part-of": "expense-mesh"}
CONFIG_MAP = "mesh-config"
DB_SECRET = "expense-mesh-db"
SIGNING_KEYS_SECRET = "expense-mesh-signing-keys"
PAGE_TOKEN_SECRET = "expense-mesh-page-token"
NOTIFICATION_SECRETS_SECRET = "expense-mesh-notification-secrets"
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
KONG_IMAGE = "expense-mesh-kong"
# Kong's config with the consumer's public keys, made by `prepare`/`rotate-keys` (never in git).
KONG_CONFIG_MAP = "expense-mesh-kong"
KONG_UID = 1000
KONG_PROXY_PORT = 8000
KONG_STATUS_PORT = 8100
POSTGRES_PORT = 5432
REDIS_PORT = 6379
NATS_CLIENT_PORT = 4222
NATS_CLUSTER_PORT = 6222
NATS_MONITOR_PORT = 8222
NATS_UID = 1000
POSTGRES_UID = 70  # the postgres user of the alpine image
REDIS_UID = 999
# Service pods: at least MIN_REPLICAS (one may go in a disruption), at most MAX_REPLICAS,
# scaled on CPU: the services are CPU-bound (docs/scaling.md).
MIN_REPLICAS = 2
MAX_REPLICAS = 10
CPU_TARGET_PERCENT = 70
# The events stream's copies on prod's NATS cluster.
PROD_NATS_NODES = 3
PROD_PG_INSTANCES = 3
PG_CLUSTER = "expense-mesh-pg"
# CloudNativePG's Secret of the application user: key `uri`, postgresql://... to the -rw Service.
PG_APP_SECRET = f"{PG_CLUSTER}-app"
MANAGED_REDIS = "redis.example.internal"


def _labels(name: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": component, **PART_OF}


def _meta(name: str, component: str) -> dict[str, Any]:
    return {"name": name, "labels": _labels(name, component)}


def _selector(name: str) -> dict[str, Any]:
    return {"matchLabels": {"app.kubernetes.io/name": name}}


def files(settings: MeshSettings) -> dict[str, list[dict[str, Any]]]:
    """Path under k8s/ -> the documents in it: base/, overlays/dev/, overlays/prod/."""
    surface = rest_surface(settings)
    base = base_resources(settings, surface)
    rendered = {f"base/{stem}.yaml": docs for stem, docs in base.items()}
    rendered["base/kustomization.yaml"] = [_kustomization(list(base), images=True)]
    for name, overlay in (("dev", dev_overlay(settings)), ("prod", prod_overlay(settings))):
        resources, patches = overlay
        rendered.update({f"overlays/{name}/{stem}.yaml": docs for stem, docs in resources.items()})
        kustomization = _kustomization(["../../base", *resources], images=False)
        kustomization["patches"] = patches
        rendered[f"overlays/{name}/kustomization.yaml"] = [kustomization]
    return rendered


def _kustomization(resources: list[str], images: bool) -> dict[str, Any]:
    tag = version("expense-mesh")
    kustomization: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [name if name.startswith("..") else f"{name}.yaml" for name in resources],
    }
    if images:
        kustomization["images"] = [
            {"name": image, "newTag": tag} for image in (IMAGE, GATEWAY_IMAGE, KONG_IMAGE)
        ]
    return kustomization


def base_resources(settings: MeshSettings, surface: RestSurface) -> dict[str, list[dict[str, Any]]]:
    """File stem -> the manifests in it."""
    return {
        "mesh-config": [_config_map(settings)],
        "network-policy": _network_policies(settings, surface),
        "nats-authorization": [_nats_authorization(settings)],
        "migrate": [_migrate_job()],
        **{name: _mesh_service(settings, name) for name in settings.mesh.services},
        **({"web": _web(settings)} if settings.web.enabled else {}),
        "gateway": _gateway(settings),
        "kong": _kong(settings),
    }


def _config_map(settings: MeshSettings) -> dict[str, Any]:
    # The database URL comes from a Secret; traces are off until an overlay names a collector.
    compose_only = ("DATABASE_URL", "EM_TRACING__OTLP_ENDPOINT")
    data = {key: value for key, value in app_environment(settings).items() if key not in compose_only}
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


def _policy(name: str, pods: dict[str, Any], ingress: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(name, "policy"),
        "spec": {"podSelector": pods, "policyTypes": ["Ingress"], "ingress": ingress},
    }


def _from_pods(names: list[str]) -> list[dict[str, Any]]:
    if not names:
        return []
    selector = {"key": "app.kubernetes.io/name", "operator": "In", "values": names}
    return [{"podSelector": {"matchExpressions": [selector]}}]


def _tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port} for port in ports]


def _network_policies(settings: MeshSettings, surface: RestSurface) -> list[dict[str, Any]]:
    """Default deny for every pod of the namespace; then each service's port admits its
    callers only (services/launcher/callers.py: mesh-internal RPCs also need a service
    token, defence in depth), the gateways admit anyone on their HTTP port, and the metrics
    ports admit Prometheus (_metrics_policy). A service nobody calls admits no one."""
    policies = [_policy("default-deny-ingress", {}, [])]
    for name, admitted in callers(settings, surface).items():
        port = settings.service_port(name)
        rules = [{"from": _from_pods(admitted), "ports": _tcp(port)}] if admitted else []
        policies.append(_policy(f"{name}-callers", _selector(name), rules))
    clients = [{"ports": _tcp(settings.gateway_port)}]
    policies.append(_policy("gateway-clients", _selector("gateway"), clients))
    policies.append(_policy("kong-clients", _selector("kong"), [{"ports": _tcp(KONG_PROXY_PORT)}]))
    policies.extend(_metrics_policy(settings))
    return policies


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
        "spec": {
            "backoffLimit": 6,
            "ttlSecondsAfterFinished": 600,
            "template": {"metadata": {"labels": _labels("migrate", "migration")}, "spec": pod},
        },
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
    if name == "notification":
        # Every replica opens the webhook secrets the others sealed.
        key = {"secretKeyRef": {"name": NOTIFICATION_SECRETS_SECRET, "key": "key"}}
        container["env"] = [*container["env"], {"name": "EM_NOTIFICATION_SECRETS_KEY", "valueFrom": key}]
    container["env"] = [*container["env"], *_service_identity_env(settings, name)]
    pod = {**_pod_spec([container], APP_UID, _scratch_volumes()), "topologySpreadConstraints": _spread(name)}
    if name == "auth":
        _add_signing_keys(pod)
    labels = _labels(name, "service")
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, "service"),
        # No replicas: the HorizontalPodAutoscaler owns them (an apply would reset its count).
        "spec": {
            "selector": _selector(name),
            "template": {"metadata": {"labels": labels, **_scrape_annotations(settings, name)}, "spec": pod},
        },
    }
    service_port = {"name": "grpc", "port": port, "targetPort": "grpc", "appProtocol": "kubernetes.io/h2c"}
    return [
        deployment,
        _service(name, "service", service_port),
        _disruption_budget(name, "service"),
        _autoscaler(name, "service"),
    ]


def _autoscaler(name: str, component: str) -> dict[str, Any]:
    """Replicas on CPU (of the requests): the services are CPU-bound on one event loop."""
    target = {"type": "Utilization", "averageUtilization": CPU_TARGET_PERCENT}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(name, component),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": MIN_REPLICAS,
            "maxReplicas": MAX_REPLICAS,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": target}}],
            # Down slowly: a burst's end is not the load's.
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }


def _spread(name: str) -> list[dict[str, Any]]:
    """Replicas over nodes, then zones: a node or a zone going takes some of them only.
    ScheduleAnyway: a one-node dev cluster still runs every replica."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": _selector(name),
        }
        for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")
    ]


def _web(settings: MeshSettings) -> list[dict[str, Any]]:
    """The dashboard (services/web): static files and the session endpoint, behind the
    gateways. No data, no NATS user, no service credential: it calls auth's public RPCs."""
    port = settings.web.port
    probe = {"httpGet": {"path": "/healthz", "port": "http"}}
    container = {
        **_app_container("web", ["python", "-m", "services.web", "serve"]),
        "env": [],  # no database: it keeps nothing
        "ports": [{"name": "http", "containerPort": port}],
        "startupProbe": {**probe, "periodSeconds": 2, "failureThreshold": 30},
        "readinessProbe": {**probe, "periodSeconds": 5},
        "livenessProbe": {**probe, "periodSeconds": 10, "timeoutSeconds": 2},
    }
    pod = {**_pod_spec([container], APP_UID, _scratch_volumes()), "topologySpreadConstraints": _spread("web")}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta("web", "web"),
        # No replicas: the HorizontalPodAutoscaler owns them.
        "spec": {
            "selector": _selector("web"),
            "template": {"metadata": {"labels": _labels("web", "web")}, "spec": pod},
        },
    }
    service_port = {"name": "http", "port": port, "targetPort": "http"}
    # Only the gateways reach it: browsers come through them, on the API's origin.
    admitted = _policy(
        "web-callers", _selector("web"), [{"from": _from_pods(list(GATEWAYS)), "ports": _tcp(port)}]
    )
    return [
        deployment,
        _service("web", "web", service_port),
        _disruption_budget("web", "web"),
        _autoscaler("web", "web"),
        admitted,
    ]


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
    # A copy needs no settings, nor the database Secret (which prod names differently).
    settings_free = {
        key: value
        for key, value in _app_container("signing-keys", []).items()
        if key not in ("env", "envFrom")
    }
    init = {
        **settings_free,
        "command": ["sh", "-c", copy],
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
                "spec": {
                    **_pod_spec([container], ENVOY_UID, volumes),
                    "topologySpreadConstraints": _spread("gateway"),
                },
            },
        },
    }
    service_port = {"name": "http", "port": 80, "targetPort": "http"}
    return [
        deployment,
        _service("gateway", "gateway", service_port),
        _disruption_budget("gateway", "gateway"),
    ]


def _kong(settings: MeshSettings) -> list[dict[str, Any]]:
    """Kong as the ingress: DB-less, reading the config `prepare` renders (kong/kong.yml with
    the consumer's public keys), from the ConfigMap the operator makes of it. Its image is
    kong plus the protos grpc-gateway reads (Dockerfile target `kong`)."""
    status = {"path": "/status/ready", "port": KONG_STATUS_PORT}
    container = {
        "name": "kong",
        "image": KONG_IMAGE,
        "env": [
            {"name": "KONG_DATABASE", "value": "off"},
            {"name": "KONG_DECLARATIVE_CONFIG", "value": "/etc/kong/declarative/kong.yml"},
            {"name": "KONG_PREFIX", "value": "/kong-prefix"},
            {"name": "KONG_PROXY_LISTEN", "value": f"0.0.0.0:{KONG_PROXY_PORT}"},
            {"name": "KONG_ADMIN_LISTEN", "value": "off"},
            {"name": "KONG_STATUS_LISTEN", "value": f"0.0.0.0:{KONG_STATUS_PORT}"},
            {"name": "KONG_PROXY_ACCESS_LOG", "value": "/dev/stdout"},
            {"name": "KONG_PROXY_ERROR_LOG", "value": "/dev/stderr"},
            *({"name": name, "value": value} for name, value in kong_edge_env(settings).items()),
        ],
        "ports": [
            {"name": "proxy", "containerPort": KONG_PROXY_PORT},
            {"name": "status", "containerPort": KONG_STATUS_PORT},
        ],
        "startupProbe": {"httpGet": {"path": "/status", "port": KONG_STATUS_PORT}, "failureThreshold": 30},
        "readinessProbe": {"httpGet": status, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/status", "port": KONG_STATUS_PORT}, "periodSeconds": 10},
        "resources": _resources("200m", "256Mi", "1", "512Mi"),
        "securityContext": _container_security(),
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/kong/declarative", "readOnly": True},
            {"name": "prefix", "mountPath": "/kong-prefix"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    volumes = [
        {"name": "config", "configMap": {"name": KONG_CONFIG_MAP}},
        {"name": "prefix", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
    ]
    annotations = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(KONG_STATUS_PORT),
        "prometheus.io/path": "/metrics",
    }
    pod = {**_pod_spec([container], KONG_UID, volumes), "topologySpreadConstraints": _spread("kong")}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta("kong", "gateway"),
        "spec": {
            "replicas": 2,
            "selector": _selector("kong"),
            "template": {
                "metadata": {"labels": _labels("kong", "gateway"), "annotations": annotations},
                "spec": pod,
            },
        },
    }
    service_port = {"name": "proxy", "port": 80, "targetPort": "proxy"}
    return [deployment, _service("kong", "gateway", service_port), _disruption_budget("kong", "gateway")]


# --- overlays ---------------------------------------------------------------------------

Patch = dict[str, Any]


def _json_patch(target: dict[str, Any], operations: list[dict[str, Any]]) -> Patch:
    return {"target": target, "patch": render_patch(operations)}


def render_patch(patch: list[dict[str, Any]] | dict[str, Any]) -> str:
    """A patch as the YAML string a kustomization's `patches` entry holds."""
    return yaml.safe_dump(patch, sort_keys=False)


def _engine_pod(
    name: str, uid: int, containers: list[dict[str, Any]], volumes: list[dict[str, Any]]
) -> dict[str, Any]:
    return {**_pod_spec(containers, uid, volumes), "topologySpreadConstraints": _spread(name)}


def _engine_container(name: str, image: str, uid: int, ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "ports": ports,
        "securityContext": {**_container_security(), "runAsUser": uid},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "tmp", "mountPath": "/tmp"}],
    }


def _mesh_pods() -> dict[str, Any]:
    """Every mesh service's pod and the migration Job's: the engines' clients."""
    return {"podSelector": {"matchLabels": {"app.kubernetes.io/component": "service", **PART_OF}}}


def _engine_policy(name: str, port: int, extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    migrate = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "migrate"}}}
    rules = [{"from": [_mesh_pods(), migrate], "ports": _tcp(port)}, *(extra or [])]
    return _policy(f"{name}-clients", _selector(name), rules)


def _nats_env(settings: MeshSettings) -> list[dict[str, Any]]:
    """Every NATS user's password, from its Secret: the authorization block names them."""
    return [
        {
            "name": password_variable(user),
            "valueFrom": {"secretKeyRef": {"name": NATS_SECRET.format(user=user), "key": "password"}},
        }
        for user in nats_users(settings.mesh.services)
    ]


def _nats_server(settings: MeshSettings, nodes: int) -> list[dict[str, Any]]:
    """NATS with JetStream on a PersistentVolume per node; `nodes` > 1: a cluster (routes
    between the StatefulSet's pods), where the events stream keeps event_stream_replicas copies."""
    lines = [
        f"port: {NATS_CLIENT_PORT}",
        f"http: {NATS_MONITOR_PORT}",
        "server_name: $POD_NAME",
        "jetstream { store_dir: /data }",
        "include ./authorization.conf",
    ]
    if nodes > 1:
        routes = ", ".join(f"nats://nats-{index}.nats-cluster:{NATS_CLUSTER_PORT}" for index in range(nodes))
        lines.append(f"cluster {{ name: expense-mesh, port: {NATS_CLUSTER_PORT}, routes: [{routes}] }}")
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta("nats-server", "config"),
        "data": {"nats.conf": "\n".join(lines) + "\n"},
    }
    ports = [
        {"name": "client", "containerPort": NATS_CLIENT_PORT},
        {"name": "cluster", "containerPort": NATS_CLUSTER_PORT},
        {"name": "monitor", "containerPort": NATS_MONITOR_PORT},
    ]
    container = {
        **_engine_container("nats", NATS_IMAGE, NATS_UID, ports),
        "command": ["nats-server", "-c", "/etc/nats/nats.conf"],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            *_nats_env(settings),
        ],
        "resources": _resources("250m", "256Mi", "1", "1Gi"),
        "startupProbe": {"httpGet": {"path": "/healthz", "port": NATS_MONITOR_PORT}, "failureThreshold": 30},
        "readinessProbe": {
            "httpGet": {"path": "/healthz?js-enabled-only=true", "port": NATS_MONITOR_PORT},
            "periodSeconds": 5,
        },
        "livenessProbe": {"httpGet": {"path": "/healthz?js-server-only=true", "port": NATS_MONITOR_PORT}},
    }
    container["volumeMounts"] = [
        {"name": "data", "mountPath": "/data"},
        {"name": "config", "mountPath": "/etc/nats", "readOnly": True},
    ]
    sources = [{"configMap": {"name": "nats-server"}}, {"configMap": {"name": NATS_AUTHORIZATION}}]
    pod = _engine_pod("nats", NATS_UID, [container], [{"name": "config", "projected": {"sources": sources}}])
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta("nats", "engine"),
        "spec": {
            "serviceName": "nats-cluster",
            "replicas": nodes,
            # All at once: a cluster's nodes find each other only when the others are up.
            "podManagementPolicy": "Parallel",
            "selector": _selector("nats"),
            "template": {"metadata": {"labels": _labels("nats", "engine")}, "spec": pod},
            "volumeClaimTemplates": [_claim("10Gi")],
        },
    }
    client = _service("nats", "engine", {"name": "client", "port": NATS_CLIENT_PORT})
    peers = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta("nats-cluster", "engine"),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {"app.kubernetes.io/name": "nats"},
            "ports": [{"name": "cluster", "port": NATS_CLUSTER_PORT}],
        },
    }
    routes = {"from": [{"podSelector": _selector("nats")}], "ports": _tcp(NATS_CLUSTER_PORT)}
    documents = [config, statefulset, client, peers, _engine_policy("nats", NATS_CLIENT_PORT, [routes])]
    if nodes > 1:  # a node may go; two keep the stream's quorum
        budget = _disruption_budget("nats", "engine")
        budget["spec"]["minAvailable"] = nodes // 2 + 1
        documents.append(budget)
    return documents


def _claim(size: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
    }


def _dev_postgres() -> list[dict[str, Any]]:
    """One PostgreSQL pod (dev only; prod runs CloudNativePG), its password from the same
    Secret as the services' DATABASE_URL (key `password`)."""
    container = {
        **_engine_container(
            "postgres", POSTGRES_IMAGE, POSTGRES_UID, [{"name": "postgres", "containerPort": POSTGRES_PORT}]
        ),
        "env": [
            {"name": "POSTGRES_USER", "value": "expense"},
            {"name": "POSTGRES_DB", "value": "expense"},
            {"name": "PGDATA", "value": "/data/pgdata"},
            {
                "name": "POSTGRES_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": DB_SECRET, "key": "password"}},
            },
        ],
        "resources": _resources("250m", "256Mi", "1", "1Gi"),
        "readinessProbe": {
            "exec": {"command": ["pg_isready", "-U", "expense", "-d", "expense"]},
            "periodSeconds": 5,
        },
        "livenessProbe": {"exec": {"command": ["pg_isready", "-U", "expense"]}, "periodSeconds": 10},
    }
    container["volumeMounts"] = [
        {"name": "data", "mountPath": "/data"},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "run", "mountPath": "/var/run/postgresql"},
    ]
    volumes = [{"name": "tmp", "emptyDir": {}}, {"name": "run", "emptyDir": {}}]
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta("postgres", "engine"),
        "spec": {
            "serviceName": "postgres",
            "replicas": 1,
            "selector": _selector("postgres"),
            "template": {
                "metadata": {"labels": _labels("postgres", "engine")},
                "spec": _engine_pod("postgres", POSTGRES_UID, [container], volumes),
            },
            "volumeClaimTemplates": [_claim("5Gi")],
        },
    }
    service = _service("postgres", "engine", {"name": "postgres", "port": POSTGRES_PORT})
    return [statefulset, service, _engine_policy("postgres", POSTGRES_PORT)]


def _dev_redis() -> list[dict[str, Any]]:
    ports = [{"name": "redis", "containerPort": REDIS_PORT}]
    container = {
        **_engine_container("redis", REDIS_IMAGE, REDIS_UID, ports),
        # A cache: nothing kept on disk.
        "command": ["redis-server", "--save", "", "--appendonly", "no", "--dir", "/data"],
        "resources": _resources("100m", "64Mi", "500m", "256Mi"),
        "readinessProbe": {"exec": {"command": ["redis-cli", "ping"]}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": REDIS_PORT}, "periodSeconds": 10},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta("redis", "engine"),
        "spec": {
            "replicas": 1,
            "selector": _selector("redis"),
            "template": {
                "metadata": {"labels": _labels("redis", "engine")},
                "spec": _engine_pod("redis", REDIS_UID, [container], _scratch_volumes()),
            },
        },
    }
    service = _service("redis", "engine", {"name": "redis", "port": REDIS_PORT})
    return [deployment, service, _engine_policy("redis", REDIS_PORT)]


def dev_overlay(settings: MeshSettings) -> tuple[dict[str, list[dict[str, Any]]], list[Patch]]:
    """One replica of everything, the engines as single pods in the namespace."""
    resources = {"postgres": _dev_postgres(), "redis": _dev_redis(), "nats": _nats_server(settings, 1)}
    patches = [
        _json_patch(
            {"kind": "HorizontalPodAutoscaler"},
            [
                {"op": "replace", "path": "/spec/minReplicas", "value": 1},
                {"op": "replace", "path": "/spec/maxReplicas", "value": 2},
            ],
        ),
        # One replica may go (a node drain), or nothing could ever be drained.
        _json_patch(
            {"kind": "PodDisruptionBudget"}, [{"op": "replace", "path": "/spec/minAvailable", "value": 0}]
        ),
        _json_patch(
            {"kind": "Deployment", "name": "^(gateway|kong)$"},
            [{"op": "replace", "path": "/spec/replicas", "value": 1}],
        ),
    ]
    return resources, patches


def _pg_cluster() -> list[dict[str, Any]]:
    """CloudNativePG: a primary and two replicas (synchronous commit to one of them), spread
    over nodes; the application user's Secret `<cluster>-app` holds the URI the services use."""
    cluster = {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": _meta(PG_CLUSTER, "engine"),
        "spec": {
            "instances": PROD_PG_INSTANCES,
            "primaryUpdateStrategy": "unsupervised",
            "minSyncReplicas": 1,
            "maxSyncReplicas": 1,
            "bootstrap": {"initdb": {"database": "expense", "owner": "expense"}},
            "postgresql": {"parameters": {"max_connections": "400", "shared_buffers": "1GB"}},
            "storage": {"size": "50Gi"},
            "resources": _resources("1", "2Gi", "2", "4Gi"),
            "affinity": {"enablePodAntiAffinity": True, "topologyKey": "kubernetes.io/hostname"},
            "monitoring": {"enablePodMonitor": True},
        },
    }
    instances = {"podSelector": {"matchLabels": {"cnpg.io/cluster": PG_CLUSTER}}}
    operator = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "cnpg-system"}}}
    migrate = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "migrate"}}}
    policy = _policy(
        f"{PG_CLUSTER}-clients",
        {"matchLabels": {"cnpg.io/cluster": PG_CLUSTER}},
        [
            {"from": [_mesh_pods(), migrate, instances], "ports": _tcp(POSTGRES_PORT)},
            # The operator's instance manager (status, backups) and Prometheus (metrics).
            {"from": [operator], "ports": _tcp(8000)},
            {"from": [_prometheus_pods()], "ports": _tcp(9187)},
        ],
    )
    return [cluster, policy]


def _prometheus_pods() -> dict[str, Any]:
    return {
        "namespaceSelector": {},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": PROMETHEUS_NAME}},
    }


def _pod_monitors(settings: MeshSettings) -> list[dict[str, Any]]:
    """For the Prometheus operator (the base's pods also carry prometheus.io annotations)."""

    def monitor(name: str, selector: dict[str, str], port: str, path: str) -> dict[str, Any]:
        return {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PodMonitor",
            "metadata": _meta(name, "monitoring"),
            "spec": {
                "selector": {"matchLabels": selector},
                "podMetricsEndpoints": [{"port": port, "path": path, "interval": "15s"}],
            },
        }

    return [
        monitor(
            "mesh-services", {"app.kubernetes.io/component": "service", **PART_OF}, "metrics", "/metrics"
        ),
        monitor("gateway", {"app.kubernetes.io/name": "gateway"}, "metrics", "/stats/prometheus"),
        monitor("kong", {"app.kubernetes.io/name": "kong"}, "status", "/metrics"),
    ]


def _managed_redis() -> list[dict[str, Any]]:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta("redis", "engine"),
        "spec": {
            "type": "ExternalName",
            "externalName": MANAGED_REDIS,
            "ports": [{"name": "redis", "port": REDIS_PORT}],
        },
    }
    return [service]


def _database_from_cnpg(name: str, kind: str) -> Patch:
    """DATABASE_URL from CloudNativePG's application Secret instead of expense-mesh-db."""
    url = {"secretKeyRef": {"name": PG_APP_SECRET, "key": "uri"}}
    patch = {
        "apiVersion": "batch/v1" if kind == "Job" else "apps/v1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {"containers": [{"name": name, "env": [{"name": "DATABASE_URL", "valueFrom": url}]}]}
            }
        },
    }
    return {"patch": render_patch(patch)}


def prod_overlay(settings: MeshSettings) -> tuple[dict[str, list[dict[str, Any]]], list[Patch]]:
    resources = {
        "postgres": _pg_cluster(),
        "nats": _nats_server(settings, PROD_NATS_NODES),
        "redis": _managed_redis(),
        "monitoring": _pod_monitors(settings),
    }
    config = {"op": "add", "path": "/data/EM_EVENT_STREAM_REPLICAS", "value": str(PROD_NATS_NODES)}
    patches = [
        _json_patch({"kind": "ConfigMap", "name": CONFIG_MAP}, [config]),
        _json_patch(
            {"kind": "Service", "name": "kong"},
            [{"op": "add", "path": "/spec/type", "value": "LoadBalancer"}],
        ),
        _database_from_cnpg("migrate", "Job"),
        *(_database_from_cnpg(name, "Deployment") for name in settings.mesh.services),
    ]
    return resources, patches
