"""Which credential each RPC needs, from config/mesh.toml's [mesh] section:
public methods none, mesh-internal methods a service (or operator) token, every
other method a user's access token. Internal is derived from the proto service
names (`…InternalService`) plus [mesh] internal_services, not listed per method."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from services.kit.config.settings import MeshLayout
from services.kit.identity.service_tokens import Caller

INTERNAL_SERVICE_SUFFIX = "InternalService"


class Access(Enum):
    PUBLIC = "public"
    USER = "user"
    INTERNAL = "internal"


@dataclass(frozen=True)
class MethodAccess:
    public_methods: frozenset[str] = frozenset()
    internal_services: frozenset[str] = frozenset()
    # "pkg.Service" or "pkg.Service/Method" -> mesh services allowed to call it.
    internal_callers: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_layout(cls, layout: MeshLayout) -> MethodAccess:
        return cls(
            frozenset(layout.public_methods),
            frozenset(layout.internal_services),
            {name: frozenset(callers) for name, callers in layout.internal_callers.items()},
        )

    def of(self, method: str) -> Access:
        """method: a full gRPC method path, "/pkg.Service/Method"."""
        if method in self.public_methods:
            return Access.PUBLIC
        service = method.lstrip("/").partition("/")[0]
        if service.endswith(INTERNAL_SERVICE_SUFFIX) or service in self.internal_services:
            return Access.INTERNAL
        return Access.USER

    def allows(self, method: str, caller: Caller) -> bool:
        """Whether a verified caller may call an internal method: operators always,
        a service when the method (or its service) does not name others only."""
        if caller.kind == "operator":
            return True
        name = method.lstrip("/")
        allowed = self.internal_callers.get(name, self.internal_callers.get(name.partition("/")[0]))
        return allowed is None or caller.name in allowed
