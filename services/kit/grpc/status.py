"""Domain errors -> gRPC statuses with google.rpc error details."""

from __future__ import annotations

import math
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.kit.domain.errors import DomainError, InvalidArgument, NotFound, ResourceExhausted


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


ERROR_DOMAIN = "expense-mesh"


def _details(error: DomainError) -> list[any_pb2.Any]:
    info = _pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN))
    return [*_specific_details(error), info]


def _specific_details(error: DomainError) -> list[any_pb2.Any]:
    if isinstance(error, InvalidArgument):
        violations = [
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in error.violations
        ]
        return [_pack(error_details_pb2.BadRequest(field_violations=violations))]
    if isinstance(error, NotFound):
        info = error_details_pb2.ResourceInfo(
            resource_type=error.resource_type, resource_name=error.resource_name, description="not found"
        )
        return [_pack(info)]
    if isinstance(error, ResourceExhausted) and error.retry_after_seconds > 0:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(error.retry_after_seconds * 1e9))
        return [_pack(error_details_pb2.RetryInfo(retry_delay=delay))]
    return []


def status_proto(error: DomainError) -> status_pb2.Status:
    """The google.rpc.Status of an error, e.g. one item's of a batch answer."""
    code = code_pb2.Code.Value(error.code_name)
    return status_pb2.Status(code=code, message=error.message, details=_details(error))


def to_grpc_status(error: DomainError) -> grpc.Status:
    converted = rpc_status.to_status(status_proto(error))
    if isinstance(error, ResourceExhausted) and error.retry_after_seconds > 0:
        # The gateways pass this metadata on as the HTTP header of their 429 (RFC 9110
        # Retry-After, whole seconds); RetryInfo stays the exact delay for gRPC clients.
        retry_after = ("retry-after", str(math.ceil(error.retry_after_seconds)))
        return _Status(converted.code, converted.details, (*converted.trailing_metadata, retry_after))
    return converted


@dataclass(frozen=True)
class _Status(grpc.Status):
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


def field_violations(error: grpc.aio.AioRpcError | grpc.RpcError) -> dict[str, str]:
    """For clients and tests: the BadRequest field violations of a failed call."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    result: dict[str, str] = {}
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            result.update({v.field: v.description for v in bad_request.field_violations})
    return result
