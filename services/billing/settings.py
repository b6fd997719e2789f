"""The billing service's settings: its [billing] section of config/mesh.toml
(EM_BILLING__* in the environment) beside the kit's, and the user service's section
for the calendar of users it has not heard of yet. The alert rules' thresholds,
windows and multipliers are here: data, not code."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, Field

from services.kit.config.settings import MeshSettings
from services.user.settings import UserSettings


class MatchingSettings(BaseModel):
    """When an expense settles a bill's occurrence."""

    # rapidfuzz similarity (0-100) of the normalised payee and merchant.
    payee_similarity: int = Field(85, ge=50, le=100)
    # How far the amount may differ from the bill's, in percent of the bill's.
    amount_tolerance_percent: Decimal = Field(Decimal("10"), ge=0, le=100)
    # Days before or after the due date a payment may fall.
    window_days: int = Field(5, ge=0, le=31)


class SubscriptionSettings(BaseModel):
    """Detecting recurring charges in a user's history."""

    min_occurrences: int = Field(3, ge=2, le=24)
    # How far a charge may stray from the series' median amount, in percent.
    amount_tolerance_percent: Decimal = Field(Decimal("7.5"), ge=0, le=50)
    # History looked at (three years: a yearly charge needs three occurrences).
    lookback_days: int = Field(1100, ge=60, le=4000)
    # A known subscription's charge this much above its amount raises price_increase.
    price_increase_min_percent: Decimal = Field(Decimal("1"), ge=0, le=100)


class AlertRules(BaseModel):
    """The rules' parameters. Severity per rule type: info, warning or critical."""

    severity: dict[str, str] = {
        "budget_threshold": "warning",
        "projected_overspend": "warning",
        "large_expense": "info",
        "duplicate_charge": "warning",
        "bill_due": "info",
        "bill_overdue": "critical",
        "price_increase": "info",
    }
    # budget_threshold at or above this percentage is critical instead.
    critical_threshold_percent: int = Field(100, ge=1, le=1000)
    # large_expense: above multiplier x the median of the category's last expenses...
    large_expense_median_multiplier: Decimal = Field(Decimal("3"), gt=1)
    # ... once the category has at least this many (of the last large_expense_history).
    large_expense_min_history: int = Field(5, ge=1)
    large_expense_history: int = Field(100, ge=5, le=1000)
    # ... or above an absolute amount (major units) in its currency.
    large_expense_absolute: dict[str, Decimal] = {}
    # duplicate_charge: same merchant and amount within this many days.
    duplicate_window_days: int = Field(1, ge=0, le=7)
    # projected_overspend: not before this many days of the period have passed (a
    # projection from one day's spending is noise).
    projected_min_elapsed_days: int = Field(5, ge=1)
    # bill_overdue: days after the due date before an unsettled occurrence is overdue.
    overdue_grace_days: int = Field(1, ge=0, le=31)
    # Occurrences the scheduler looks back at for overdue and catch-up.
    overdue_lookback_days: int = Field(60, ge=1, le=400)


class SchedulerSettings(BaseModel):
    """The time-based rules' loop; one replica at a time holds its lease."""

    interval_seconds: float = Field(60.0, gt=0)
    lease_seconds: float = Field(180.0, gt=0)


class BillingSettings(BaseModel):
    """Billing: limits, defaults, matching and alert rules."""

    max_budgets: int = Field(100, ge=1, le=1000)
    max_bills: int = Field(200, ge=1, le=2000)
    default_thresholds: list[int] = [80, 100]
    max_thresholds: int = Field(5, ge=1, le=20)
    max_amount: Decimal = Field(Decimal("10000000000"), gt=0)
    max_payee_length: int = Field(200, ge=1, le=2000)
    default_page_size: int = Field(50, ge=1)
    max_page_size: int = Field(200, ge=1, le=1000)
    history_default_periods: int = Field(12, ge=1)
    history_max_periods: int = Field(120, ge=1, le=1000)
    # Read-your-writes: how long a read with a ledger write's consistency token waits for
    # the write's event to reach this service's copy, and how often it looks.
    consistency_wait_seconds: float = Field(2.0, gt=0, le=30)
    consistency_poll_seconds: float = Field(0.01, gt=0, le=1)
    # ListBillOccurrences' default window around today, in days each way.
    occurrence_window_days: int = Field(90, ge=1, le=3660)
    max_remind_days_before: int = Field(60, ge=0, le=365)
    # Redis lifetime of a cached budget status (changes invalidate it sooner); it also
    # bounds how late a status notices the user's day (and so its period) has changed.
    status_cache_seconds: float = Field(60.0, gt=0, le=3600)
    matching: MatchingSettings = MatchingSettings()
    subscriptions: SubscriptionSettings = SubscriptionSettings()
    alerts: AlertRules = AlertRules()
    scheduler: SchedulerSettings = SchedulerSettings()


class BillingMeshSettings(MeshSettings):
    """What the billing service reads: the kit's settings, its own section and the user's."""

    billing: BillingSettings = BillingSettings()
    user: UserSettings = UserSettings()
