"""The REST surface of the mesh, read from the descriptor set (`gen/expense_mesh.binpb`):
every `google.api.http` rule of the mesh services. Envoy, Kong and the tests all
derive their routes from this one list, so the gateways cannot drift from the protos."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

# Imported for its side effect too: registers the `google.api.http` extension so
# that parsing the descriptor set decodes it instead of keeping unknown bytes.
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

from services.kit.config.settings import REPO_ROOT, MeshSettings

DESCRIPTOR_SET = REPO_ROOT / "gen" / "expense_mesh.binpb"
HTTP_VERBS = ("get", "put", "post", "delete", "patch")
# {name} or {name=pattern}: group 1 is the pattern.
_VARIABLE = re.compile(r"\{[^}=]+(?:=([^}]*))?\}")


@dataclass(frozen=True)
class HttpRoute:
    """One HTTP binding of one RPC."""

    service: str  # mesh service, e.g. "auth"
    grpc_service: str  # e.g. "expense.auth.v1.AuthService"
    method: str  # e.g. "LogIn"
    verb: str  # e.g. "POST"
    template: str  # e.g. "/v1/auth/sessions/{session_id}"
    proto_file: str  # e.g. "expense/auth/v1/auth.proto"
    name: str  # unique in the mesh, e.g. "auth-log-in"
    response_type: str  # e.g. "expense.auth.v1.AuthTokens"
    response_streams: bool = False  # a server stream (an export's chunks)
    request_type: str = ""  # e.g. "expense.auth.v1.LogInRequest"
    body: str = ""  # the rule's body: "" (none: fields come from the query), "*" or a field
    # The body is a google.api.HttpBody: passed as it came, whatever its content type
    # (a provider's form-urlencoded callback), instead of JSON.
    raw_body: bool = False

    @property
    def path_fields(self) -> tuple[str, ...]:
        """The request fields bound by the path template, e.g. ("expense_id",)."""
        return tuple(re.findall(r"\{([^}=]+)", self.template))

    @property
    def full_method(self) -> str:
        return f"/{self.grpc_service}/{self.method}"

    @property
    def is_literal(self) -> bool:
        return "{" not in self.template

    @property
    def regex(self) -> str:
        """The path template as a regex (RE2 and PCRE compatible), not anchored:
        Envoy's safe_regex always matches the whole path, Kong anchors the start."""
        return template_regex(self.template)


@dataclass(frozen=True)
class RestSurface:
    routes: tuple[HttpRoute, ...]

    @cached_property
    def grpc_services(self) -> tuple[str, ...]:
        """gRPC services with at least one REST binding, in declaration order."""
        return tuple(dict.fromkeys(route.grpc_service for route in self.routes))

    def for_service(self, service: str) -> tuple[HttpRoute, ...]:
        return tuple(route for route in self.routes if route.service == service)

    def public(self, settings: MeshSettings) -> tuple[HttpRoute, ...]:
        methods = set(settings.mesh.public_methods)
        return tuple(route for route in self.routes if route.full_method in methods)


def template_regex(template: str) -> str:
    """`/v1/expenses/{expense_id}:import` -> `/v1/expenses/[^/]+:import` (AIP-127 templates)."""
    parts: list[str] = []
    position = 0
    for match in _VARIABLE.finditer(template):
        parts.append(re.escape(template[position : match.start()]))
        parts.append(_segments_regex(match.group(1) or "*"))
        position = match.end()
    parts.append(re.escape(template[position:]))
    return "".join(parts)


def _segments_regex(pattern: str) -> str:
    wildcard = {"*": "[^/]+", "**": ".+"}
    return "/".join(wildcard.get(segment, re.escape(segment)) for segment in pattern.split("/"))


def _kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def load_descriptor_set(path: Path = DESCRIPTOR_SET) -> descriptor_pb2.FileDescriptorSet:
    return descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())


def rest_surface(settings: MeshSettings, path: Path = DESCRIPTOR_SET) -> RestSurface:
    files = load_descriptor_set(path).file
    packages = {f"expense.{service}.v1": service for service in settings.mesh.services}
    routes = [route for file in files if file.package in packages for route in _file_routes(file, packages)]
    order = settings.mesh.services
    return RestSurface(tuple(sorted(routes, key=lambda route: order.index(route.service))))


def _file_routes(file: descriptor_pb2.FileDescriptorProto, packages: dict[str, str]) -> Iterator[HttpRoute]:
    messages = {f".{file.package}.{message.name}": message for message in file.message_type}
    for service in file.service:
        for method in service.method:
            if not method.options.HasExtension(annotations_pb2.http):
                continue
            bindings = _bindings(method.options.Extensions[annotations_pb2.http])
            for index, (verb, template, body) in enumerate(bindings):
                # additional_bindings share the method, so they get a numbered name.
                suffix = f"-{index + 1}" if index else ""
                yield HttpRoute(
                    service=packages[file.package],
                    grpc_service=f"{file.package}.{service.name}",
                    method=method.name,
                    verb=verb,
                    template=template,
                    proto_file=file.name,
                    name=f"{packages[file.package]}-{_kebab(method.name)}{suffix}",
                    response_type=method.output_type.removeprefix("."),
                    response_streams=method.server_streaming,
                    request_type=method.input_type.removeprefix("."),
                    body=body,
                    raw_body=_is_http_body(messages.get(method.input_type), body),
                )


def _is_http_body(message: descriptor_pb2.DescriptorProto | None, body: str) -> bool:
    """True when the binding's body field is a google.api.HttpBody."""
    if message is None or not body or body == "*":
        return False
    field = next((field for field in message.field if field.name == body), None)
    return field is not None and field.type_name == ".google.api.HttpBody"


def _bindings(rule: http_pb2.HttpRule) -> Iterator[tuple[str, str, str]]:
    """(verb, path template, body) of the rule and its additional bindings."""
    for binding in (rule, *rule.additional_bindings):
        kind = binding.WhichOneof("pattern")
        if kind == "custom":
            yield binding.custom.kind.upper(), binding.custom.path, binding.body
        elif kind in HTTP_VERBS:
            yield kind.upper(), getattr(binding, kind), binding.body
