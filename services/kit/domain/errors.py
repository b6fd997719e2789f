"""Domain errors: raised by plain Python code, turned into gRPC statuses (with
google.rpc details) by the kit's error interceptor. No gRPC imports here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class DomainError(Exception):
    """Base of every error a client may see; the message is shown to it."""

    code_name = "UNKNOWN"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    code_name = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation] | FieldViolation, message: str = "") -> None:
        self.violations = [violations] if isinstance(violations, FieldViolation) else list(violations)
        fields = ", ".join(v.field for v in self.violations)
        super().__init__(message or f"invalid argument: {fields}")

    @classmethod
    def of(cls, field: str, description: str) -> InvalidArgument:
        return cls(FieldViolation(field, description))


class NotFound(DomainError):
    code_name = "NOT_FOUND"

    def __init__(self, resource_type: str, resource_name: str = "") -> None:
        self.resource_type = resource_type
        self.resource_name = resource_name
        super().__init__(f"{resource_type} not found")


class AlreadyExists(DomainError):
    code_name = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    code_name = "FAILED_PRECONDITION"


class Aborted(DomainError):
    code_name = "ABORTED"


class Unauthenticated(DomainError):
    code_name = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    code_name = "PERMISSION_DENIED"


class ResourceExhausted(DomainError):
    code_name = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, retry_after_seconds: float = 0) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class Unavailable(DomainError):
    code_name = "UNAVAILABLE"
