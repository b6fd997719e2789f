"""The reporting service's settings: its [reporting] section of config/mesh.toml
(EM_REPORTING__* in the environment) beside the kit's, and the user service's section
for the preferences of users it has not heard of yet."""

from __future__ import annotations

from pydantic import BaseModel, Field

from services.kit.config.settings import MeshSettings
from services.user.settings import UserSettings


class MonthlySettings(BaseModel):
    """The monthly report: report.monthly_ready for last month, on the first day of the
    month in each user's time zone (or the next `catch_up_days` after downtime)."""

    interval_seconds: float = Field(300.0, gt=0)
    lease_seconds: float = Field(900.0, gt=0)
    catch_up_days: int = Field(3, ge=1, le=27)
    # Top-level categories listed per currency, largest first.
    top_categories: int = Field(3, ge=1, le=20)


class ReportingSettings(BaseModel):
    """Reporting: report sizes, cache lifetime and export bounds."""

    # Merchants listed per currency in a summary or category report.
    top_merchants: int = Field(5, ge=1, le=50)
    # Periods of a trend when the request does not say, and the most it may ask for.
    trend_default_count: int = Field(6, ge=1)
    trend_max_count: int = Field(36, ge=1, le=120)
    # Redis lifetime of a cached report; events for the user invalidate it sooner.
    cache_ttl_seconds: float = Field(300.0, gt=0, le=86400)
    # Rows an ExportExpenses call may return, and its size as JSON: Envoy's transcoder
    # answers 500 above its 1 MiB response buffer (the CLI export has no limit).
    export_max_rows: int = Field(20000, ge=1)
    export_max_bytes: int = Field(786_432, ge=1024)
    # Deadline of one LedgerInternalService stream during a rebuild.
    rebuild_stream_timeout_seconds: float = Field(600.0, gt=0)
    monthly: MonthlySettings = MonthlySettings()


class ReportingMeshSettings(MeshSettings):
    """What the reporting service reads: the kit's settings, its own section and the user's."""

    reporting: ReportingSettings = ReportingSettings()
    user: UserSettings = UserSettings()
