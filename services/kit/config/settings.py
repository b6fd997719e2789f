"""Typed settings: defaults in config/mesh.toml, overridden by an optional
config file (EM_CONFIG_FILE) and by environment variables."""

from __future__ import annotations

import os
from datetime import timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, BaseModel, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_CONFIG_FILE = REPO_ROOT / "config" / "mesh.toml"
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
# How long the JetStream stream keeps events (services/kit/events/bus.py).
EVENT_STREAM_MAX_AGE = timedelta(days=7)


class Ports(BaseModel):
    auth: int = 50051
    user: int = 50052
    ledger: int = 50053
    reporting: int = 50054
    echo: int = 50099


class JwtSettings(BaseModel):
    issuer: str = "expense-mesh-auth"
    audience: str = "expense-mesh"
    access_ttl_seconds: int = Field(900, ge=60, le=3600)
    refresh_ttl_days: int = Field(30, ge=1, le=365)
    session_check_cache_seconds: float = Field(0.5, ge=0, le=1)
    # How long a session check is trusted while auth's revocation broadcasts are heard.
    session_cache_seconds_with_push: float = Field(30.0, ge=0, le=300)
    # Auth's heartbeat on that broadcast; three missed: back to session_check_cache_seconds.
    session_push_heartbeat_seconds: float = Field(0.5, gt=0, le=10)


class Limits(BaseModel):
    default_deadline_seconds: float = 5.0
    max_message_bytes: int = 1 << 20
    gateway_max_body_bytes: int = 1 << 20
    gateway_rate_limit_per_second: int = 2000


class AuthSettings(BaseModel):
    """Auth service policy: password hashing cost and strength, login throttling."""

    # argon2id; the OWASP minimum (t=2, 19 MiB, p=1) is the floor.
    argon2_time_cost: int = Field(2, ge=2)
    argon2_memory_kib: int = Field(19456, ge=19456)
    argon2_parallelism: int = Field(1, ge=1)
    # Hashes computed at once; each holds argon2_memory_kib of RAM, so this caps memory.
    password_hash_concurrency: int = Field(4, ge=1, le=64)
    # Hashes allowed to wait for a slot; more are refused with RESOURCE_EXHAUSTED.
    password_hash_queue: int = Field(64, ge=0)
    # zxcvbn score (0-4) a new password must reach.
    password_min_score: int = Field(2, ge=0, le=4)
    # Failed logins per (email, client IP) within the window, then RESOURCE_EXHAUSTED.
    login_failures_per_account_ip: int = Field(10, ge=1)
    login_failure_window_seconds: int = Field(900, ge=1)
    # Password attempts (logins, password changes) per client IP within the window.
    login_attempts_per_ip: int = Field(30, ge=1)
    login_ip_window_seconds: int = Field(60, ge=1)
    # Redis TTL of a CheckSession answer; revoking a session overwrites it at once.
    session_cache_seconds: float = Field(5.0, gt=0, le=60)


class OutboxSettings(BaseModel):
    poll_interval_seconds: float = 1.0
    # Unpublished rows older than this are the poll's; younger ones are being published
    # straight from memory by the process that committed them.
    stale_after_seconds: float = 5.0
    # Published rows are marked so in one UPDATE at most this often (below stale_after_seconds).
    mark_interval_seconds: float = Field(0.5, gt=0)
    replay_window_hours: int = 72
    batch_size: int = 200

    @property
    def replay_window(self) -> timedelta:
        return timedelta(hours=self.replay_window_hours)


class RetentionSettings(BaseModel):
    """Rows kept only for a while (services/kit/db/retention.py)."""

    # What each consumer has applied: must outlast every way an event can come again
    # (the stream keeps events EVENT_STREAM_MAX_AGE; the outbox replays replay_window_hours).
    inbox_hours: int = Field(192, gt=0)
    # A retried request id gets the first call's answer for this long (AIP-155).
    idempotency_hours: int = Field(168, gt=0)
    purge_interval_minutes: float = Field(10.0, gt=0)
    # Rows deleted per transaction at most.
    purge_chunk_rows: int = Field(5000, ge=1)

    @property
    def inbox_window(self) -> timedelta:
        return timedelta(hours=self.inbox_hours)

    @property
    def idempotency_window(self) -> timedelta:
        return timedelta(hours=self.idempotency_hours)


class ConsumerSettings(BaseModel):
    """JetStream consumers (services/kit/events/consumer.py)."""

    # Events fetched and applied in one transaction at most.
    batch_size: int = Field(100, ge=1, le=1000)
    # After a fetch short of batch_size, wait this long for more before applying:
    # fewer, fuller batches (less CPU per event) for at most this much more lag.
    linger_ms: float = Field(60.0, ge=0, le=1000)


class ProfileDefaults(BaseModel):
    """Preferences a new user starts with (validated by the user service at start)."""

    default_currency: str = "INR"
    time_zone: str = "UTC"
    locale: str = "en"
    first_day_of_week: str = "monday"
    notification_channels: list[str] = ["email"]
    sms_auto_import: bool = False


class GroupCommitSettings(BaseModel):
    """Writes of concurrent calls committed together (services/kit/db/group_commit.py)."""

    # Calls written by one transaction at most.
    max_batch_size: int = Field(100, ge=1, le=1000)
    # Batches in flight: 2 builds the next batch during a commit's fsync (for slow disks);
    # 1 makes batches larger, which costs less CPU per call when the CPU is the limit.
    max_concurrent_batches: int = Field(1, ge=1, le=16)
    # Under load (a batch starting as the previous one ends), wait this long before
    # taking the waiting calls: fuller batches, less CPU per call. Never when idle.
    linger_ms: float = Field(0.0, ge=0, le=100)


class UserSettings(BaseModel):
    # The notification channels a profile may choose from.
    notification_channels: list[str] = ["email", "sms", "whatsapp", "push"]
    defaults: ProfileDefaults = ProfileDefaults()


class LedgerSettings(BaseModel):
    """Ledger limits: every list, text and batch a client sends is bounded."""

    # Largest amount of one expense, in major units of its currency.
    max_amount: Decimal = Field(Decimal("10000000000"), gt=0, le=Decimal("100000000000000"))
    # How far after today (UTC) spent_on may lie.
    max_future_days: int = Field(366, ge=0)
    max_tags: int = Field(10, ge=0, le=100)
    max_tag_length: int = Field(32, ge=1, le=200)
    max_merchant_length: int = Field(200, ge=1, le=2000)
    max_note_length: int = Field(1000, ge=1, le=20000)
    max_query_length: int = Field(100, ge=1, le=1000)
    default_page_size: int = Field(50, ge=1)
    max_page_size: int = Field(500, ge=1, le=5000)
    # total_size counts at most this many matching rows (the count's cost is bounded too).
    max_counted_rows: int = Field(1000, ge=1)
    max_import_rows: int = Field(1000, ge=1, le=10000)
    max_categories: int = Field(200, ge=1, le=10000)
    max_category_depth: int = Field(3, ge=1, le=10)
    max_category_name_length: int = Field(60, ge=1, le=200)
    # Rows per message of the internal streams used by rebuilds.
    stream_batch_size: int = Field(500, ge=1, le=5000)
    # CreateExpense calls arriving together share one transaction.
    create_batching: GroupCommitSettings = GroupCommitSettings()
    # The categories every user starts with (a data file, relative to the repo root).
    default_categories_file: Path = Path("config/default_categories.toml")


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


class MeshLayout(BaseModel):
    services: list[str] = ["auth", "user", "ledger", "reporting"]
    public_methods: list[str] = []


class MeshSettings(BaseSettings):
    """Settings shared by the launcher and every service."""

    model_config = SettingsConfigDict(
        env_prefix="EM_", env_nested_delimiter="__", extra="ignore", populate_by_name=True
    )
    config_file: ClassVar[Path | None] = None

    data_dir: Path = Path(".expense-mesh")
    host: str = "127.0.0.1"
    gateway_port: int = 8080
    # Envoy's worker threads under `up`, where it shares the machine with every service:
    # by default half the cores. (Its own container or pod sizes it by its CPU limit.)
    gateway_workers: int | None = Field(None, ge=1)
    envoy_admin_port: int = 9901
    embedded_nats_port: int = 4250
    event_prefix: str = Field("em", pattern=r"^[a-z][a-z0-9_]{0,30}$")
    database_url: str | None = Field(None, validation_alias=AliasChoices("EM_DATABASE_URL", "DATABASE_URL"))
    redis_url: str | None = Field(None, validation_alias=AliasChoices("EM_REDIS_URL", "REDIS_URL"))
    nats_url: str | None = Field(None, validation_alias=AliasChoices("EM_NATS_URL", "NATS_URL"))
    log_level: str = "INFO"
    # Services log failed and slow calls ("errors"), every call ("all") or none ("off");
    # the gateway's access log has every request either way.
    access_log: Literal["all", "errors", "off"] = "errors"
    slow_call_ms: float = 100.0
    # Deadline of one call between services, retries of an unavailable peer included: long
    # enough to ride out a busy moment of a small machine, short beside a client's deadline.
    internal_call_timeout_seconds: float = Field(5.0, gt=0)
    ports: Ports = Ports()
    jwt: JwtSettings = JwtSettings()
    auth: AuthSettings = AuthSettings()
    limits: Limits = Limits()
    outbox: OutboxSettings = OutboxSettings()
    consumers: ConsumerSettings = ConsumerSettings()
    retention: RetentionSettings = RetentionSettings()
    mesh: MeshLayout = MeshLayout()
    user: UserSettings = UserSettings()
    ledger: LedgerSettings = LedgerSettings()
    reporting: ReportingSettings = ReportingSettings()
    # Where the other services reach a service when not at `host`: compose and k8s set
    # EM_SERVICE_HOSTS__AUTH=auth (the container / Service DNS name) and so on.
    service_hosts: dict[str, str] = {}

    @model_validator(mode="after")
    def _inbox_outlasts_redeliveries(self) -> MeshSettings:
        redelivered_for = max(EVENT_STREAM_MAX_AGE, self.outbox.replay_window)
        if self.retention.inbox_window <= redelivered_for:
            raise ValueError(
                f"retention.inbox_hours must exceed {redelivered_for.total_seconds() / 3600:.0f} "
                "(how long an event can be delivered again): a consumer would apply it twice"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        files = [DEFAULT_CONFIG_FILE]
        extra = os.environ.get("EM_CONFIG_FILE")
        if extra:
            files.append(Path(extra))
        # Later files win; the environment wins over every file.
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=files, deep_merge=True),
        )

    @property
    def resolved_nats_url(self) -> str:
        return self.nats_url or f"nats://{self.host}:{self.embedded_nats_port}"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    def service_port(self, service: str) -> int:
        return int(getattr(self.ports, service))

    def service_address(self, service: str) -> str:
        """Where to connect to a service (not where it binds: that is `host`)."""
        host = self.service_hosts.get(service, self.host)
        # A wildcard bind address (EM_HOST=0.0.0.0) is nowhere to connect to.
        if host in WILDCARD_HOSTS:
            host = "127.0.0.1"
        return f"{host}:{self.service_port(service)}"

    def database_url_for(self, service: str) -> str:
        """Each service owns its data: a SQLite file of its own by default, or a
        PostgreSQL schema of its own (named after the service) in DATABASE_URL."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / f'{service}.sqlite3').resolve()}"


@lru_cache(maxsize=1)
def load_settings() -> MeshSettings:
    return MeshSettings()


def settings_dump(settings: MeshSettings) -> dict[str, Any]:
    return settings.model_dump(mode="json")
