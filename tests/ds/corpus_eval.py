"""Runs the parser over the labelled corpus (tests/ds/corpus/*.jsonl) and measures it:
coverage (accepted / eligible), field accuracy on accepted messages, messages of the
negative set taken for transactions. `python -m tests.ds.corpus_eval` prints the tables."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from services.ds.domain import Outcome, ParsedSms
from services.ds.parser import SmsParser
from services.ds.templates import ParserConfig
from services.kit.config.settings import REPO_ROOT

CORPUS = Path(__file__).parent / "corpus"
FIELDS = (
    "amount",
    "currency",
    "direction",
    "kind",
    "counterparty",
    "account_mask",
    "reference",
    "txn_date",
    "balance",
    "foreign_amount",
    "foreign_currency",
)


def load_corpus() -> list[dict]:
    rows = []
    for path in sorted(CORPUS.glob("*.jsonl")):
        rows.extend(json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return rows


def default_parser() -> SmsParser:
    return SmsParser(ParserConfig.load(REPO_ROOT / "config" / "sms_parsers"))


def _same_text(left: str, right: str) -> bool:
    return " ".join(left.split()).casefold() == " ".join(right.split()).casefold()


def field_value(parsed: ParsedSms, name: str) -> str:
    value = getattr(parsed, name)
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return str(value.quantize(Decimal("0.01")))
    if hasattr(value, "value"):
        return str(value.value)
    return str(value)


def field_correct(parsed: ParsedSms, name: str, expected: str) -> bool:
    got = field_value(parsed, name)
    if name == "counterparty":
        return _same_text(got, expected)
    if name in ("amount", "balance", "foreign_amount") and expected:
        return got != "" and Decimal(got) == Decimal(expected)
    return got == expected


@dataclass
class Tally:
    eligible: int = 0
    accepted: int = 0
    review: int = 0
    negatives: int = 0
    negatives_accepted: int = 0
    negatives_reviewed: int = 0
    checked: Counter = field(default_factory=Counter)
    correct: Counter = field(default_factory=Counter)
    misses: list[str] = field(default_factory=list)
    # The generic extractor's fields on messages it sent to review (what a reviewer sees).
    review_checked: Counter = field(default_factory=Counter)
    review_correct: Counter = field(default_factory=Counter)

    def review_accuracy(self, name: str) -> float:
        return self.review_correct[name] / self.review_checked[name] if self.review_checked[name] else 1.0

    def accuracy(self, name: str) -> float:
        return self.correct[name] / self.checked[name] if self.checked[name] else 1.0

    @property
    def coverage(self) -> float:
        return self.accepted / self.eligible if self.eligible else 1.0


@dataclass
class Report:
    overall: Tally
    by_issuer: dict[str, Tally]
    templates_hit: set[str]


def evaluate(parser: SmsParser, rows: list[dict]) -> Report:
    overall = Tally()
    by_issuer: dict[str, Tally] = defaultdict(Tally)
    hit: set[str] = set()
    for row in rows:
        parsed = parser.parse(row["sender"], row["body"], datetime.fromisoformat(row["received_time"]))
        expect = row["expect"]
        for tally in (overall, by_issuer[row["issuer"]]):
            _count(tally, parsed, expect, row["body"])
        if parsed.outcome is Outcome.TRANSACTION:
            hit.add(parsed.parser)
    return Report(overall, dict(by_issuer), hit)


def _count(tally: Tally, parsed: ParsedSms, expect: dict, body: str) -> None:
    if not expect["is_transaction"]:
        tally.negatives += 1
        tally.negatives_accepted += parsed.outcome is Outcome.TRANSACTION
        tally.negatives_reviewed += parsed.outcome is Outcome.NEEDS_REVIEW
        return
    tally.eligible += 1
    if parsed.outcome is Outcome.NEEDS_REVIEW:
        tally.review += 1
        for name in ("amount", "counterparty", "direction"):
            if name in expect:
                tally.review_checked[name] += 1
                tally.review_correct[name] += field_correct(parsed, name, str(expect[name]))
    if parsed.outcome is not Outcome.TRANSACTION:
        tally.misses.append(f"{parsed.outcome.value}: {body}")
        return
    tally.accepted += 1
    for name in FIELDS:
        if name in expect or name in ("foreign_amount", "foreign_currency"):
            tally.checked[name] += 1
            if field_correct(parsed, name, str(expect.get(name, ""))):
                tally.correct[name] += 1
            else:
                tally.misses.append(
                    f"{name}: got {field_value(parsed, name)!r} want {expect.get(name)!r}: {body}"
                )


def table(report: Report) -> str:
    names = (
        "amount",
        "counterparty",
        "account_mask",
        "reference",
        "txn_date",
        "balance",
        "direction",
        "kind",
    )
    header = (
        "| issuer | eligible | accepted | review | coverage | " + " | ".join(names) + " | negatives (taken) |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    rows = [*sorted(report.by_issuer.items()), ("**all**", report.overall)]
    for issuer, tally in rows:
        cells = [f"{tally.accuracy(name):.1%}" if tally.checked[name] else "-" for name in names]
        lines.append(
            f"| {issuer} | {tally.eligible} | {tally.accepted} | {tally.review} | {tally.coverage:.1%} | "
            + " | ".join(cells)
            + f" | {tally.negatives} ({tally.negatives_accepted}) |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    report = evaluate(default_parser(), load_corpus())
    print(table(report))
    overall = report.overall
    review = ", ".join(
        f"{n} {overall.review_accuracy(n):.1%}" for n in ("amount", "counterparty", "direction")
    )
    print(f"\ngeneric extractor on the {overall.review} messages it sent to review: {review}")
    for miss in report.overall.misses:
        print(" -", miss)
