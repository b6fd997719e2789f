"""The ds service's paths: SMS parse throughput on one core (the parser alone, in this
process) and through the gateway (`POST /v1/sms:parse`, 100 messages a call); ingest
(each message books an expense in the ledger); and the heavy user's insights (100,000
expenses of history in ds's copy, from `python -m services.ds rebuild`)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from itertools import count

from bench import wrk
from bench.api import bearer, channel, grpc_bearer, rest_outcome
from bench.context import Bench, Target, p99_at_most
from bench.scenarios.common import RPC_TIMEOUT_SECONDS, rpc_outcome
from bench.stats import OK, LatencySummary, ScenarioResult
from expense.ds.v1 import ds_pb2, ds_pb2_grpc
from services.ds.parser import SmsParser
from services.ds.templates import ParserConfig
from services.kit.config.settings import REPO_ROOT

CORPUS = REPO_ROOT / "tests" / "ds" / "corpus"
PARSERS = REPO_ROOT / "config" / "sms_parsers"
MESSAGES_PER_CALL = 100
CONSENT_TIMEOUT_SECONDS = 30.0


def corpus_messages() -> list[dict[str, str]]:
    """The labelled corpus's messages (data only: its labels are the tests' business)."""
    rows = []
    for path in sorted(CORPUS.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows.append({key: row[key] for key in ("sender", "body", "received_time")})
    return rows


async def sms_parse(bench: Bench) -> None:
    """Messages parsed per CPU second on one core, then the REST path's calls/s."""
    messages = corpus_messages()
    parser = SmsParser(ParserConfig.load(PARSERS))
    inputs = [(m["sender"], m["body"], datetime.fromisoformat(m["received_time"])) for m in messages]
    minimum = bench.targets.sms_parse_min_messages_per_second
    target = Target(f"≥ {minimum:,.0f} msg/s", lambda row: row.throughput >= minimum)
    async with bench.measuring("sms parse", "in-process, one core", bench.profile.duration_seconds) as usage:
        row = await asyncio.to_thread(_parse_for, parser, inputs, bench.profile.duration_seconds)
    bench.record(row, target, usage)

    token = await bench.tokens.token(bench.seed.of_role("light")[0])
    body = json.dumps({"messages": (messages * (MESSAGES_PER_CALL // len(messages) + 1))[:MESSAGES_PER_CALL]})
    variants = [wrk.Variant("POST", "/v1/sms:parse", token=token, body=body)]
    result = await bench.wrk_step("sms parse", f"REST, {MESSAGES_PER_CALL} msg/call", variants, 4)
    result.notes.append(f"{result.throughput * MESSAGES_PER_CALL:,.0f} messages/s through the gateway")


def _parse_for(parser: SmsParser, inputs: list[tuple[str, str, datetime]], seconds: float) -> ScenarioResult:
    """Parses the corpus over and over for `seconds` of this thread's CPU time; the rate
    per CPU second is what one core does (the machine's other load does not count)."""
    parsed, batches = 0, []
    started = time.thread_time()
    while time.thread_time() - started < seconds:
        batch_started = time.perf_counter()
        for sender, body, received in inputs:
            parser.parse(sender, body, received)
        batches.append((time.perf_counter() - batch_started) * 1000 / len(inputs))
        parsed += len(inputs)
    cpu_seconds = time.thread_time() - started
    return ScenarioResult(
        scenario="sms parse",
        variant="in-process, one core",
        load=f"one thread, {len(inputs)} corpus messages in a loop",
        requests=parsed,
        errors=0,
        seconds=cpu_seconds,
        throughput=parsed / cpu_seconds,
        latency=LatencySummary.of(batches),
        unit="msg/s",
        path="in-process",
        outcomes={OK: parsed},
        notes=["latency columns: ms per message, averaged per pass over the corpus"],
    )


async def sms_ingest(bench: Bench) -> None:
    """IngestSms (gRPC, straight to ds), one message a call, each a new transaction that
    becomes an expense through the ledger; after consent is on for the user."""
    user = bench.seed.of_role("light")[1]
    token = await bench.tokens.token(user)
    client = bench.rest.get()
    profile = {"sms_auto_import": True, "sms_allowed_senders": ["HDFCBK"]}
    consent = {"profile": profile, "update_mask": "sms_auto_import,sms_allowed_senders"}
    headers = {"content-type": "application/json", **bearer(token)}
    answer = await client.request("PATCH", "/v1/users/me", headers, json.dumps(consent).encode())
    outcome = rest_outcome(answer)
    assert outcome == OK, f"consent not turned on: {outcome}"
    references = count(10**11 + int(time.time()) % 10**9 * 100)
    day = datetime.now(UTC).strftime("%d/%m/%y")
    received = datetime.now(UTC).isoformat()

    def request() -> ds_pb2.IngestSmsRequest:
        body = (
            f"Sent Rs.{next(references) % 900 + 100}.00 From HDFC Bank A/C *1234 To STARBUCKS COFFEE "
            f"On {day} Ref {next(references)} Not You? Call 18002586161"
        )
        message = ds_pb2.SmsMessage(sender="VM-HDFCBK-S", body=body, received_time=received)
        return ds_pb2.IngestSmsRequest(messages=[message])

    async with channel(bench.mesh.address("ds")) as ds_channel:
        stub = ds_pb2_grpc.DsServiceStub(ds_channel)
        metadata = grpc_bearer(token)
        await _wait_for_consent(stub, metadata, request)

        def ingest() -> Awaitable[str]:
            return rpc_outcome(stub.IngestSms(request(), metadata=metadata, timeout=RPC_TIMEOUT_SECONDS))

        await bench.closed_step("sms ingest", "gRPC, 1 msg/call", ingest, bench.profile.write_connections)


async def _wait_for_consent(
    stub: ds_pb2_grpc.DsServiceStub,
    metadata: tuple[tuple[str, str], ...],
    request: Callable[[], ds_pb2.IngestSmsRequest],
) -> None:
    """ds hears of the consent through user.profile_updated."""
    deadline = time.monotonic() + CONSENT_TIMEOUT_SECONDS
    while await rpc_outcome(stub.IngestSms(request(), metadata=metadata, timeout=RPC_TIMEOUT_SECONDS)) != OK:
        if time.monotonic() > deadline:
            raise TimeoutError("ds never saw the bench user's SMS consent")
        await asyncio.sleep(0.1)


async def insights(bench: Bench) -> None:
    """The heavy user's monthly insights (100,000 expenses in ds's copy)."""
    token = await bench.tokens.token(bench.seed.heavy)
    target = p99_at_most(bench.targets.insights_max_p99_ms)
    variants = [wrk.Variant("GET", "/v1/insights?period=month", token=token)]
    await bench.wrk_step("insights", "REST month", variants, bench.profile.read_connections, target)
    client = bench.rest.get()

    async def month() -> str:
        return rest_outcome(await client.get("/v1/insights?period=month", headers=bearer(token)))

    for rate in bench.profile.open_loop_rates:
        await bench.open_step("insights", f"REST {rate:g}/s", month, rate, target=target)
