"""NATS requires credentials and lets each service publish only its own event types
(issue 21, item 1), and consumers refuse an envelope whose producer is not its type's.

Against a real nats-server (the wheel's, 2.15) given the launcher's authorization config,
and against whole meshes: the embedded NATS of `up`, and the machine's nats-server with
the same config (tests/mesh.py), where a forged expense never reaches the victim's report."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError

from expense.events.v1 import events_pb2
from services.kit.config.settings import load_settings
from services.kit.domain.ids import new_id
from services.kit.events.bus import EventBus, dead_letter_subject, make_envelope, stream_name, subject_for
from services.kit.events.permissions import ADMIN
from services.kit.events.subscription import Subscription, UnusableEvent
from tests.infra import NATS_SERVER, SecuredNats, unique_prefix
from tests.mesh import Mesh
from tests.reporting.test_reporting_e2e import blocks, sign_up

SERVICES = load_settings().mesh.services
REFUSED = "Authorization Violation"
DEAD_LETTER_WITHIN_SECONDS = 10.0


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[SecuredNats]:
    server = SecuredNats(tmp_path / "nats", unique_prefix(), SERVICES, binary=NATS_SERVER)
    server.start()
    yield server
    server.stop()


@contextlib.asynccontextmanager
async def connected(url: str, user: str | None = None) -> AsyncIterator[tuple[NatsClient, list[Exception]]]:
    """A client with the inboxes a service of that name gets; the errors the server sent it."""
    errors: list[Exception] = []

    async def record(error: Exception) -> None:
        errors.append(error)

    inbox = {"inbox_prefix": f"_INBOX.{user}"} if user else {}
    client = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0, error_cb=record, **inbox)
    try:
        yield client, errors
    finally:
        await client.close()


def expense_created(user_id: str, producer: str, category_id: str = "c") -> bytes:
    snapshot = events_pb2.ExpenseSnapshot(
        expense_id=new_id(),
        amount_minor=100_000_00,
        currency="INR",
        spent_on="2025-03-10",
        category_id=category_id,
        merchant="Forged",
        source="manual",
        version=1,
    )
    payload = events_pb2.ExpenseCreated(expense=snapshot)
    return make_envelope("expense.created", user_id, payload, producer).SerializeToString()


async def publish_refused(client: NatsClient, errors: list[Exception], subject: str, data: bytes) -> None:
    """The server drops the publish (no JetStream ack) and tells the client why."""
    with pytest.raises(nats.errors.TimeoutError):
        await client.jetstream(timeout=1).publish(subject, data)
    await client.flush()
    assert f'permissions violation for publish to "{subject}"'.lower() in told(errors)


def told(errors: list[Exception]) -> list[str]:
    """What the server said (nats-py lowercases it)."""
    return [str(error).removeprefix("nats: ").lower() for error in errors]


def anonymous(url: str) -> str:
    parts = urlsplit(url)
    return f"nats://{parts.hostname}:{parts.port}"


async def test_a_client_without_credentials_or_with_a_wrong_password_is_refused(secured: SecuredNats) -> None:
    wrong = f"nats://ledger:k{secrets.token_hex(32)}@127.0.0.1:{secured.port}"
    for url in (secured.url, wrong):
        with pytest.raises(nats.errors.Error, match=REFUSED):
            await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False)


async def test_only_the_registered_producer_may_publish_an_event_type(secured: SecuredNats) -> None:
    prefix = secured.prefix
    subject = subject_for(prefix, "expense.created")
    # The ledger, through the kit's own bus: it makes the stream and publishes its events.
    ledger = EventBus(secured.url, prefix, "ledger-test", "ledger", secured.passwords["ledger"])
    ledger.start()
    try:
        await asyncio.wait_for(ledger.wait_ready(), 10)
        await ledger.publish(subject, expense_created("victim", "ledger"), new_id())
    finally:
        await ledger.close()
    async with connected(secured.url_for("reporting"), "reporting") as (client, errors):
        await publish_refused(client, errors, subject, expense_created("victim", "ledger"))
        # Nor may it listen in on the events or the ledger's deliveries, or drop the stream.
        for forbidden in (subject_for(prefix, ">"), "_INBOX.ledger.>"):
            await client.subscribe(forbidden)
            await client.flush()
            await asyncio.sleep(0.1)
            assert f'permissions violation for subscription to "{forbidden}"'.lower() in told(errors)
        with pytest.raises(nats.errors.TimeoutError):
            await client.jetstream(timeout=1).delete_stream(stream_name(prefix))
    async with connected(secured.admin_url) as (admin, _):
        info = await admin.jetstream().stream_info(stream_name(prefix))
    assert info.state.messages == 1


def test_an_envelope_from_another_producer_is_unusable() -> None:
    subscription = Subscription("reporting_test", (events_pb2.ExpenseCreated,))
    assert subscription.parse(expense_created("u", "ledger")).producer == "ledger"
    with pytest.raises(UnusableEvent, match=r"expense\.created is ledger's, not 'reporting''s"):
        subscription.parse(expense_created("u", "reporting"))


# ------------------------------------------------------------------ a whole mesh


@pytest.fixture
async def client(mesh: Mesh) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=15, trust_env=False) as http:
        yield http


async def test_a_forged_expense_never_reaches_the_victims_report(
    mesh: Mesh, client: httpx.AsyncClient
) -> None:
    victim = await sign_up(client)
    food = next(iter((await victim.categories()).values()))
    march = {"period": "month", "date": "2025-03-10"}
    before = blocks(await victim.ok("GET", "/v1/reports/summary", params=march))
    subject = subject_for(mesh.event_prefix, "expense.created")
    with pytest.raises(nats.errors.Error, match=REFUSED):
        await nats.connect(anonymous(mesh.nats_url_as("reporting")), connect_timeout=2, allow_reconnect=False)
    async with connected(mesh.nats_url_as("reporting"), "reporting") as (forger, errors):
        await publish_refused(forger, errors, subject, expense_created(victim.user_id, "ledger", food))
    # A publisher NATS does let through (an operator's credential) is still not the ledger:
    # reporting dead-letters the event instead of adding it up.
    forged = expense_created(victim.user_id, "reporting", food)
    async with connected(mesh.nats_url_as(ADMIN)) as (admin, _):
        await admin.jetstream().publish(subject, forged)
        reason = await dead_lettered(admin, mesh.event_prefix, "reporting_expenses", forged)
    assert "expense.created is ledger's, not 'reporting''s" in reason
    assert blocks(await victim.ok("GET", "/v1/reports/summary", params=march)) == before


async def dead_lettered(admin: NatsClient, prefix: str, consumer: str, data: bytes) -> str:
    """The reason a consumer gave for dead-lettering the message `data`."""
    js, subject = admin.jetstream(), dead_letter_subject(prefix, consumer)
    deadline = time.monotonic() + DEAD_LETTER_WITHIN_SECONDS
    while time.monotonic() < deadline:
        with contextlib.suppress(NotFoundError):
            last = await js.get_last_msg(stream_name(prefix), subject)
            if last.data == data:
                return (last.headers or {})["Dead-Letter-Reason"]
        await asyncio.sleep(0.1)
    pytest.fail(f"nothing dead-lettered on {subject} within {DEAD_LETTER_WITHIN_SECONDS} s")
