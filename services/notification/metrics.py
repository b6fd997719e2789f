"""notification's own Prometheus metrics (bounded labels: channels and statuses from
the code, never a user or an id)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DELIVERIES = Counter(
    "em_notification_deliveries",
    "Deliveries entering a status, by channel (queued, sent, delivered, failed, undelivered).",
    ["channel", "status"],
)
DEAD_LETTERS = Gauge(
    "em_notification_dead_letters", "Delivery jobs held in the dead-letter stream, waiting for an operator."
)
