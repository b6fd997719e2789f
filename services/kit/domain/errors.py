"""Domain errors: raised by plain Python code, turned into gRPC statuses (with
google.rpc details) by the kit's error interceptor. No gRPC imports here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class DomainError(Exception):
    """Base of every error a client may see; the message is shown to it. `reason` is
    the stable, machine-readable cause (google.rpc.ErrorInfo.reason, docs/errors.md):
    the class's default unless a raiser names a more precise one."""

    code_name = "UNKNOWN"
    default_reason = "UNKNOWN"

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason


class InvalidArgument(DomainError):
    code_name = "INVALID_ARGUMENT"
    default_reason = "INVALID_FIELD"

    def __init__(self, violations: list[FieldViolation] | FieldViolation, message: str = "") -> None:
        self.violations = [violations] if isinstance(violations, FieldViolation) else list(violations)
        fields = ", ".join(v.field for v in self.violations)
        super().__init__(message or f"invalid argument: {fields}")

    @classmethod
    def of(cls, field: str, description: str) -> InvalidArgument:
        return cls(FieldViolation(field, description))


class NotFound(DomainError):
    code_name = "NOT_FOUND"
    default_reason = "NOT_FOUND"

    def __init__(self, resource_type: str, resource_name: str = "") -> None:
        self.resource_type = resource_type
        self.resource_name = resource_name
        super().__init__(f"{resource_type} not found")


class AlreadyExists(DomainError):
    code_name = "ALREADY_EXISTS"
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    code_name = "FAILED_PRECONDITION"
    default_reason = "FAILED_PRECONDITION"


class Aborted(DomainError):
    code_name = "ABORTED"
    default_reason = "ABORTED"


class Unauthenticated(DomainError):
    code_name = "UNAUTHENTICATED"
    default_reason = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    code_name = "PERMISSION_DENIED"
    default_reason = "PERMISSION_DENIED"


class ResourceExhausted(DomainError):
    code_name = "RESOURCE_EXHAUSTED"
    default_reason = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, retry_after_seconds: float = 0, reason: str = "") -> None:
        super().__init__(message, reason)
        self.retry_after_seconds = retry_after_seconds


class Unavailable(DomainError):
    code_name = "UNAVAILABLE"
    default_reason = "UNAVAILABLE"


class DeadlineExceeded(DomainError):
    code_name = "DEADLINE_EXCEEDED"
    default_reason = "DEADLINE_EXCEEDED"


class Internal(DomainError):
    """Never raised by domain code: what the interceptor answers for an unexpected failure."""

    code_name = "INTERNAL"
    default_reason = "INTERNAL"
