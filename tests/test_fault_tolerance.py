"""Faults on a whole mesh of its own (issue 21, items 14 and 16).

Fail fast, degrade gracefully: the user service is stopped (SIGSTOP: its port still
accepts, its calls hang, the worst kind of down) while creates that need the caller's
preferences and reports run through the gateway. They keep succeeding, on the preferences
the ledger cached before and on reporting's own copy of the profile; the ledger's and
reporting's breakers for the user service open, and close again once it is back, in their
logs. Short resilience settings keep it quick.

`kill -9` of each child of `make up` in turn (every mesh service, then NATS and
Envoy) while creates run through the gateway over loopback: the launcher restarts
the killed one, which answers SERVING again (within 20 s: this checks the restart, not its
speed, which is about 2 s on a quiet machine and 6-10 s on a loaded one); the others are never
stopped; every create the gateway acknowledged is in the ledger afterwards; and
billing, killed and cut off from NATS meanwhile, ends with a spend view equal to
the ledger and exactly one alert per budget threshold the spending crossed."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from services.launcher.health import NotReady, wait_serving, wait_until
from tests.ledger.harness import PASSWORD
from tests.mesh import Mesh, running_mesh

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

BACK_WITHIN_SECONDS = 20.0
# How long to wait for a killed child at most: a slow one is measured, not just failed.
GIVE_UP_WAITING_SECONDS = 30.0
# Each create loop stops after this many calls whatever happens: bounded load.
CREATES_PER_LOOP = 3000
CREATE_LOOPS = 2
# Between two creates of a loop: steady traffic that leaves the 2-core machine room to
# start the killed process (a flat-out loop measures the CPU, not the restart).
CREATE_PAUSE_SECONDS = 0.02
# Creates flowing before each kill, so some are in flight when it lands.
RUN_BEFORE_KILL_SECONDS = 0.5
# Each create's amount, and a budget whose thresholds the run crosses one by one.
CREATE_AMOUNT = Decimal("1.25")
BUDGET = {"period": "month", "amount": "100.00", "currency": "INR", "thresholds": [5, 50, 200, 500, 1000]}
# How long billing may take to catch up with the ledger after the kills: events delivered
# to the billing process that was killed come again after the consumers' ack_wait (30 s).
CATCH_UP_SECONDS = 60.0
FALLBACK_TIMEOUT_SECONDS = 0.5
RESILIENCE = {
    # Every create asks the user service (nothing is fresh), so each one meets the outage.
    "EM_RESILIENCE__PREFERENCES_FRESH_SECONDS": "0",
    "EM_RESILIENCE__FALLBACK_CALL_TIMEOUT_SECONDS": str(FALLBACK_TIMEOUT_SECONDS),
    "EM_RESILIENCE__BREAKER__FAILURE_THRESHOLD": "2",
    # Long enough that no half-open try lands while the test wants the breaker open.
    "EM_RESILIENCE__BREAKER__OPEN_SECONDS": "3",
}
CALLS_WHILE_DOWN = 10


@dataclass
class Creates:
    acknowledged: list[str] = field(default_factory=list)
    refused: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture(scope="module")
def fault_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    # A mesh of its own: the kills must not disturb the other tests' meshes.
    with running_mesh(tmp_path_factory.mktemp("mesh-faults"), env=RESILIENCE) as mesh:
        yield mesh


@pytest.fixture
async def http(fault_mesh: Mesh) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=fault_mesh.base_url, timeout=10, trust_env=False) as client:
        yield client


def _pid_of(mesh: Mesh, child: str) -> int:
    """The pid of the child's latest start, as the launcher logged it."""
    found = re.findall(rf"(?:started|restarted) {child} \(pid (\d+)\)", mesh.log)
    assert found, mesh.log
    return int(found[-1])


async def _sign_up(http: httpx.AsyncClient) -> dict[str, str]:
    body = {"email": f"fault.{secrets.token_hex(6)}@example.org", "password": PASSWORD, "display_name": "F"}
    answer = await http.post("/v1/auth/signup", json=body)
    assert answer.status_code == 200, answer.text
    return {"authorization": f"Bearer {answer.json()['access_token']}"}


async def _keep_creating(http: httpx.AsyncClient, headers: dict[str, str], creates: Creates) -> None:
    for number in range(CREATES_PER_LOOP):
        if creates.stop.is_set():
            return
        body = {
            "request_id": secrets.token_hex(8),
            "amount": str(CREATE_AMOUNT),
            "currency": "INR",
            # Today (UTC, the mesh's default time zone): in the budget's current month.
            "spent_on": datetime.now(UTC).date().isoformat(),
            "note": f"fault {number}",
        }
        try:
            answer = await http.post("/v1/expenses", json=body, headers=headers)
        except httpx.HTTPError:
            answer = None
        if answer is not None and answer.status_code == 200:
            creates.acknowledged.append(answer.json()["expense_id"])
        else:
            # Refused while a service was down: not acknowledged, so nothing is owed.
            creates.refused += 1
        await asyncio.sleep(CREATE_PAUSE_SECONDS)


async def _creates_flowing(creates: Creates) -> None:
    """Until creates are acknowledged again (callers of a restarted peer reconnect with
    gRPC's back-off), then a while longer, so the next kill lands with creates in flight."""
    acknowledged = len(creates.acknowledged)

    async def flowing() -> bool:
        return len(creates.acknowledged) > acknowledged

    await wait_until(flowing, "acknowledged creates", GIVE_UP_WAITING_SECONDS)
    await asyncio.sleep(RUN_BEFORE_KILL_SECONDS)


async def _listed_ids(http: httpx.AsyncClient, headers: dict[str, str]) -> set[str]:
    ids: set[str] = set()
    params = {"page_size": "500"}
    while True:
        answer = await http.get("/v1/expenses", params=params, headers=headers)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        ids.update(expense["expense_id"] for expense in page["expenses"])
        params["page_token"] = page.get("next_page_token", "")
        if not params["page_token"]:
            return ids


async def _serving(mesh: Mesh, services: list[str], seconds: float) -> None:
    await asyncio.gather(*(wait_serving(mesh.address(name), name, seconds) for name in services))


async def _gateway_ok(http: httpx.AsyncClient) -> bool:
    try:
        return (await http.get("/healthz")).status_code == 200
    except httpx.HTTPError:
        return False


async def _kill_and_see_it_back(mesh: Mesh, http: httpx.AsyncClient, victim: str) -> float:
    """Seconds from the kill until the victim's replacement answers."""
    children = [*mesh.services, "nats", "envoy"]
    before = {child: _pid_of(mesh, child) for child in children}
    killed_at = time.monotonic()
    os.kill(before[victim], signal.SIGKILL)

    async def restarted() -> bool:
        return _pid_of(mesh, victim) != before[victim]

    await wait_until(restarted, f"{victim} restarted", GIVE_UP_WAITING_SECONDS)
    left = GIVE_UP_WAITING_SECONDS - (time.monotonic() - killed_at)
    if victim == "envoy":
        await wait_until(lambda: _gateway_ok(http), "the gateway", left)
    else:
        # A service, or NATS: every service answers SERVING (with NATS reconnected).
        await _serving(mesh, [victim] if victim in mesh.services else mesh.services, left)
    back_after = time.monotonic() - killed_at
    others = {child: _pid_of(mesh, child) for child in children if child != victim}
    assert others == {child: pid for child, pid in before.items() if child != victim}, mesh.log
    for pid in others.values():
        os.kill(pid, 0)  # still running: raises ProcessLookupError otherwise
    return back_after


def _breaker_states(mesh: Mesh, service: str, since: int) -> list[str]:
    """The states `service`'s breaker for the user service logged after output line `since`."""
    states = []
    for line in mesh.output[since:]:
        name, _, text = line.partition(" | ")
        if name.strip() != service or '"circuit breaker' not in text:
            continue
        entry = json.loads(text)
        if entry.get("peer") == "user":
            states.append(entry["state"])
    return states


class Shopper:
    def __init__(self, http: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.http = http
        self.headers = headers

    async def create(self) -> dict[str, str]:
        # No currency, no date: the ledger needs the caller's preferences.
        body = {"request_id": secrets.token_hex(8), "amount": "3.50", "merchant": "Kiosk"}
        answer = await self.http.post("/v1/expenses", json=body, headers=self.headers)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    async def report(self) -> dict[str, object]:
        answer = await self.http.get("/v1/reports/summary", params={"period": "month"}, headers=self.headers)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


async def _shopper(http: httpx.AsyncClient) -> Shopper:
    body = {"email": f"degrade.{secrets.token_hex(6)}@example.org", "password": PASSWORD, "display_name": "D"}
    answer = await http.post("/v1/auth/signup", json=body)
    assert answer.status_code == 200, answer.text
    headers = {"authorization": f"Bearer {answer.json()['access_token']}"}
    # Not the configured default (INR): a create in EUR used the user's own preferences.
    patch = {"profile": {"default_currency": "EUR"}, "update_mask": "default_currency"}
    changed = await http.patch("/v1/users/me", json=patch, headers=headers)
    assert changed.status_code == 200, changed.text
    return Shopper(http, headers)


async def test_creates_and_reports_go_on_while_the_user_service_is_down(
    fault_mesh: Mesh, http: httpx.AsyncClient
) -> None:
    shopper = await _shopper(http)
    assert (await shopper.create())["currency"] == "EUR"  # cached by the ledger
    await shopper.report()
    pid = _pid_of(fault_mesh, "user")
    since = len(fault_mesh.output)
    os.kill(pid, signal.SIGSTOP)
    try:
        for _ in range(CALLS_WHILE_DOWN):
            created, _report = await asyncio.gather(shopper.create(), shopper.report())
            assert created["currency"] == "EUR"  # the cached preferences, not the default
            if all(_breaker_states(fault_mesh, name, since) for name in ("ledger", "reporting")):
                break
        for service in ("ledger", "reporting"):
            assert _breaker_states(fault_mesh, service, since) == ["opened"], fault_mesh.log
        # Open, calls fail over at once instead of waiting for their deadline.
        started = asyncio.get_running_loop().time()
        await asyncio.gather(*(call() for _ in range(3) for call in (shopper.create, shopper.report)))
        assert asyncio.get_running_loop().time() - started < FALLBACK_TIMEOUT_SECONDS
    finally:
        os.kill(pid, signal.SIGCONT)

    async def closed_again() -> bool:
        await asyncio.gather(shopper.create(), shopper.report())
        states = [_breaker_states(fault_mesh, name, since) for name in ("ledger", "reporting")]
        return all(s and s[-1] == "closed" for s in states)

    await wait_until(closed_again, "the breakers closed", GIVE_UP_WAITING_SECONDS)
    for service in ("ledger", "reporting"):
        states = _breaker_states(fault_mesh, service, since)
        assert states[:2] == ["opened", "half-opened"] and states[-1] == "closed", states


async def test_kill_9_of_each_child_loses_no_acknowledged_create(
    fault_mesh: Mesh, http: httpx.AsyncClient
) -> None:
    headers = await _sign_up(http)
    budget = await http.post("/v1/budgets", json=BUDGET, headers=headers)
    assert budget.status_code == 200, budget.text
    creates = Creates()
    loops = [asyncio.create_task(_keep_creating(http, headers, creates)) for _ in range(CREATE_LOOPS)]
    back_after: dict[str, float] = {}
    try:
        for victim in [*fault_mesh.services, "nats", "envoy"]:
            await _creates_flowing(creates)
            back_after[victim] = await _kill_and_see_it_back(fault_mesh, http, victim)
        await _creates_flowing(creates)
    finally:
        creates.stop.set()
        await asyncio.gather(*loops)
    print(f"back after (s) {back_after}; acknowledged {len(creates.acknowledged)}, refused {creates.refused}")
    assert all(seconds <= BACK_WITHIN_SECONDS for seconds in back_after.values()), back_after
    in_ledger = await _listed_ids(http, headers)
    missing = set(creates.acknowledged) - in_ledger
    assert not missing, f"{len(missing)} acknowledged creates are not in the ledger"
    for victim in back_after:
        assert f"restarted {victim} (pid" in fault_mesh.log
    assert "given up on" not in fault_mesh.log
    # Every expense the ledger holds counts, acknowledged or not (a create can commit after its
    # caller gave up).
    await _billing_caught_up(http, headers, budget.json()["budget_id"], len(in_ledger))


async def _billing_caught_up(
    http: httpx.AsyncClient, headers: dict[str, str], budget_id: str, count: int
) -> None:
    """Billing's spend equals the ledger's, with one alert per threshold crossed."""
    spent = CREATE_AMOUNT * count

    seen: list[str] = []

    async def caught_up() -> bool:
        answer = await http.get(f"/v1/budgets/{budget_id}", headers=headers)
        seen.append(answer.json()["status"]["spent"] if answer.status_code == 200 else answer.text)
        return answer.status_code == 200 and Decimal(seen[-1]) == spent

    try:
        await wait_until(caught_up, f"billing's spend at {spent}", CATCH_UP_SECONDS)
    except NotReady:
        pytest.fail(f"billing's spend: {seen[-3:]}, the ledger's: {spent}")
    crossed = sorted(t for t in BUDGET["thresholds"] if spent * 100 >= Decimal(BUDGET["amount"]) * t)
    listed = (await http.get("/v1/alerts", params={"page_size": "200"}, headers=headers)).json()
    fired = sorted(
        int(alert["details"]["threshold"])
        for alert in listed.get("alerts", [])
        if alert["type"] == "budget_threshold"
    )
    assert fired == crossed, f"spent {spent}: alerts for {fired}, crossed {crossed}"
