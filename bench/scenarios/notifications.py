"""Notifications: alert.raised events fanned out to two channels (in-app and a signed
webhook to a receiver in this process), at a fixed rate (open loop): throughput, the
p99 from an event's publication to the webhook's arrival (the provider call), and the
delivery work queue's depth."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from itertools import count
from statistics import fmean

from aiohttp import web
from google.protobuf.any_pb2 import Any as AnyMessage

from bench.api import bearer
from bench.context import LATE_SEND_WARNING_MS, Bench, p99_at_most
from bench.load import OpenLoopReport, open_loop
from bench.stats import OK, Measurement, ScenarioResult
from expense.events.v1 import events_pb2
from services.kit.domain.ids import new_id
from services.kit.events.bus import durable_name, stream_name
from services.notification.queue import DELIVERIES

USERS = 20
ARRIVAL_TIMEOUT_SECONDS = 60.0
# After a step, how long its queues may take to empty before the next rate runs.
DRAIN_TIMEOUT_SECONDS = 120.0
DEPTH_SAMPLE_SECONDS = 0.5
# notification's durable consumer of alert.raised, and its delivery work queue.
ALERTS_CONSUMER = "notification_alerts"


class Receiver:
    """Users' webhook endpoint: notes when each alert's webhook arrived (by its merchant)."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.runner: web.AppRunner | None = None
        self.port = 0
        self._wanted: set[str] = set()
        self._all_arrived = asyncio.Event()

    async def start(self) -> None:
        app = web.Application()
        app.add_routes([web.post("/hook/{user}", self._hook)])
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        marker = body.split(b"bench-alert-", 1)[-1].split(b'"', 1)[0].split(b"\\", 1)[0].decode()
        self.arrived.setdefault(marker, time.perf_counter())
        if self._wanted and self._wanted <= self.arrived.keys():
            self._all_arrived.set()
        return web.Response(status=204)

    async def all_arrived(self, markers: set[str]) -> None:
        """Until every marker's webhook arrived (one step's markers at a time)."""
        self._wanted = markers
        self._all_arrived = asyncio.Event()
        if not markers <= self.arrived.keys():
            await self._all_arrived.wait()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def _subscribe(bench: Bench, receiver: Receiver) -> list[str]:
    """Up to USERS users with a webhook contact point and alerts on in-app and webhook."""
    client = bench.rest.get()
    user_ids = []
    # The light users (the smoke profile may seed none: then anyone seeded).
    for user in (bench.seed.of_role("light") or bench.seed.users)[:USERS]:
        headers = bearer(await bench.tokens.token(user))
        url = f"http://127.0.0.1:{receiver.port}/hook/{user.user_id}"
        response = await client.post(
            "/v1/contactPoints", content=json.dumps({"channel": "webhook", "address": url}), headers=headers
        )
        if response.status_code != 200 and "already registered" not in response.text:
            response.raise_for_status()
        rules = {"rules": [{"source": "alert.raised", "channels": ["in_app", "webhook"]}]}
        response = await client.request(
            "PATCH",
            "/v1/notificationPreferences?update_mask=rules",
            {"content-type": "application/json", **headers},
            json.dumps(rules).encode(),
        )
        response.raise_for_status()
        user_ids.append(user.user_id)
    return user_ids


def _alert(user_id: str, number: int) -> bytes:
    """An alert.raised envelope as billing publishes it (a large expense)."""
    alert = events_pb2.AlertRaised(
        alert_id=new_id(),
        type="large_expense",
        severity="info",
        title=f"Large expense at bench-alert-{number}",
        details={
            "merchant": f"bench-alert-{number}",
            "category": "Shopping",
            "amount": "150000.00",
            "typical": "2000.00",
            "currency": "INR",
        },
    )
    payload = AnyMessage()
    payload.Pack(alert)
    envelope = events_pb2.EventEnvelope(
        event_id=new_id(), type="alert.raised", user_id=user_id, producer="billing", payload=payload
    )
    return envelope.SerializeToString()


async def notification_fanout(bench: Bench) -> None:
    receiver = Receiver()
    await receiver.start()
    try:
        user_ids = await _subscribe(bench, receiver)
        numbers = count()
        for rate in bench.profile.notification_rates:
            if not await _fanout(bench, receiver, user_ids, rate, numbers):
                # The next rate would measure this one's backlog, not its own.
                skipped = f"bench | notification fan-out: {rate:g}/s did not drain; the higher rates skipped"
                print(skipped, flush=True)
                break
    finally:
        await receiver.stop()


class DepthSampler:
    """Samples, every DEPTH_SAMPLE_SECONDS, the two queues an alert waits in: the alert
    consumer's pending events (JetStream num_pending + num_ack_pending) and the delivery
    work queue's jobs (its WorkQueue stream holds exactly the jobs not yet acked)."""

    def __init__(self, bench: Bench) -> None:
        prefix = bench.mesh.event_prefix
        self.js = bench.nats.jetstream()
        self.events_stream = stream_name(prefix)
        self.alerts_durable = durable_name(prefix, ALERTS_CONSUMER)
        self.work_stream = DELIVERIES.stream(prefix)
        self.consumer_depths: list[int] = []
        self.work_depths: list[int] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                info = await self.js.consumer_info(self.events_stream, self.alerts_durable)
                self.consumer_depths.append((info.num_pending or 0) + (info.num_ack_pending or 0))
            with contextlib.suppress(Exception):
                self.work_depths.append((await self.js.stream_info(self.work_stream)).state.messages)
            await asyncio.sleep(DEPTH_SAMPLE_SECONDS)

    def __enter__(self) -> DepthSampler:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()

    async def drained(self) -> bool:
        """Until both queues are empty (True), or DRAIN_TIMEOUT_SECONDS passed (False)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_TIMEOUT_SECONDS):
                while True:
                    info = await self.js.consumer_info(self.events_stream, self.alerts_durable)
                    jobs = (await self.js.stream_info(self.work_stream)).state.messages
                    if not (info.num_pending or info.num_ack_pending or jobs):
                        return True
                    await asyncio.sleep(DEPTH_SAMPLE_SECONDS)
        return False

    def summary(self) -> dict[str, float]:
        return {
            "max_consumer_pending": max(self.consumer_depths, default=0),
            "mean_consumer_pending": round(fmean(self.consumer_depths), 1) if self.consumer_depths else 0.0,
            "max_queue_depth": max(self.work_depths, default=0),
            "mean_queue_depth": round(fmean(self.work_depths), 1) if self.work_depths else 0.0,
        }


async def _fanout(bench: Bench, receiver: Receiver, user_ids: list[str], rate: float, numbers: count) -> bool:
    """One open-loop step at `rate` alerts/s, then until every webhook arrived (bounded);
    CPU is measured over both. False when its queues did not drain afterwards."""
    js = bench.nats.jetstream()
    subject = f"{bench.mesh.event_prefix}.events.alert.raised"
    published: dict[str, float] = {}

    async def publish() -> str:
        number = next(numbers)
        data = _alert(user_ids[number % len(user_ids)], number)
        published[str(number)] = time.perf_counter()
        await js.publish(subject, data, headers={"Nats-Msg-Id": f"{bench.nonce}-alert-{number}"})
        return OK

    seconds = bench.profile.notification_seconds
    variant = f"alert.raised → webhook call, {rate:g}/s, 2 channels"
    started = time.perf_counter()
    with DepthSampler(bench) as depths:
        async with bench.measuring(
            "notification fan-out", variant, seconds + ARRIVAL_TIMEOUT_SECONDS
        ) as usage:
            sent = await open_loop(publish, rate, seconds)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ARRIVAL_TIMEOUT_SECONDS):
                    await receiver.all_arrived(set(published))
            window = time.perf_counter() - started
        drained = await depths.drained()
    _record_publishing(bench, rate, sent)
    arrivals = [receiver.arrived[number] for number in published if number in receiver.arrived]
    measurement = Measurement(seconds=window)
    for number, at in published.items():
        if number in receiver.arrived:
            measurement.add((receiver.arrived[number] - at) * 1000, OK)
        else:
            measurement.outcomes["no webhook"] += 1
    row = ScenarioResult.from_measurement(
        "notification fan-out", variant, f"open-loop nats-py, {rate:g}/s", measurement, unit="alerts/s"
    )
    # The row's throughput: alerts published over the whole window (publishing and
    # draining), and its CPU per request: the mesh's CPU over that window per alert.
    row.extra.update(
        rate=rate,
        published=len(published),
        webhooks=len(arrivals),
        # Alerts (each 2 deliveries) done per second, from the first publication to the
        # last webhook: below the offered rate when the mesh cannot keep up.
        sustained_alerts_per_second=round(len(arrivals) / (max(arrivals) - started), 1) if arrivals else 0.0,
        drain_seconds=round(max(arrivals, default=started) - started - sent.seconds, 2),
        drained=drained,
        users=len(user_ids),
        **depths.summary(),
    )
    row.notes.append(
        "from the event's publication on NATS to its webhook's arrival (consumer → notification "
        "rows → work queue → templating Render → signed POST); in-app is the second channel"
    )
    judged = rate <= bench.targets.notification_fanout_judged_rate
    target = p99_at_most(bench.targets.notification_fanout_max_p99_ms) if judged else None
    bench.record(row, target, usage)
    return drained


def _record_publishing(bench: Bench, rate: float, sent: OpenLoopReport) -> None:
    """The publishing itself (JetStream's acks): whether the generator kept its schedule."""
    row = ScenarioResult.from_measurement(
        "notification fan-out (publish)",
        f"NATS {rate:g}/s",
        f"open-loop nats-py, {rate:g}/s",
        sent,
        path="NATS",
    )
    row.extra.update(rate=rate, max_send_delay_ms=round(sent.max_send_delay_ms, 2))
    if sent.max_send_delay_ms > LATE_SEND_WARNING_MS:
        row.notes.append(f"generator fell behind its schedule by up to {sent.max_send_delay_ms:.1f} ms")
    bench.record(row)
