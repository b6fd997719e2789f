"""Bank SMS -> a parsed transaction, without any model or network: the sender gate
(DLT headers), the issuer's anchored templates (data, config/sms_parsers/*.toml), a
negative filter, then a generic extractor whose results only ever go to review.
Plain Python; `SmsParser.parse` never raises and never yields a float."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from services.ds import normalise
from services.ds.domain import (
    BOOKABLE_KINDS,
    Direction,
    Outcome,
    ParsedSms,
    not_transaction,
)
from services.ds.templates import GenericRules, Issuer, ParserConfig, Template

_SPACES = re.compile(r"\s+")
# XX-ENTITY-T (DLT, 2025 suffix), XX-ENTITY (older), or a bare alphanumeric id abroad.
_HEADER = re.compile(r"^(?:[A-Z]{2}-)?(?P<entity>[A-Z0-9]{3,11})(?:-(?P<type>[A-Z]))?$", re.ASCII)
_PHONE = re.compile(r"^\+?[0-9 ]{6,15}$", re.ASCII)


@dataclass(frozen=True)
class SenderHeader:
    entity: str
    # T transactional, S service, P promotional, G government; "" on pre-2025 headers.
    type: str


def sender_header(sender: str) -> SenderHeader | None:
    """The DLT header's parts; None for a phone number or anything else no bank sends from."""
    cleaned = sender.strip().upper()
    if _PHONE.match(cleaned):
        return None
    match = _HEADER.match(cleaned)
    if match is None or match["entity"].isdigit():
        return None
    return SenderHeader(match["entity"], match["type"] or "")


def clean_body(body: str) -> str:
    """NFKC (full-width digits and odd spaces become plain ones), one space between words."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", body)).strip()


class SmsParser:
    def __init__(self, config: ParserConfig) -> None:
        self.config = config

    def parse(self, sender: str, body: str, received: datetime) -> ParsedSms:
        if len(body) > self.config.max_body_chars:
            return not_transaction("longer than any bank SMS")
        header = sender_header(sender)
        if header is None:
            return not_transaction("the sender is not a business header")
        if header.type in self.config.refused_header_types:
            return not_transaction(f"a -{header.type} header (promotional or government)")
        text = clean_body(body)
        issuer = self.config.issuer_for(header.entity)
        if issuer is not None:
            for template in issuer.templates:
                match = template.regex.fullmatch(text)
                if match is not None:
                    parsed = self._from_template(issuer, template, match, received.date())
                    if parsed is not None:
                        return parsed
        negative = self.config.negative_reason(text)
        if negative is not None:
            return not_transaction(negative)
        return extract_generic(self.config.generic, issuer, text, received.date())

    def _from_template(
        self, issuer: Issuer, template: Template, match: re.Match[str], received: date
    ) -> ParsedSms | None:
        """None when what the template captured does not read as values (a wrong amount
        or currency): the generic extractor then looks at the message."""
        groups = {name: value for name, value in match.groupdict().items() if value}
        money = _money(groups, "amount", issuer.default_currency)
        if money is None:
            return None
        amount, currency = money
        foreign = _money(groups, "foreign_amount", issuer.default_currency)
        if foreign is not None and foreign[1] == currency:
            foreign = None
        balance = _money(groups, "balance", issuer.default_currency)
        limit = _money(groups, "limit", issuer.default_currency)
        return ParsedSms(
            outcome=Outcome.TRANSACTION,
            direction=template.direction,
            kind=template.kind,
            amount=amount,
            currency=currency,
            foreign_amount=foreign[0] if foreign else None,
            foreign_currency=foreign[1] if foreign else "",
            counterparty=normalise.counterparty(groups.get("counterparty")),
            account_mask=normalise.account_mask(groups.get("account")),
            channel=(groups.get("channel") or template.channel).upper(),
            balance=balance[0] if balance else None,
            available_limit=limit[0] if limit else None,
            reference=groups.get("reference", ""),
            txn_date=normalise.parse_date(groups.get("date"), received) or received,
            confidence=template.confidence,
            parser=template.parser_id,
            bank=issuer.id,
        )


def _money(groups: dict[str, str], name: str, default_currency: str) -> tuple[Decimal, str] | None:
    amount = normalise.decimal_amount(groups.get(name))
    currency = normalise.currency_of(groups.get(f"{name}_currency"), default_currency)
    if amount is None or currency is None or normalise.minor_units(amount, currency) is None:
        return None
    return amount, currency


# ---------------------------------------------------------------- generic extractor


def extract_generic(rules: GenericRules, issuer: Issuer | None, text: str, received: date) -> ParsedSms:
    """The first amount beside a currency that is no balance, limit or cashback, with a
    debit or credit verb: always NEEDS_REVIEW, at the generic confidence or below."""
    direction = _direction(rules, text)
    if direction is None:
        return not_transaction("no debit or credit verb")
    amount, other, balance, limit = None, None, None, None
    default_currency = issuer.default_currency if issuer else rules.default_currency
    for money in rules.money.finditer(text):
        value = normalise.decimal_amount(money["amount"] or money["amount_after"])
        currency = normalise.currency_of(money["currency"] or money["currency_after"], default_currency)
        if value is None or currency is None or normalise.minor_units(value, currency) is None:
            continue
        before = text[max(0, money.start() - rules.context_chars) : money.start()]
        role = rules.role_of(before)
        if role == "balance" and balance is None:
            balance = value
        elif role == "limit" and limit is None:
            limit = value
        elif role is None and amount is None:
            amount = (value, currency)
        elif role == "other" and other is None:
            other = (value, currency)
    # "Cashback of Rs.50 credited": the only amount is the one the words set apart.
    amount = amount or other
    if amount is None:
        return not_transaction("no amount beside a currency")
    party = rules.counterparty_of(text)
    mask = rules.account.search(text)
    reference = rules.reference.search(text)
    date_match = rules.date.search(text)
    kind = rules.kind_of(text, direction)
    confidence = rules.confidence - (Decimal(0) if party else Decimal("0.1"))
    return ParsedSms(
        outcome=Outcome.NEEDS_REVIEW,
        direction=direction,
        kind=kind,
        amount=amount[0],
        currency=amount[1],
        counterparty=normalise.counterparty(party),
        account_mask=normalise.account_mask(mask["account"]) if mask else "",
        channel=rules.channel_of(text),
        balance=balance,
        available_limit=limit,
        reference=reference["reference"] if reference else "",
        txn_date=(normalise.parse_date(date_match.group(), received) if date_match else None) or received,
        confidence=confidence,
        parser=rules.parser_id,
        bank=issuer.id if issuer else "",
        reason="read by the generic extractor",
    )


def _direction(rules: GenericRules, text: str) -> Direction | None:
    """The direction whose verb comes first ("debited ... credited to X" is a debit)."""
    debit = rules.debit_verbs.search(text)
    credit = rules.credit_verbs.search(text)
    if debit is None and credit is None:
        return None
    if credit is None or (debit is not None and debit.start() < credit.start()):
        return Direction.DEBIT
    return Direction.CREDIT


def bookable(parsed: ParsedSms, min_confidence: Decimal) -> bool:
    """Whether the message becomes an expense without anyone looking at it."""
    return (
        parsed.outcome is Outcome.TRANSACTION
        and parsed.direction is Direction.DEBIT
        and parsed.kind in BOOKABLE_KINDS
        and parsed.confidence >= min_confidence
    )
