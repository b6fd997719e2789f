"""Typed settings: defaults in config/mesh.toml, overridden by an optional
config file (EM_CONFIG_FILE) and by environment variables.

MeshSettings holds what the kit and the launcher read. A service adds its own
section by subclassing it in services/<name>/settings.py (e.g. `ledger: LedgerSettings`),
so its table of the same files and its EM_<NAME>__* variables are validated with the rest."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from services.kit.config.secrets import MIN_KEY_LENGTH

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_CONFIG_FILE = REPO_ROOT / "config" / "mesh.toml"
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
# scheme://host[:port], as browsers send it in `Origin` (no path, no trailing slash).
Origin = Annotated[str, StringConstraints(pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")]
# How long the JetStream stream keeps events (services/kit/events/bus.py).
EVENT_STREAM_MAX_AGE = timedelta(days=7)
# nats-server parses a `$VARIABLE` of its config as a config value ("12345" is a number,
# "a-b" fails on 2.9), so a NATS password is a letter, then 31 or more letters and digits.
NATS_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9]{31,}$")


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
    # Service and operator tokens (services/kit/identity/service_tokens.py): their own
    # audience and type, so a user token never opens a mesh-internal method nor the reverse.
    service_audience: str = "expense-mesh-internal"
    service_token_ttl_seconds: int = Field(300, ge=30, le=3600)
    operator_token_ttl_seconds: int = Field(900, ge=30, le=3600)


class RateLimit(BaseModel):
    """`requests` per `per`, all of them usable at once: Envoy's token bucket refills
    them every period, Kong counts them in fixed windows of the period."""

    requests: int = Field(ge=1)
    per: Literal["second", "minute", "hour"] = "second"

    @property
    def seconds(self) -> int:
        return {"second": 1, "minute": 60, "hour": 3600}[self.per]


class GatewayLimits(BaseModel):
    """Requests per client at the gateways: per user when a valid access token came with
    the request, else per client IP. Over a limit: 429 with Retry-After."""

    per_user: RateLimit = RateLimit(requests=50)
    per_ip: RateLimit = RateLimit(requests=20)
    # The RPCs of mesh.password_methods (each costs an argon2 hash), per user or IP alike.
    password_routes: RateLimit = RateLimit(requests=30, per="minute")
    # Clients Envoy keeps a bucket for; beyond, the least recently seen is forgotten.
    tracked_clients: int = Field(100_000, ge=1)


class Limits(BaseModel):
    default_deadline_seconds: float = 5.0
    max_message_bytes: int = 1 << 20
    gateway_max_body_bytes: int = 1 << 20
    # Longer URLs get 414 and larger request headers (the URL included) 431 at the gateway:
    # the services' gRPC metadata limit (max_metadata_bytes) must hold both plus Envoy's own.
    gateway_max_url_bytes: int = Field(4096, ge=256)
    gateway_max_request_headers_kib: int = Field(8, ge=1, le=64)
    # JSON bodies nested deeper are refused (400) by the gateway's strict-input check.
    gateway_max_json_depth: int = Field(32, ge=4, le=128)
    # A download (a streamed CSV export) may take this long at the gateway.
    gateway_download_timeout_seconds: float = Field(300.0, gt=0)
    max_metadata_bytes: int = Field(32768, ge=8192)
    gateway: GatewayLimits = GatewayLimits()


class CorsSettings(BaseModel):
    """Browser origins the gateway answers (CORS); every other origin's preflight is refused."""

    allowed_origins: list[Origin] = []
    # The dashboard's own origin, when it is served from elsewhere than the gateway.
    dashboard_origin: Origin | None = None

    @property
    def origins(self) -> list[str]:
        extra = [self.dashboard_origin] if self.dashboard_origin else []
        return list(dict.fromkeys([*self.allowed_origins, *extra]))


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


class SupervisionSettings(BaseModel):
    """How `up` restarts a child that exits (services/launcher/supervisor.py)."""

    # Restarts in a row, each after a run shorter than healthy_after_seconds; one more
    # exit and the child is given up on (reported; the rest of the mesh keeps running).
    max_restarts: int = Field(5, ge=0)
    # The first restart waits backoff_initial_seconds, each next one twice as long, at
    # most backoff_max_seconds.
    backoff_initial_seconds: float = Field(0.5, gt=0)
    backoff_max_seconds: float = Field(10.0, gt=0)
    # A run this long counts as healthy: the next exit starts the back-off over.
    healthy_after_seconds: float = Field(30.0, gt=0)


class BreakerSettings(BaseModel):
    """One circuit breaker per peer a service calls (services/kit/grpc/breakers.py)."""

    # Calls failed in a row (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, UNKNOWN) that open it.
    failure_threshold: int = Field(5, ge=1)
    # Open: calls fail at once (to their fallback). Then the next calls try (half-open):
    # a success closes it, a failure opens it again.
    open_seconds: float = Field(5.0, gt=0)


class RetrySettings(BaseModel):
    """gRPC's retry policy and retry budget (retryThrottling) on every channel to a peer."""

    max_attempts: int = Field(4, ge=1, le=5)
    initial_backoff_seconds: float = Field(0.05, gt=0)
    max_backoff_seconds: float = Field(1.0, gt=0)
    backoff_multiplier: float = Field(2.0, ge=1)
    # The budget: a failed call costs a token, a success returns token_ratio of one; with
    # fewer than half of max_tokens left, nothing is retried (a down peer gets no retry storm).
    budget_max_tokens: int = Field(20, ge=1, le=1000)
    budget_token_ratio: float = Field(0.1, gt=0, le=1)


class GatewayResilience(BaseModel):
    """Envoy's circuit breakers and outlier detection on each service's cluster (the calls
    that cross the gateway): beyond these, Envoy answers 503 at once instead of queueing."""

    max_connections: int = Field(1024, ge=1)
    max_pending_requests: int = Field(1024, ge=1)
    max_requests: int = Field(1024, ge=1)
    max_retries: int = Field(3, ge=0)
    # A backend answering this many 5xx (or gateway failures: reset, refused) in a row is
    # ejected for base_ejection_seconds (longer each time), at most max_ejection_percent of
    # a cluster's backends at once.
    consecutive_5xx: int = Field(5, ge=1)
    consecutive_gateway_failure: int = Field(5, ge=1)
    interval_seconds: float = Field(5.0, gt=0)
    base_ejection_seconds: float = Field(15.0, gt=0)
    max_ejection_percent: int = Field(50, ge=0, le=100)


class ResilienceSettings(BaseModel):
    """Fail fast, degrade gracefully: calls between services (docs/ARCHITECTURE.md)."""

    breaker: BreakerSettings = BreakerSettings()
    retry: RetrySettings = RetrySettings()
    gateway: GatewayResilience = GatewayResilience()
    # Deadline of a call that has a fallback (the caller's preferences, a session check),
    # retries included: past it the caller uses the fallback, well within the client's own
    # deadline (limits.default_deadline_seconds).
    fallback_call_timeout_seconds: float = Field(2.0, gt=0)
    # How long a caller's preferences (default currency, time zone) are used without asking
    # the user service again, and how long the last answer stays a fallback while it is down.
    preferences_fresh_seconds: float = Field(5.0, ge=0)
    preferences_stale_seconds: float = Field(86400.0, ge=0)
    preferences_max_entries: int = Field(50_000, ge=1)
    # While auth does not answer session checks, a session auth confirmed active within
    # this many seconds is still accepted (logged); later, or never confirmed: UNAVAILABLE.
    # The longest a revoked session can be accepted while auth is unreachable (0: never).
    session_grace_seconds: float = Field(60.0, ge=0, le=900)


class MetricsSettings(BaseModel):
    """Prometheus metrics (services/kit/metrics.py), each service on a port of its own."""

    # Off: no metrics port, nothing recorded per call, no sampling.
    enabled: bool = True
    # A service's metrics port: its entry in `ports`, else its gRPC port + port_offset.
    port_offset: int = Field(1000, ge=1)
    ports: dict[str, int] = {}
    # How often gauges that cost a query are sampled: outbox backlog, consumer lag, pools.
    sample_interval_seconds: float = Field(5.0, gt=0)
    # In containers (compose, k8s) Envoy serves GET /stats/prometheus on this port, proxied to
    # its admin API, which stays on loopback; under `up` the admin port serves it directly.
    gateway_port: int = Field(9902, ge=1, le=65535)


class TracingSettings(BaseModel):
    """OpenTelemetry traces (services/kit/tracing.py): exported by OTLP/gRPC to otlp_endpoint
    (a collector, e.g. "http://otel-collector:4317"); empty, tracing is off and costs nothing
    (the SDK is not even imported)."""

    otlp_endpoint: str = ""
    # Fraction of traces started here (at the gateway or a service without a caller's
    # traceparent) that are recorded; a caller's sampling decision is always followed.
    sample_ratio: float = Field(1.0, ge=0.0, le=1.0)
    # Spans waiting for export, and how often they are sent (the SDK's batch processor).
    max_queue_size: int = Field(2048, ge=1)
    export_interval_seconds: float = Field(1.0, gt=0)

    @property
    def enabled(self) -> bool:
        return bool(self.otlp_endpoint)


class WebSettings(BaseModel):
    """The dashboard (services/web): a static single-page app and its session endpoint,
    served through the gateway on the API's own origin."""

    enabled: bool = True
    port: int = Field(8090, ge=1, le=65535)
    # The refresh token's cookie: HttpOnly, SameSite=Strict, and Secure unless turned off
    # (browsers treat http://127.0.0.1 and localhost as secure, so `make up` keeps it on).
    refresh_cookie_name: str = Field("em_refresh", pattern=r"^[A-Za-z0-9_-]{1,40}$")
    refresh_cookie_secure: bool = True
    # Deadline of a call to auth (log in, sign up, refresh, log out).
    auth_call_timeout_seconds: float = Field(5.0, gt=0)


class MeshLayout(BaseModel):
    # The services the launcher starts, in start order (config/mesh.toml names them).
    services: list[str] = []
    # RPCs callable without a token; everything else needs a user token, except
    # mesh-internal methods, which need a service (or operator) token.
    public_methods: list[str] = []
    # Full names of gRPC services that are mesh-internal as a whole, besides every service
    # whose name ends in "InternalService".
    internal_services: list[str] = []
    # Mesh-internal service ("pkg.Service") or method ("pkg.Service/Method") -> the mesh
    # services that may call it (operators always may); the method's entry wins. Not
    # listed: any mesh service.
    internal_callers: dict[str, list[str]] = {}
    # Mesh services a service calls with a user's token (user methods), by caller. With the
    # internal_callers above, and auth (which every service calls), it is the whole call graph:
    # k8s's NetworkPolicies admit these callers only (services/launcher/callers.py).
    peers: dict[str, list[str]] = {}
    # RPCs the gateways limit tighter (limits.gateway.password_routes).
    password_methods: list[str] = []


class MeshSettings(BaseSettings):
    """Settings shared by the launcher and every service (the kit's sections)."""

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
    # Copies of the events stream JetStream keeps: 3 on a 3-node NATS cluster (k8s prod),
    # where a node can go without losing an event; 1 on a single server.
    event_stream_replicas: int = Field(1, ge=1, le=5)
    database_url: str | None = Field(None, validation_alias=AliasChoices("EM_DATABASE_URL", "DATABASE_URL"))
    redis_url: str | None = Field(None, validation_alias=AliasChoices("EM_REDIS_URL", "REDIS_URL"))
    nats_url: str | None = Field(None, validation_alias=AliasChoices("EM_NATS_URL", "NATS_URL"))
    # Password of each NATS user (a service, or `admin`), EM_NATS_PASSWORDS__<USER>: compose
    # and k8s give each service its own. The embedded NATS generates missing ones
    # (services/kit/config/secrets.py); the server's config names the same variables.
    nats_passwords: dict[str, SecretStr] = {}
    log_level: str = "INFO"
    # Services log failed and slow calls ("errors"), every call ("all") or none ("off");
    # the gateway's access log has every request either way.
    access_log: Literal["all", "errors", "off"] = "errors"
    slow_call_ms: float = 100.0
    # Deadline of one call between services, retries of an unavailable peer included: long
    # enough to ride out a busy moment of a small machine, short beside a client's deadline.
    internal_call_timeout_seconds: float = Field(5.0, gt=0)
    # The port each service listens on, by service name (config/mesh.toml's [ports]).
    ports: dict[str, int] = {}
    jwt: JwtSettings = JwtSettings()
    limits: Limits = Limits()
    cors: CorsSettings = CorsSettings()
    outbox: OutboxSettings = OutboxSettings()
    consumers: ConsumerSettings = ConsumerSettings()
    retention: RetentionSettings = RetentionSettings()
    mesh: MeshLayout = MeshLayout()
    supervision: SupervisionSettings = SupervisionSettings()
    # This process's service credential (EM_SERVICE_CREDENTIAL, from a Secret), which auth
    # trades for short-lived service tokens. Unset: <data_dir>/keys/service-<name>.key,
    # generated on first run (the embedded default, where auth reads the same file).
    service_credential: SecretStr | None = Field(None, min_length=MIN_KEY_LENGTH)
    resilience: ResilienceSettings = ResilienceSettings()
    metrics: MetricsSettings = MetricsSettings()
    tracing: TracingSettings = TracingSettings()

    web: WebSettings = WebSettings()
    # Where the other services reach a service when not at `host`: compose and k8s set
    # EM_SERVICE_HOSTS__AUTH=auth (the container / Service DNS name) and so on.
    service_hosts: dict[str, str] = {}

    @field_validator("nats_passwords")
    @classmethod
    def _nats_passwords_parse(cls, passwords: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for user, password in passwords.items():
            if not NATS_PASSWORD.match(password.get_secret_value()):
                raise ValueError(
                    f"the NATS password of {user!r} must be a letter then 31 or more letters and digits "
                    "(nats-server reads it as a config value)"
                )
        return passwords

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

    def service_credential_file(self, service: str) -> Path:
        return self.keys_dir / f"service-{service}.key"

    def service_port(self, service: str) -> int:
        try:
            return self.ports[service]
        except KeyError:
            raise ValueError(
                f"no port for service {service!r}: add it to [ports] in config/mesh.toml"
            ) from None

    def metrics_port(self, service: str) -> int:
        """Where a service serves its Prometheus metrics (GET /metrics)."""
        explicit = self.metrics.ports.get(service)
        return explicit if explicit is not None else self.service_port(service) + self.metrics.port_offset

    @property
    def web_host(self) -> str:
        """Where the gateway reaches the web service (EM_SERVICE_HOSTS__WEB in containers)."""
        host = self.service_hosts.get("web", self.host)
        return "127.0.0.1" if host in WILDCARD_HOSTS else host

    def web_url(self) -> str:
        return f"http://{self.web_host}:{self.web.port}"

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
