"""Request validation with pydantic: a failed model becomes InvalidArgument naming
each field (kit/domain/validation.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator

from services.templating.domain import canonical_locale, channel_name, template_key


class TemplateIdInput(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str
    channel: str
    locale: str

    @field_validator("key", mode="before")
    @classmethod
    def _key(cls, value: str) -> str:
        return template_key(value)

    @field_validator("channel", mode="before")
    @classmethod
    def _channel(cls, value: str) -> str:
        return channel_name(value)

    @field_validator("locale", mode="before")
    @classmethod
    def _locale(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("required, e.g. en or hi-IN")
        return canonical_locale(value)


class FiltersInput(BaseModel):
    """ListTemplates' optional filters."""

    key: str
    channel: str
    locale: str

    @field_validator("key", mode="before")
    @classmethod
    def _key(cls, value: str) -> str:
        return template_key(value) if value.strip() else ""

    @field_validator("channel", mode="before")
    @classmethod
    def _channel(cls, value: str) -> str:
        return channel_name(value) if value.strip() else ""

    @field_validator("locale", mode="before")
    @classmethod
    def _locale(cls, value: str) -> str:
        return canonical_locale(value) if value.strip() else ""
