"""Request validation with pydantic: a failed model becomes InvalidArgument
with one field violation per problem, named by its path in the request."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from services.kit.domain.errors import FieldViolation, InvalidArgument

ModelT = TypeVar("ModelT", bound=BaseModel)


def _field_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1] = f"{parts[-1]}[{item}]" if parts else f"[{item}]"
        else:
            parts.append(item)
    return ".".join(parts)


def violations_of(error: ValidationError, prefix: str = "") -> list[FieldViolation]:
    result = []
    for item in error.errors(include_url=False):
        path = _field_path(tuple(item["loc"])) or "request"
        message = str(item["msg"]).removeprefix("Value error, ")
        result.append(FieldViolation(f"{prefix}{path}", message))
    return result


def validated(model: type[ModelT], data: dict[str, Any], prefix: str = "") -> ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise InvalidArgument(violations_of(error, prefix)) from None


def parse_update_mask(mask: str, allowed: set[str], field: str = "update_mask") -> list[str]:
    """The JSON form of a FieldMask ("a,b.c") checked against the updatable paths."""
    paths = [path.strip() for path in mask.split(",") if path.strip()]
    unknown = [path for path in paths if path not in allowed]
    if unknown:
        raise InvalidArgument.of(field, f"unknown or read-only field(s): {', '.join(unknown)}")
    return paths
