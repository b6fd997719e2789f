"""Subscription detection from a user's own spending history, and price increases.

Plain Python, no I/O; the rules come from config through `DetectionRules`.

How a series is found (per merchant and currency; `merchant_key` groups
spellings of one merchant):
- Charges are linked in date order, one cadence at a time. A charge extends a
  series whose latest charge lies one cadence interval before it (weekly 6..8
  days, monthly 26..34, yearly 358..372 by default) when its amount keeps every
  amount of the series within `amount_tolerance_percent` of the series' median;
  otherwise it starts a series of its own. Charges in between that do not fit
  (a one-off purchase at the same merchant) are skipped, not fatal. Two charges
  on one day never both belong to a series: the day counts once.
- Price change: a series of at least `min_occurrences` charges continues into
  the series that starts one interval after its last charge at another price
  (at most `max_price_change_percent` away). So 649 x 11 then 699 is one series
  of 12 whose amount is 699 and whose previous amount is 649.
- A series is suggested when it has `min_occurrences` charges, is not stale
  (its last charge is at most `stale_after_intervals` x the cadence's longest
  interval before `today`: a cancelled subscription is not suggested), and it
  stands out at its merchant: the other charges there during its time span
  ("strays", not counting those of a series already suggested) are at most
  `max_stray_percent` % of its charges, and at most `max_skipped_per_gap` lie
  between two of its consecutive charges. Without that, a supermarket visited
  twice a week always holds some "monthly" chain of similar amounts by chance.
  The price of it: a yearly plan among many other purchases at the same merchant
  (Amazon Prime among Amazon orders) is not found.
- A merchant yields at most one suggestion per cadence, the longest series
  first; series sharing a charge are never both suggested.
- Refunds and zero amounts (amount_minor <= 0), charges after `today` and
  charges without a merchant name are ignored.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right, insort
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from operator import attrgetter

from services.billing.matching import merchant_key as _merchant_key
from services.billing.matching import percent_ratio
from services.billing.recurrence import parse_recurrence

# Charges in a group: by day, then amount, then id, so the result never depends
# on the order the caller passed them in.
_CHARGE_ORDER = attrgetter("spent_on", "amount_minor", "expense_id")
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


@dataclass(frozen=True)
class Charge:
    expense_id: str
    spent_on: date
    merchant: str
    amount_minor: int
    currency: str


@dataclass(frozen=True)
class Suggestion:
    suggestion_id: str
    payee: str
    merchant_key: str
    currency: str
    amount_minor: int
    cadence: str
    recurrence: str
    next_due: date
    occurrences: int
    last_charge: date
    expense_ids: tuple[str, ...]
    # The charge before the latest one: price_increase(previous, amount) tells
    # whether the latest charge raised the price.
    previous_amount_minor: int = 0


@dataclass(frozen=True)
class Cadence:
    name: str
    min_days: int
    max_days: int


@dataclass(frozen=True)
class DetectionRules:
    """Values come from config; the defaults are the issue's (3 charges, 7.5 %)."""

    min_occurrences: int = 3
    # Every amount of a series (of one price level) within this of its median.
    amount_tolerance_percent: Decimal = Decimal("7.5")
    # Accepted gaps in days between consecutive charges of a series, inclusive:
    # 7 +- 1; 28..31 +- 3 (a month, moved by a weekend); 365 +- 7.
    weekly_days: tuple[int, int] = (6, 8)
    monthly_days: tuple[int, int] = (26, 34)
    yearly_days: tuple[int, int] = (358, 372)
    # Cancelled: no charge for this many of the cadence's longest gap.
    stale_after_intervals: int = 2
    # A series may change price once, by at most this much (module doc).
    max_price_change_percent: Decimal = Decimal("50")
    # Other charges at the merchant during a series, at most, as % of its charges.
    max_stray_percent: int = 50
    # Other charges at the merchant between two consecutive charges of a series,
    # at most: a yearly plan may sit among a year of monthly ones (12), a
    # supermarket's daily visits never hold a series. Also bounds the work per
    # charge, so a merchant with thousands of charges stays fast.
    max_skipped_per_gap: int = 16

    def __post_init__(self) -> None:
        if self.min_occurrences < 2:
            raise ValueError("min_occurrences must be at least 2")
        for name, (low, high) in self._windows():
            if not 1 <= low <= high:
                raise ValueError(f"{name}_days must be (low, high) with 1 <= low <= high")
        if self.stale_after_intervals < 1 or self.max_stray_percent < 0 or self.max_skipped_per_gap < 0:
            raise ValueError(
                "stale_after_intervals must be >= 1, max_stray_percent and max_skipped_per_gap >= 0"
            )
        percent_ratio(self.amount_tolerance_percent)  # raises on a bad percentage
        percent_ratio(self.max_price_change_percent)

    def _windows(self) -> tuple[tuple[str, tuple[int, int]], ...]:
        return (("weekly", self.weekly_days), ("monthly", self.monthly_days), ("yearly", self.yearly_days))

    def cadences(self) -> tuple[Cadence, ...]:
        return tuple(Cadence(name, low, high) for name, (low, high) in self._windows())


def price_increase(previous_minor: int, new_minor: int, min_increase_percent: Decimal) -> bool:
    """Whether new_minor is above previous_minor by at least min_increase_percent %
    of it (exact integer arithmetic). From nothing, any positive amount is one."""
    numerator, denominator = percent_ratio(min_increase_percent)
    if new_minor <= previous_minor:
        return False
    if previous_minor <= 0:
        return True
    return (new_minor - previous_minor) * 100 * denominator >= numerator * previous_minor


def suggestion_id(merchant_key: str, currency: str, cadence: str) -> str:
    """Stable across calls and price changes: the same series keeps its id."""
    return hashlib.sha256(f"{merchant_key}|{currency}|{cadence}".encode()).hexdigest()[:16]


def detect_subscriptions(charges: Iterable[Charge], today: date, rules: DetectionRules) -> list[Suggestion]:
    """Suggested subscriptions in the user's charges (module doc), latest first."""
    context = _Context(rules)
    suggestions: list[Suggestion] = []
    for (key, currency), group in _groups(charges, today).items():
        if len(group) < rules.min_occurrences:
            continue
        group.sort(key=_CHARGE_ORDER)
        detector = _Group(group, today, context)
        suggestions.extend(detector.suggestion(key, currency, series) for series in detector.best_series())
    suggestions.sort(key=lambda s: (-s.last_charge.toordinal(), s.merchant_key, s.currency, s.cadence))
    return suggestions


def _groups(charges: Iterable[Charge], today: date) -> dict[tuple[str, str], list[Charge]]:
    keys: dict[str, str] = {}  # merchant_key is the slow part; names repeat a lot
    groups: dict[tuple[str, str], list[Charge]] = defaultdict(list)
    for charge in charges:
        if charge.amount_minor <= 0 or charge.spent_on > today:
            continue
        key = keys.get(charge.merchant)
        if key is None:
            key = keys[charge.merchant] = _merchant_key(charge.merchant)
        if key:
            groups[key, charge.currency].append(charge)
    return groups


class _Tolerance:
    """amount_within with the percentage turned into integers once."""

    __slots__ = ("denominator", "numerator")

    def __init__(self, percent: Decimal) -> None:
        self.numerator, self.denominator = percent_ratio(percent)

    def within(self, reference: int, amount: int) -> bool:
        return abs(amount - reference) * 100 * self.denominator <= self.numerator * reference


class _Context:
    """What every group needs, worked out once per call."""

    __slots__ = ("cadences", "price_change", "rules", "tolerance")

    def __init__(self, rules: DetectionRules) -> None:
        self.rules = rules
        self.cadences = rules.cadences()
        self.tolerance = _Tolerance(rules.amount_tolerance_percent)
        self.price_change = _Tolerance(rules.max_price_change_percent)


@dataclass
class _Series:
    cadence: Cadence
    indexes: list[int]  # into the group, ascending
    medians: tuple[int, ...]  # one per price level


class _Group:
    """The charges of one merchant in one currency, sorted by day.

    A run (charges linked at one cadence and one price level) is named by its
    first charge, its head; `_link` keeps its members and sorted amounts once it
    has two charges. Hot loop: the detection of 100,000 charges must stay well
    under a second, hence plain lists and dicts rather than an object per run."""

    def __init__(self, charges: list[Charge], today: date, context: _Context) -> None:
        self.charges = charges
        self.days = [c.spent_on.toordinal() for c in charges]
        self.amounts = [c.amount_minor for c in charges]
        self.today = today.toordinal()
        self.rules = context.rules
        self.context = context

    def best_series(self) -> list[_Series]:
        candidates: list[_Series] = []
        span = self.days[-1] - self.days[0]
        for cadence in self.context.cadences:
            if span >= (self.rules.min_occurrences - 1) * cadence.min_days:
                candidates.extend(self._candidates(cadence))
        if not candidates:
            return candidates
        candidates.sort(key=lambda s: (-len(s.indexes), -self.days[s.indexes[-1]]))
        chosen: list[_Series] = []
        used: set[int] = set()
        for series in candidates:
            if series.cadence in {s.cadence for s in chosen} or used.intersection(series.indexes):
                continue
            # Charges of a series already chosen (iCloud monthly) are not strays
            # of another one (an Apple yearly plan).
            if self._stands_out(series, used):
                chosen.append(series)
                used.update(series.indexes)
        return chosen

    def _candidates(self, cadence: Cadence) -> list[_Series]:
        members, amounts, is_head = self._link(cadence)
        stale_before = self.today - self.rules.stale_after_intervals * cadence.max_days
        found = []
        for head, run in members.items():
            if len(run) < self.rules.min_occurrences:
                continue
            indexes, medians = list(run), [_median(amounts[head])]
            step = self._price_step(run[-1], medians[0], cadence, is_head)
            if step is not None:
                indexes += members.get(step, [step])
                medians.append(_median(amounts.get(step, [self.amounts[step]])))
            if self.days[indexes[-1]] >= stale_before:
                found.append(_Series(cadence, indexes, tuple(medians)))
        return found

    def _link(self, cadence: Cadence) -> tuple[dict[int, list[int]], dict[int, list[int]], list[bool]]:
        """One pass in day order: each charge extends the best run whose latest
        charge is one interval before it (closest to the ideal gap, then to the
        run's median amount), or starts a run of its own."""
        days, amounts = self.days, self.amounts
        tolerance = self.context.tolerance
        numerator, denominator = tolerance.numerator, tolerance.denominator * 100
        low, high = cadence.min_days, cadence.max_days
        ideal = _IDEAL_QUARTER_DAYS.get(cadence.name, 2 * (low + high))
        tail_of = list(range(len(days)))  # the head of the run a charge ends, or -1
        is_head = [True] * len(days)
        members: dict[int, list[int]] = {}
        sorted_amounts: dict[int, list[int]] = {}
        skip = self.rules.max_skipped_per_gap
        start = end = 0
        for index, day in enumerate(days):
            nearest = index - 1 - skip  # the earliest charge a link may reach back to
            start = bisect_left(days, day - high, start if start > nearest else nearest, index)
            end = bisect_right(days, day - low, end if end > start else start, index)
            if start == end:
                continue
            amount = amounts[index]
            best: tuple[int, int, int] | None = None
            for candidate in range(start, end):
                head = tail_of[candidate]
                if head < 0:
                    continue
                values = sorted_amounts.get(head) or [amounts[head]]
                # The median once `amount` joins (median_low keeps it an integer);
                # every amount stays within tolerance of it iff the extremes do.
                size, position = len(values), bisect_left(values, amount)
                middle = size // 2
                median = (
                    values[middle]
                    if middle < position
                    else amount
                    if middle == position
                    else (values[middle - 1])
                )
                lowest = values[0] if values[0] < amount else amount
                highest = values[-1] if values[-1] > amount else amount
                if (median - lowest) * denominator > numerator * median or (
                    highest - median
                ) * denominator > numerator * median:
                    continue
                rank = (abs(4 * (day - days[candidate]) - ideal), abs(amount - median), candidate)
                if best is None or rank < best:
                    best = rank
            if best is None:
                continue
            candidate = best[2]
            head = tail_of[candidate]
            tail_of[candidate], tail_of[index], is_head[index] = -1, head, False
            if head not in members:
                members[head], sorted_amounts[head] = [head], [amounts[head]]
            members[head].append(index)
            insort(sorted_amounts[head], amount)
        return members, sorted_amounts, is_head

    def _price_step(self, last: int, median: int, cadence: Cadence, is_head: list[bool]) -> int | None:
        """The head of the run at another price that starts one interval after
        `last`: closest to the ideal gap, then the earliest."""
        day = self.days[last]
        first = bisect_left(self.days, day + cadence.min_days)
        stop = bisect_right(self.days, day + cadence.max_days)
        ideal = _IDEAL_QUARTER_DAYS.get(cadence.name, 2 * (cadence.min_days + cadence.max_days))
        best: tuple[int, int] | None = None
        for index in range(first, stop):
            if is_head[index] and self.context.price_change.within(median, self.amounts[index]):
                rank = (abs(4 * (self.days[index] - day) - ideal), index)
                best = rank if best is None or rank < best else best
        return best[1] if best else None

    def _stands_out(self, series: _Series, excluded: set[int]) -> bool:
        """Other charges at the merchant during the series' span (not in it, not
        in a series already chosen) are at most max_stray_percent % of its charges."""
        first = bisect_left(self.days, self.days[series.indexes[0]])
        stop = bisect_right(self.days, self.days[series.indexes[-1]])
        members = set(series.indexes)
        strays = sum(1 for i in range(first, stop) if i not in members and i not in excluded)
        return strays * 100 <= self.rules.max_stray_percent * len(series.indexes)

    def suggestion(self, key: str, currency: str, series: _Series) -> Suggestion:
        return _suggestion(key, currency, series.cadence, [self.charges[i] for i in series.indexes])


# The ideal gap of each cadence in quarter days (7, ~30.44, ~365.25 days), so
# ranking stays in integers.
_IDEAL_QUARTER_DAYS = {"weekly": 28, "monthly": 122, "yearly": 1461}


def _median(sorted_values: list[int]) -> int:
    return sorted_values[(len(sorted_values) - 1) // 2]


def _suggestion(key: str, currency: str, cadence: Cadence, charges: list[Charge]) -> Suggestion:
    latest = charges[-1]
    rule = _rule_text(cadence.name, [c.spent_on for c in charges])
    recurrence = parse_recurrence(rule, latest.spent_on)
    next_due = recurrence.next_on_or_after(latest.spent_on + timedelta(days=1))
    assert next_due is not None  # an unbounded weekly/monthly/yearly rule
    return Suggestion(
        suggestion_id=suggestion_id(key, currency, cadence.name),
        payee=_most_common_spelling(charges),
        merchant_key=key,
        currency=currency,
        amount_minor=latest.amount_minor,
        cadence=cadence.name,
        recurrence=recurrence.text,
        next_due=next_due,
        occurrences=len(charges),
        last_charge=latest.spent_on,
        expense_ids=tuple(c.expense_id for c in charges),
        previous_amount_minor=charges[-2].amount_minor,
    )


def _rule_text(cadence: str, days: list[date]) -> str:
    """The rule from the series' usual day (weekday, day of month): the most
    frequent one, so a charge moved by a weekend or a month end does not move
    the bill; on a tie the latest charge's."""
    latest = days[-1]
    if cadence == "weekly":
        return f"FREQ=WEEKLY;BYDAY={_WEEKDAYS[_usual([d.weekday() for d in days])]}"
    if cadence == "monthly":
        return f"FREQ=MONTHLY;BYMONTHDAY={_usual([d.day for d in days])}"
    return f"FREQ=YEARLY;BYMONTH={latest.month};BYMONTHDAY={latest.day}"


def _usual(values: list[int]) -> int:
    counts = Counter(values)
    top = max(counts.values())
    return next(v for v in reversed(values) if counts[v] == top)


def _most_common_spelling(charges: list[Charge]) -> str:
    counts = Counter(c.merchant for c in charges)
    top = max(counts.values())
    return next(c.merchant for c in reversed(charges) if counts[c.merchant] == top)
