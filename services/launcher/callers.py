"""Who calls each mesh service, from config/mesh.toml and the protos, for k8s's
NetworkPolicies (a service's port admits these pods only):

- auth: every other mesh service (token checks, service tokens, signing keys);
- an internal gRPC service's methods: the services `[mesh.internal_callers]` names for the
  method or its service, every other mesh service when it names none;
- `[mesh.peers]`: services calling another's user methods on a user's behalf;
- the gateways (Envoy `gateway`, `kong`): every service with a REST route.

A service added to `[mesh] services` joins by itself: it calls auth, and its own calls are
its `[mesh.peers]` entry or its internal callers' entries."""

from __future__ import annotations

from services.kit.config.settings import MeshSettings
from services.kit.identity.access import INTERNAL_SERVICE_SUFFIX
from services.launcher.routes import RestSurface, load_descriptor_set

GATEWAYS = ("gateway", "kong")
AUTH = "auth"


def internal_methods(settings: MeshSettings) -> dict[str, list[str]]:
    """Mesh service -> the full names ("pkg.Service/Method") of its internal methods."""
    packages = {f"expense.{service}.v1": service for service in settings.mesh.services}
    internal = set(settings.mesh.internal_services)
    methods: dict[str, list[str]] = {service: [] for service in settings.mesh.services}
    for file in load_descriptor_set().file:
        owner = packages.get(file.package)
        if owner is None:
            continue
        for service in file.service:
            full_name = f"{file.package}.{service.name}"
            if full_name.endswith(INTERNAL_SERVICE_SUFFIX) or full_name in internal:
                methods[owner].extend(f"{full_name}/{method.name}" for method in service.method)
    return methods


def callers(settings: MeshSettings, surface: RestSurface) -> dict[str, list[str]]:
    """Mesh service -> the pods (by app.kubernetes.io/name) that call it, sorted."""
    services = settings.mesh.services
    found: dict[str, set[str]] = {service: set() for service in services}
    if AUTH in found:
        found[AUTH].update(services)
    for caller, targets in settings.mesh.peers.items():
        for target in targets:
            if target in found and caller in found:
                found[target].add(caller)
    allowed = settings.mesh.internal_callers
    for owner, methods in internal_methods(settings).items():
        for method in methods:
            named = allowed.get(method, allowed.get(method.partition("/")[0]))
            found[owner].update(services if named is None else [name for name in named if name in found])
    for service in services:
        if surface.for_service(service):
            found[service].update(GATEWAYS)
        found[service].discard(service)
    return {service: sorted(names) for service, names in found.items()}
