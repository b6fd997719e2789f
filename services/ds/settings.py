"""The ds service's settings: its [ds] section of config/mesh.toml (EM_DS__* in the
environment) beside the kit's, and the user service's section for the calendar of users
it has not heard of yet. Parser templates and merchant rules are files named here."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, Field

from services.kit.config.settings import MeshSettings
from services.user.settings import UserSettings


class InsightSettings(BaseModel):
    """The insight rules' parameters (services/ds/insights.py)."""

    # Past periods an anomaly or a trend compares with.
    history_periods: int = Field(6, ge=3, le=36)
    # Past periods a trend's median takes.
    trend_periods: int = Field(3, ge=2, le=12)
    # A category is anomalous above this robust z-score (Iglewicz-Hoaglin: 3.5).
    anomaly_z: Decimal = Field(Decimal("3.5"), gt=0)
    # ... and at least this many past periods with spending.
    anomaly_min_history: int = Field(3, ge=2)
    # A trend is reported from this change (percent of the median) on.
    trend_min_percent: Decimal = Field(Decimal("20"), ge=0)
    # The projection's daily rate: the median day of the last this many days.
    projection_lookback_days: int = Field(90, ge=14, le=400)
    # Biggest changes listed.
    biggest_changes: int = Field(3, ge=0, le=20)
    # Subscriptions: a series first charged within this many days is "new"; one whose
    # latest charge (within it) raised the price has "grown". Three monthly charges span 60+.
    subscription_recent_days: int = Field(100, ge=1, le=400)
    subscription_lookback_days: int = Field(400, ge=60, le=1100)
    # A merchant charged more often than this in the lookback is no subscription.
    subscription_max_charges: int = Field(60, ge=3)


class DigestSettings(BaseModel):
    """The weekly insight.digest event (services/ds/digest.py)."""

    enabled: bool = True
    # How often a round looks for users whose week has no digest yet.
    interval_seconds: float = Field(3600.0, gt=0)
    # Users with spending in this many days get one.
    active_days: int = Field(7, ge=1, le=90)


class DsSettings(BaseModel):
    """SMS parsing and ingest, and insights."""

    parsers_dir: str = "config/sms_parsers"
    merchant_rules_file: str = "config/ds/merchant_categories.toml"
    # Messages per parse or ingest call.
    max_messages: int = Field(500, ge=1, le=5000)
    # Transactions of one ingest call worked at once (each may call the ledger).
    ingest_concurrency: int = Field(8, ge=1, le=64)
    # A TRANSACTION debit is booked without review from this confidence on.
    auto_book_confidence: Decimal = Field(Decimal("0.9"), ge=0, le=1)
    # rapidfuzz partial-ratio score (0-100) from which a merchant matches a rule's keyword.
    fuzzy_min_score: int = Field(90, ge=50, le=100)
    # A refund links to an expense at the same merchant at most this many days older.
    refund_window_days: int = Field(120, ge=1, le=800)
    default_page_size: int = Field(50, ge=1)
    max_page_size: int = Field(200, ge=1, le=1000)
    # Read-your-writes: how long a read with a ledger write's consistency token waits for
    # the write's event to reach this service's copy, and how often it looks.
    consistency_wait_seconds: float = Field(2.0, gt=0, le=30)
    consistency_poll_seconds: float = Field(0.01, gt=0, le=1)
    insights: InsightSettings = InsightSettings()
    digest: DigestSettings = DigestSettings()


class DsMeshSettings(MeshSettings):
    """What the ds service reads: the kit's settings, its own section and the user's."""

    ds: DsSettings = DsSettings()
    user: UserSettings = UserSettings()
