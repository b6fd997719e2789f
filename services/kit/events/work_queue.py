"""A service's own JetStream work queue (WorkQueue retention: a job stays until a
worker acks it, and each job goes to one worker) and, beside it, a stream of the
jobs that failed too often (its dead letters, kept for operators to inspect and
replay). Names and subjects derive from the service and the queue's name; NATS
permits each service only its own queues (events/permissions.py)."""

from __future__ import annotations

from dataclasses import dataclass

from services.kit.events.bus import durable_name


@dataclass(frozen=True)
class WorkQueue:
    service: str
    name: str

    def stream(self, prefix: str) -> str:
        return f"{prefix.upper()}_{self.service.upper()}_{self.name.upper()}"

    def dead_stream(self, prefix: str) -> str:
        return f"{self.stream(prefix)}_DEAD"

    def subject(self, prefix: str, key: str) -> str:
        return f"{prefix}.work.{self.service}.{self.name}.{key}"

    def subjects(self, prefix: str) -> str:
        return f"{prefix}.work.{self.service}.{self.name}.>"

    def dead_subject(self, prefix: str, key: str) -> str:
        return f"{prefix}.workdead.{self.service}.{self.name}.{key}"

    def dead_subjects(self, prefix: str) -> str:
        return f"{prefix}.workdead.{self.service}.{self.name}.>"

    def durable(self, prefix: str) -> str:
        return durable_name(prefix, f"{self.service}_{self.name}")
