"""The echo baseline: the same kit, the same Envoy, no work; the yardstick of every ratio."""

from __future__ import annotations

import json
from collections.abc import Awaitable

from bench import wrk
from bench.api import channel, rest_outcome
from bench.context import Bench
from bench.scenarios.common import RPC_TIMEOUT_SECONDS, rpc_outcome
from expense.echo.v1 import echo_pb2, echo_pb2_grpc

BASELINE = "echo (baseline)"
ECHO_BODY = json.dumps({"message": "hello"})


async def baseline(bench: Bench) -> None:
    """The echo service: the same kit, the same Envoy, no work."""
    await _echo_closed_loops(bench, "")
    client = bench.rest.get()

    async def echo_rest() -> str:
        return rest_outcome(await client.post("/v1/echo", content=ECHO_BODY))

    for rate in bench.profile.open_loop_rates:
        await bench.open_step(BASELINE, f"REST {rate:g}/s", echo_rest, rate)


async def baseline_again(bench: Bench, scenario: str) -> None:
    """The baseline's closed loops measured again just before `scenario`'s, unless
    nothing but the baseline ran since: the machine's speed drifts within a run
    (echo REST 2,766 to 4,296 req/s within an hour on one machine), and a ratio is
    only as good as a baseline measured under the same conditions."""
    if bench.ran_since_baseline(BASELINE):
        await _echo_closed_loops(bench, f", before {scenario}")


async def _echo_closed_loops(bench: Bench, when: str) -> None:
    connections = bench.profile.write_connections
    await bench.wrk_step(
        BASELINE, f"REST{when}", [wrk.Variant("POST", "/v1/echo", body=ECHO_BODY)], connections, baseline=True
    )
    async with channel(bench.mesh.address("echo")) as echo_channel:
        stub = echo_pb2_grpc.EchoServiceStub(echo_channel)
        request = echo_pb2.EchoRequest(message="hello")

        def echo() -> Awaitable[str]:
            return rpc_outcome(stub.Echo(request, timeout=RPC_TIMEOUT_SECONDS))

        await bench.closed_step(BASELINE, f"gRPC{when}", echo, connections, baseline=True)
