"""Bill recurrences: RFC 5545 RRULEs on dates, validated, normalised and expanded.

Plain Python (dateutil), no I/O. A bill stores the normalised rule text and its
first due date; `parse_recurrence(text, first_due)` rebuilds the same
`Recurrence` from them (parsing a normalised text again changes nothing).

Semantics, all of them RFC 5545 as dateutil implements it:
- The rule's DTSTART is the bill's `first_due` (midnight, no time zone); a
  DTSTART in the text is refused. Occurrences are the dates the rule produces on
  or after `first_due` (like dateutil, and unlike RFC 5545, `first_due` itself is
  an occurrence only when the rule produces it).
- Bills fall due on days: FREQ finer than DAILY, BYHOUR/BYMINUTE/BYSECOND and an
  UNTIL with a time are refused; UNTIL is a date (YYYYMMDD), inclusive.
- Month ends clamp. RFC 5545 skips a month that lacks the day
  ("FREQ=MONTHLY;BYMONTHDAY=31" has no February), which is never what a bill
  means. So a MONTHLY rule, or a YEARLY one in a single BYMONTH, whose only day
  selector is one BYMONTHDAY d in 29..31 (or, without any day selector, whose
  `first_due` falls on day d in 29..31) is stored as
  "BYMONTHDAY=28,...,d;BYSETPOS=-1": the last of those days that the month has.
  A bill on the 31st thus falls on the 30th in April and on the 28th (29th in
  leap years) in February. Rules with several months and BYMONTHDAY=31 in a
  YEARLY rule, or combined with BYDAY/BYSETPOS, keep plain RFC 5545 meaning.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from functools import cached_property

from dateutil.rrule import DAILY, MONTHLY, WEEKLY, YEARLY, rrule, rrulestr

from services.kit.domain.errors import InvalidArgument

MAX_RULE_LENGTH = 500
# One call never expands more dates than this (a daily rule over decades).
MAX_OCCURRENCES = 1000
# A rule with no occurrence within this many years of first_due is refused: it
# "never" produces one for a bill's purposes, and searching further is unbounded
# work (dateutil walks day by day up to year 9999 for an impossible DAILY rule).
FIRST_OCCURRENCE_HORIZON_YEARS = 10
# Canonical order of the stored parts; anything else is refused.
_PART_ORDER = (
    "FREQ",
    "INTERVAL",
    "COUNT",
    "UNTIL",
    "BYMONTH",
    "BYWEEKNO",
    "BYYEARDAY",
    "BYMONTHDAY",
    "BYDAY",
    "BYSETPOS",
    "WKST",
)
_FREQS = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
_TIME_PARTS = ("BYHOUR", "BYMINUTE", "BYSECOND")
_SUB_DAILY = ("HOURLY", "MINUTELY", "SECONDLY")
_DATE_UNTIL = re.compile(r"[0-9]{8}")
_POSITIVE_INT = re.compile(r"[1-9][0-9]{0,5}")
_NOMINAL_DAYS = {DAILY: 1, WEEKLY: 7, MONTHLY: 30, YEARLY: 365}
# Occurrences sampled for typical_interval_days: a year of a monthly rule.
_INTERVAL_SAMPLE = 13


@dataclass(frozen=True)
class Recurrence:
    """A validated rule and the bill's first due date. Build it with
    `parse_recurrence`; the constructor trusts `text` to be normalised."""

    text: str
    first_due: date
    _rule: rrule = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rule = rrulestr(self.text, dtstart=_midnight(self.first_due))
        object.__setattr__(self, "_rule", rule)

    def occurrences(self, start: date, end: date) -> list[date]:
        """Due dates in [start, end] (both inclusive), never before first_due,
        ascending, at most MAX_OCCURRENCES of them (the earliest)."""
        if end < start:
            return []
        found: list[date] = []
        stop = _midnight(end)
        for moment in self._rule.xafter(_midnight(max(start, self.first_due)), inc=True):
            if moment > stop or len(found) >= MAX_OCCURRENCES:
                break
            found.append(moment.date())
        return found

    def each(self) -> Iterator[date]:
        """Every due date from first_due on, ascending, lazily: the caller decides how far
        to walk (an unbounded rule never ends)."""
        for moment in self._rule.xafter(_midnight(self.first_due), inc=True):
            yield moment.date()

    def next_on_or_after(self, day: date) -> date | None:
        moment = self._rule.after(_midnight(max(day, self.first_due)), inc=True)
        return moment.date() if moment else None

    def previous_before(self, day: date) -> date | None:
        moment = self._rule.before(_midnight(day), inc=False)
        return moment.date() if moment else None

    def typical_interval_days(self) -> int:
        return self._typical_interval

    @cached_property
    def _typical_interval(self) -> int:
        """Mean gap of the first occurrences, rounded (30 for monthly, 7 weekly,
        365 yearly, 3 for "every Mon/Thu"...); the nominal period length when the
        rule has fewer than two occurrences."""
        sample = [moment.date() for _, moment in zip(range(_INTERVAL_SAMPLE), self._rule, strict=False)]
        if len(sample) < 2:
            return _NOMINAL_DAYS[self._rule._freq] * self._rule._interval
        span, gaps = (sample[-1] - sample[0]).days, len(sample) - 1
        return max(1, (2 * span + gaps) // (2 * gaps))  # round half up, integers only


def parse_recurrence(text: str, first_due: date, field: str = "recurrence") -> Recurrence:
    """Validate and normalise an RRULE ("RRULE:" prefix optional, any case)."""
    if len(text) > MAX_RULE_LENGTH:
        raise _invalid(field, f"a recurrence is at most {MAX_RULE_LENGTH} characters")
    parts = _split_parts(text, field)
    _check_parts(parts, field)
    _clamp_month_ends(parts, first_due)
    normalised = ";".join(f"{name}={parts[name]}" for name in _PART_ORDER if name in parts)
    try:
        recurrence = Recurrence(normalised, first_due)
    except (ValueError, TypeError, OverflowError) as exc:
        raise _invalid(field, f"not a valid RRULE: {exc}") from None
    _check_produces(recurrence, parts.get("UNTIL"), field)
    return recurrence


def _split_parts(text: str, field: str) -> dict[str, str]:
    body = text.strip()
    if body.upper().startswith("RRULE:"):
        body = body[len("RRULE:") :]
    if not body:
        raise _invalid(field, 'a recurrence is an RRULE such as "FREQ=MONTHLY;BYMONTHDAY=5"')
    if "\n" in body or "\r" in body or "DTSTART" in body.upper():
        raise _invalid(field, "only the RRULE itself: the first due date is its own field, not DTSTART")
    parts: dict[str, str] = {}
    for piece in body.split(";"):
        name, sep, value = piece.partition("=")
        name, value = name.strip().upper(), value.strip().upper()
        if not sep or not name or not value:
            raise _invalid(field, f'"{piece}" is not NAME=VALUE')
        if name in parts:
            raise _invalid(field, f"{name} appears twice")
        parts[name] = value
    return parts


def _check_parts(parts: dict[str, str], field: str) -> None:
    freq = parts.get("FREQ")
    if freq is None:
        raise _invalid(field, "FREQ is required (DAILY, WEEKLY, MONTHLY or YEARLY)")
    if freq in _SUB_DAILY:
        raise _invalid(field, f"FREQ={freq} is finer than a day: bills fall due on dates")
    if freq not in _FREQS:
        raise _invalid(field, f"FREQ must be DAILY, WEEKLY, MONTHLY or YEARLY, not {freq}")
    for name in parts:
        if name in _TIME_PARTS:
            raise _invalid(field, f"{name} sets a time of day: bills fall due on dates")
        if name not in _PART_ORDER:
            raise _invalid(field, f"unsupported RRULE part {name}")
    for name in ("INTERVAL", "COUNT"):
        if name in parts and not _POSITIVE_INT.fullmatch(parts[name]):
            raise _invalid(field, f"{name} must be a positive integer")
    if parts.get("INTERVAL") == "1":
        del parts["INTERVAL"]  # the default: one spelling per rule
    if "UNTIL" in parts:
        if "COUNT" in parts:
            raise _invalid(field, "COUNT and UNTIL cannot both be set")
        if not _DATE_UNTIL.fullmatch(parts["UNTIL"]):
            raise _invalid(field, "UNTIL must be a date (YYYYMMDD), without a time")


def _clamp_month_ends(parts: dict[str, str], first_due: date) -> None:
    """Rewrite a day 29..31 as "the last of 28..d the month has" (module doc)."""
    freq = parts["FREQ"]
    if any(name in parts for name in ("BYDAY", "BYSETPOS", "BYYEARDAY", "BYWEEKNO")):
        return
    months = parts.get("BYMONTH")
    if freq == "YEARLY" and months is not None and "," in months:
        return
    if freq not in ("MONTHLY", "YEARLY"):
        return
    day_text = parts.get("BYMONTHDAY")
    if day_text is None:
        day = first_due.day
    elif day_text.isdigit():
        day = int(day_text)
    else:
        return  # several days, or counted from the month end: already explicit
    if not 29 <= day <= 31:
        return
    if freq == "YEARLY" and months is None:
        parts["BYMONTH"] = str(first_due.month)  # implied by DTSTART; explicit now
    parts["BYMONTHDAY"] = ",".join(str(d) for d in range(28, day + 1))
    parts["BYSETPOS"] = "-1"


def _check_produces(recurrence: Recurrence, until: str | None, field: str) -> None:
    start = recurrence.first_due
    horizon = _midnight(date(min(start.year + FIRST_OCCURRENCE_HORIZON_YEARS, 9999), 12, 31))
    if until is not None:  # YYYYMMDD, checked; the rule's own end still applies
        horizon = min(horizon, datetime.strptime(until, "%Y%m%d"))
    # The bound keeps the search short (dateutil would walk on to year 9999).
    bounded = recurrence._rule.replace(until=horizon, count=None)
    if bounded.after(_midnight(start), inc=True) is None:
        raise _invalid(
            field,
            f"the rule produces no due date on or after {start} "
            f"(looked {FIRST_OCCURRENCE_HORIZON_YEARS} years ahead)",
        )


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time())


def _invalid(field: str, description: str) -> InvalidArgument:
    return InvalidArgument.of(field, description)
