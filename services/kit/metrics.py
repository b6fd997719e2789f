"""The kit's Prometheus metrics (prometheus-client), defined here once for every service.

One process serves one service, so the metrics live in prometheus-client's default
registry; `serve()` exposes it on the service's metrics port ([metrics] in
config/mesh.toml) from a daemon thread, idle between scrapes. Labels are bounded: gRPC
methods a server registered, consumer and peer names from the code, alert types from
config; never a user, an id or an error text.

Counters are bumped where things happen (interceptor, consumer, cache, billing rules);
gauges whose value costs a query (outbox backlog, consumer lag, pool use) are set by a
`Sampler` every [metrics] sample_interval_seconds, and breaker transitions are read from
services/kit/grpc/breakers.py at scrape time. With [metrics] enabled = false nothing is
served, sampled or recorded per call."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TypeVar
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from services.kit.grpc import breakers

log = logging.getLogger(__name__)
K = TypeVar("K")
V = TypeVar("V")

# Buckets from 1 ms to 10 s: a cached read takes ~1 ms, a create ~10 ms, a deadline 5 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Event lag: the bench's p99 is ~100 ms; minutes mean a consumer is stuck or catching up.
LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

GRPC_HANDLED = Counter(
    "em_grpc_server_handled",
    "gRPC calls a server finished, by method and status code.",
    ["grpc_service", "grpc_method", "grpc_type", "grpc_code"],
)
GRPC_SECONDS = Histogram(
    "em_grpc_server_handling_seconds",
    "Time a server took to finish a gRPC call (a stream: its whole life).",
    ["grpc_service", "grpc_method", "grpc_type"],
    buckets=LATENCY_BUCKETS,
)
DB_POOL_CONNECTIONS = Gauge(
    "em_db_pool_connections",
    "Database connections of a pool (write: SQLAlchemy's; read: psycopg's), by state.",
    ["service", "pool", "state"],
)
OUTBOX_BACKLOG = Gauge("em_outbox_backlog", "Outbox rows not marked published yet.", ["producer"])
OUTBOX_OLDEST_SECONDS = Gauge(
    "em_outbox_oldest_unpublished_seconds",
    "Age of the oldest outbox row not marked published (0: none).",
    ["producer"],
)
OUTBOX_PUBLISHED = Counter("em_outbox_published", "Events the outbox relay published.", ["producer"])
CONSUMER_PENDING = Gauge(
    "em_consumer_pending", "Events in the stream this consumer has not been delivered yet.", ["consumer"]
)
CONSUMER_ACK_PENDING = Gauge(
    "em_consumer_ack_pending", "Events delivered to this consumer and not acknowledged yet.", ["consumer"]
)
CONSUMER_APPLIED = Counter("em_consumer_events_applied", "Events a consumer applied and acked.", ["consumer"])
CONSUMER_REDELIVERIES = Counter(
    "em_consumer_redeliveries", "Deliveries of an event this consumer had had before.", ["consumer"]
)
CONSUMER_DEAD_LETTERS = Counter(
    "em_consumer_dead_letters", "Events a consumer dead-lettered (never applied).", ["consumer"]
)
CONSUMER_LAG_SECONDS = Histogram(
    "em_consumer_event_lag_seconds",
    "From an event's arrival in the stream to its consumer acking it.",
    ["consumer"],
    buckets=LAG_BUCKETS,
)
CACHE_REQUESTS = Counter("em_cache_requests", "Cache reads, by result (hit or miss).", ["cache", "result"])


class BreakerCollector(Collector):
    """Breaker transitions and states, read from breakers.py's own bookkeeping at scrape
    time (it runs in the scrape thread: the dicts are copied before iterating)."""

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        transitions = CounterMetricFamily(
            "em_circuit_breaker_transitions",
            "Times a peer's circuit breaker entered a state.",
            labels=["peer", "state"],
        )
        for (peer, state), count in _copied(breakers.TRANSITIONS):
            transitions.add_metric([peer, state], count)
        yield transitions
        open_now = GaugeMetricFamily(
            "em_circuit_breaker_open", "1 while a peer's circuit breaker is open.", labels=["peer"]
        )
        for (peer, _), breaker in _copied(breakers._BREAKERS):
            open_now.add_metric([peer], 1.0 if breaker.state == "opened" else 0.0)
        yield open_now


def _copied(mapping: Mapping[K, V]) -> list[tuple[K, V]]:
    # The event loop may add an entry while the scrape thread reads: retry the copy.
    for _ in range(3):
        try:
            return list(mapping.items())
        except RuntimeError:
            continue
    return []


REGISTRY.register(BreakerCollector())

Sample = Callable[[], Awaitable[None]]


class Sampler:
    """Sets the gauges that cost a query, every `interval` seconds, in the event loop."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.samples: list[Sample] = []

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)

    async def run(self) -> None:
        while True:
            for sample in self.samples:
                try:
                    await sample()
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    # A gauge left stale beats a service stopped over a metric.
                    log.debug("metrics sample failed", extra={"error": repr(error)})
            await asyncio.sleep(self.interval)


class MetricsServer:
    """GET /metrics on `host:port`, from prometheus-client's server in a daemon thread."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._server, self._thread = start_http_server(self.port, addr=self.host)
        self.port = self._server.server_port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
