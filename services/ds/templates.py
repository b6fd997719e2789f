"""The parser's data: config/sms_parsers/_common.toml (shared regex fragments, the
negative filter, the generic extractor's words) and one TOML file per issuer (its
id@version, DLT sender entities, fraud-report trailer and anchored templates).
Checked and compiled once at start; a bad file stops the service, not a request."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.ds.domain import Direction

_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)(?::([a-z_]+))?\}\}")
COMMON_FILE = "_common.toml"


class TemplateFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    kind: str = Field(pattern=r"^[a-z_]+$")
    direction: Literal["DEBIT", "CREDIT"]
    channel: str = ""
    pattern: str
    confidence: Decimal | None = Field(None, ge=0, le=1)


class IssuerFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    version: int = Field(ge=1)
    issuer: str
    senders: list[str] = Field(min_length=1)
    default_currency: str = "INR"
    trailer: str = ""
    templates: list[TemplateFile] = Field(min_length=1)


class GenericFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    version: int
    confidence: Decimal = Field(ge=0, le=1)
    default_currency: str
    context_chars: int = Field(ge=5, le=80)
    money: str
    debit_verbs: str
    credit_verbs: str
    balance_words: str
    limit_words: str
    other_amount_words: str
    counterparty: str
    counterparty_before: str
    own_account: str
    vpa: str
    account: str
    reference: str
    channels: dict[str, str]
    debit_kinds: dict[str, str]
    credit_kinds: dict[str, str]


class CommonFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_body_chars: int = Field(ge=160, le=10000)
    refused_header_types: list[str]
    template_confidence: Decimal = Field(ge=0, le=1)
    fragments: dict[str, str]
    negative: dict[str, str]
    generic: GenericFile


@dataclass(frozen=True)
class Template:
    parser_id: str
    kind: str
    direction: Direction
    channel: str
    regex: re.Pattern[str]
    confidence: Decimal


@dataclass(frozen=True)
class Issuer:
    id: str
    version: int
    name: str
    senders: frozenset[str]
    default_currency: str
    templates: tuple[Template, ...]


def _compile(pattern: str, flags: int = re.IGNORECASE) -> re.Pattern[str]:
    return re.compile(pattern, flags)


@dataclass(frozen=True)
class GenericRules:
    parser_id: str
    confidence: Decimal
    default_currency: str
    context_chars: int
    money: re.Pattern[str]
    debit_verbs: re.Pattern[str]
    credit_verbs: re.Pattern[str]
    balance_words: re.Pattern[str]
    limit_words: re.Pattern[str]
    other_amount_words: re.Pattern[str]
    counterparty: re.Pattern[str]
    counterparty_before: re.Pattern[str]
    own_account: re.Pattern[str]
    vpa: re.Pattern[str]
    account: re.Pattern[str]
    reference: re.Pattern[str]
    date: re.Pattern[str]
    channels: tuple[tuple[str, re.Pattern[str]], ...]
    debit_kinds: tuple[tuple[str, re.Pattern[str]], ...]
    credit_kinds: tuple[tuple[str, re.Pattern[str]], ...]

    def role_of(self, before: str) -> str | None:
        """What the words just before an amount make of it: a balance, a card's
        available limit, another amount (cashback, fee...), or None: the transaction's."""
        if self.limit_words.search(before):
            return "limit"
        if self.balance_words.search(before):
            return "balance"
        if self.other_amount_words.search(before):
            return "other"
        return None

    def counterparty_of(self, text: str) -> str:
        """A VPA when the message names one, else the first party after at/to/from/... that
        is not the user's own account or card, else a Hinglish "<name> ko"."""
        vpa = self.vpa.search(text)
        if vpa is not None:
            return vpa["counterparty"]
        for found in self.counterparty.finditer(text):
            if not self.own_account.search(found["counterparty"]):
                return found["counterparty"]
        before = self.counterparty_before.search(text)
        return before["counterparty"] if before else ""

    def channel_of(self, text: str) -> str:
        return next((name for name, pattern in self.channels if pattern.search(text)), "")

    def kind_of(self, text: str, direction: Direction) -> str:
        kinds = self.debit_kinds if direction is Direction.DEBIT else self.credit_kinds
        return next((name for name, pattern in kinds if pattern.search(text)), kinds[-1][0])


class ParserConfig:
    def __init__(self, common: CommonFile, issuers: list[IssuerFile]) -> None:
        self.max_body_chars = common.max_body_chars
        self.refused_header_types = frozenset(common.refused_header_types)
        self._fragments = common.fragments
        self.issuers = tuple(self._issuer(file, common.template_confidence) for file in issuers)
        self._by_entity: dict[str, Issuer] = {}
        for issuer in self.issuers:
            for entity in issuer.senders:
                if entity in self._by_entity:
                    raise ValueError(
                        f"sender {entity} belongs to {self._by_entity[entity].id} and {issuer.id}"
                    )
                self._by_entity[entity] = issuer
        # One alternation, each rule a named group, so the reason names the rule.
        self._negative = _compile("|".join(f"(?P<{name}>{rule})" for name, rule in common.negative.items()))
        self.generic = self._generic(common.generic)

    @classmethod
    def load(cls, directory: Path) -> ParserConfig:
        common = CommonFile.model_validate(tomllib.loads((directory / COMMON_FILE).read_text()))
        issuers = [
            IssuerFile.model_validate(tomllib.loads(path.read_text()))
            for path in sorted(directory.glob("*.toml"))
            if path.name != COMMON_FILE
        ]
        return cls(common, issuers)

    def issuer_for(self, entity: str) -> Issuer | None:
        return self._by_entity.get(entity)

    def negative_reason(self, text: str) -> str | None:
        match = self._negative.search(text)
        return None if match is None else f"not a completed transaction ({match.lastgroup})"

    def expand(self, pattern: str, trailer: str = "") -> str:
        """{{NAME}} and {{NAME:group}} replaced by the shared fragments ({g} in a
        fragment takes the group name); {{TRAILER}} by the issuer's optional trailer."""

        def fragment(found: re.Match[str]) -> str:
            name, group = found.group(1), found.group(2)
            if name == "TRAILER":
                return rf"(?:[ .]*(?:{trailer}))?[ .]*" if trailer else r"[ .]*"
            if name not in self._fragments:
                raise ValueError(f"unknown fragment {{{{{name}}}}} in {pattern!r}")
            text = self._fragments[name]
            if "{g}" in text and not group:
                raise ValueError(f"fragment {name} needs a group name: {{{{{name}:amount}}}}")
            return text.replace("{g}", group or "")

        return _PLACEHOLDER.sub(fragment, pattern)

    def _issuer(self, file: IssuerFile, default_confidence: Decimal) -> Issuer:
        templates = []
        for template in file.templates:
            try:
                regex = _compile(self.expand(template.pattern, file.trailer))
            except re.error as error:
                raise ValueError(f"{file.id}.{template.name}: {error}") from None
            templates.append(
                Template(
                    parser_id=f"{file.id}.{template.name}@{file.version}",
                    kind=template.kind,
                    direction=Direction(template.direction),
                    channel=template.channel,
                    regex=regex,
                    confidence=template.confidence or default_confidence,
                )
            )
        senders = frozenset(sender.upper() for sender in file.senders)
        return Issuer(file.id, file.version, file.issuer, senders, file.default_currency, tuple(templates))

    def _generic(self, file: GenericFile) -> GenericRules:
        def ordered(table: dict[str, str]) -> tuple[tuple[str, re.Pattern[str]], ...]:
            return tuple((name, _compile(rule)) for name, rule in table.items())

        return GenericRules(
            parser_id=f"{file.id}@{file.version}",
            confidence=file.confidence,
            default_currency=file.default_currency,
            context_chars=file.context_chars,
            money=_compile(self.expand(file.money)),
            debit_verbs=_compile(file.debit_verbs),
            credit_verbs=_compile(file.credit_verbs),
            balance_words=_compile(file.balance_words),
            limit_words=_compile(file.limit_words),
            other_amount_words=_compile(file.other_amount_words),
            counterparty=_compile(self.expand(file.counterparty)),
            counterparty_before=_compile(file.counterparty_before),
            own_account=_compile(file.own_account),
            vpa=_compile(file.vpa),
            account=_compile(self.expand(file.account)),
            reference=_compile(self.expand(file.reference)),
            date=_compile(self.expand("{{DATE}}")),
            channels=ordered(file.channels),
            debit_kinds=ordered(file.debit_kinds),
            credit_kinds=ordered(file.credit_kinds),
        )
