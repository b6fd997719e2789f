"""The default templates shipped as files under config/templates/ (one TOML file per
key: its variables, sample data, and a body per channel and locale), read into drafts
that the service loads at start (usecases.Templates.load_defaults)."""

from __future__ import annotations

import tomllib
from datetime import date, datetime
from pathlib import Path
from typing import Any

from services.kit.config.settings import REPO_ROOT
from services.templating.domain import (
    TemplateId,
    VariableSpec,
    VersionDraft,
    WhatsAppSpec,
    canonical_locale,
    channel_name,
    template_key,
)


class TemplateFileError(ValueError):
    """A default template file that does not say what it must."""


def templates_dir(configured: str) -> Path:
    path = Path(configured)
    return path if path.is_absolute() else REPO_ROOT / path


def load_drafts(directory: Path) -> list[VersionDraft]:
    """Every (key, channel, locale) of every *.toml file, in file order."""
    drafts: list[VersionDraft] = []
    for path in sorted(directory.glob("*.toml")):
        try:
            drafts.extend(drafts_of(tomllib.loads(path.read_text(encoding="utf-8"))))
        except (ValueError, KeyError, TypeError) as error:
            raise TemplateFileError(f"{path.name}: {error}") from error
    return drafts


def drafts_of(document: dict[str, Any]) -> list[VersionDraft]:
    key = template_key(document["key"])
    variables = tuple(_variable(name, spec) for name, spec in document.get("variables", {}).items())
    sample = _plain(document.get("sample", {}))
    drafts = []
    for channel, locales in document.get("channels", {}).items():
        for locale, text in locales.items():
            try:
                drafts.append(_draft(key, channel, locale, text, variables, sample))
            except (ValueError, KeyError, TypeError) as error:
                raise TemplateFileError(f"[channels.{channel}.{locale}]: {error}") from error
    return drafts


def _draft(
    key: str,
    channel: str,
    locale: str,
    text: dict[str, Any],
    variables: tuple[VariableSpec, ...],
    sample: Any,
) -> VersionDraft:
    whatsapp = text.get("whatsapp")
    return VersionDraft(
        TemplateId(key, channel_name(channel), canonical_locale(locale)),
        text.get("subject", ""),
        text["body"],
        variables,
        sample,
        WhatsAppSpec(whatsapp["name"], whatsapp["language"], tuple(whatsapp["parameters"]))
        if whatsapp
        else None,
    )


def _variable(name: str, spec: str | dict[str, Any]) -> VariableSpec:
    """`name = "money"` or `name = { type = "string", required = false }`."""
    if isinstance(spec, str):
        return VariableSpec(name, spec)
    return VariableSpec(name, spec["type"], bool(spec.get("required", True)))


def _plain(value: Any) -> Any:
    """TOML values as a Struct carries them: dates as ISO strings."""
    if isinstance(value, dict):
        return {name: _plain(item) for name, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value
