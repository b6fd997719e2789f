"""The kit's server bootstrap over a real port: interceptors, health, reflection."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from jwt.algorithms import RSAAlgorithm
from sqlalchemy.exc import OperationalError

from expense.echo.v1 import echo_pb2, echo_pb2_grpc
from services.kit.config.settings import MeshSettings
from services.kit.db.engine import Database
from services.kit.domain.errors import FieldViolation, InvalidArgument, NotFound
from services.kit.grpc.interceptors import AccessLog, KitInterceptor
from services.kit.grpc.server import (
    GC_PAUSE_LOG,
    GC_PAUSE_LOGGED_MS,
    HEALTH_INTERVAL_HEALTHY,
    LIVENESS,
    ServiceApp,
    freeze_startup_objects,
)
from services.kit.grpc.status import field_violations
from services.kit.identity.access import MethodAccess
from services.kit.identity.tokens import TokenVerifier, current_identity
from tests.infra import free_port

KEY = rsa.generate_private_key(65537, 2048)
KID = "test-key"
ECHO = "/expense.echo.v1.EchoService/Echo"


class ScriptedEcho(echo_pb2_grpc.EchoServiceServicer):
    """Answers according to the message, so one servicer covers every outcome."""

    async def Echo(self, request: echo_pb2.EchoRequest, context: Any) -> echo_pb2.EchoResponse:
        if request.message == "invalid":
            raise InvalidArgument([FieldViolation("message", "must not be 'invalid'")])
        if request.message == "missing":
            raise NotFound("echo", "missing")
        if request.message == "crash":
            raise RuntimeError("secret internals")
        if request.message == "db-down":
            raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))
        if request.message == "slow":
            await asyncio.sleep(5)
        return echo_pb2.EchoResponse(message=request.message, user_id=current_identity().user_id)


STREAMS = "test.v1.StreamService"
COUNT = f"/{STREAMS}/Count"
CHAT = f"/{STREAMS}/Chat"
JOIN = f"/{STREAMS}/Join"


async def fail_as_asked(message: str) -> None:
    if message == "invalid":
        raise InvalidArgument([FieldViolation("message", "must not be 'invalid'")])
    if message == "crash":
        raise RuntimeError("secret internals")
    if message == "db-down":
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))
    if message == "slow":
        await asyncio.sleep(5)


class ScriptedStreams:
    """Streaming RPCs of every kind on Echo's messages: each streamed response is sent
    before a message asks for a failure, so the failures come mid-stream."""

    async def Count(
        self, request: echo_pb2.EchoRequest, context: Any
    ) -> AsyncIterator[echo_pb2.EchoResponse]:
        if request.message == "invalid-at-once":
            raise InvalidArgument([FieldViolation("message", "checked before streaming")])
        for n in range(3):
            yield echo_pb2.EchoResponse(message=str(n), user_id=current_identity().user_id)
        await fail_as_asked(request.message)

    async def Chat(
        self, requests: AsyncIterable[echo_pb2.EchoRequest], context: Any
    ) -> AsyncIterator[echo_pb2.EchoResponse]:
        async for request in requests:
            await fail_as_asked(request.message)
            yield echo_pb2.EchoResponse(message=request.message, user_id=current_identity().user_id)

    async def Join(
        self, requests: AsyncIterable[echo_pb2.EchoRequest], context: Any
    ) -> echo_pb2.EchoResponse:
        messages = [request.message async for request in requests]
        for message in messages:
            await fail_as_asked(message)
        return echo_pb2.EchoResponse(message=" ".join(messages), user_id=current_identity().user_id)


def add_streams(servicer: ScriptedStreams, server: grpc.aio.Server) -> None:
    codecs = {
        "request_deserializer": echo_pb2.EchoRequest.FromString,
        "response_serializer": echo_pb2.EchoResponse.SerializeToString,
    }
    handlers = {
        "Count": grpc.unary_stream_rpc_method_handler(servicer.Count, **codecs),
        "Chat": grpc.stream_stream_rpc_method_handler(servicer.Chat, **codecs),
        "Join": grpc.stream_unary_rpc_method_handler(servicer.Join, **codecs),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(STREAMS, handlers),))


def token(**overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": "iss", "aud": "aud", "sub": "u1", "sid": "s1", "jti": "j", "iat": now, "exp": now + 60}
    claims.update(overrides)
    return jwt.encode(claims, KEY, algorithm="RS256", headers={"kid": KID, "typ": "at+jwt"})


@pytest.fixture(params=["errors"])
async def echo_stub(request: pytest.FixtureRequest) -> AsyncIterator[echo_pb2_grpc.EchoServiceStub]:
    settings = MeshSettings(
        jwt={"issuer": "iss", "audience": "aud"},
        limits={"default_deadline_seconds": 0.5},
        access_log=request.param,
        slow_call_ms=200,
    )
    jwk = json.loads(RSAAlgorithm.to_jwk(KEY.public_key())) | {"kid": KID, "alg": "RS256"}

    async def jwks() -> dict[str, Any]:
        return {"keys": [jwk]}

    async def session_active(session_id: str, user_id: str) -> bool:
        return session_id != "revoked"

    verifier = TokenVerifier(settings.jwt, jwks, session_active)
    ready = asyncio.Event()

    async def readiness() -> bool:
        return ready.is_set()

    app = ServiceApp(
        name="echo",
        settings=settings,
        verifier=verifier,
        servicers=[
            (echo_pb2_grpc.add_EchoServiceServicer_to_server, ScriptedEcho(), "expense.echo.v1.EchoService"),
            (add_streams, ScriptedStreams(), STREAMS),
        ],
        readiness={"dependency": readiness},
        port=free_port(),
    )
    server, health = await app.build_server()
    server.add_insecure_port(f"127.0.0.1:{app.port}")
    await server.start()
    watcher = asyncio.create_task(app._watch_health(health))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = echo_pb2_grpc.EchoServiceStub(channel)
        stub.ready = ready  # type: ignore[attr-defined]
        stub.health = health_pb2_grpc.HealthStub(channel)  # type: ignore[attr-defined]
        stub.channel = channel  # type: ignore[attr-defined]
        yield stub
    watcher.cancel()
    await server.stop(0)


async def call(stub: echo_pb2_grpc.EchoServiceStub, message: str, bearer: str | None) -> grpc.aio.AioRpcError:
    metadata = (("authorization", f"Bearer {bearer}"),) if bearer else ()
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stub.Echo(echo_pb2.EchoRequest(message=message), metadata=metadata)
    return failure.value


async def test_verified_identity_reaches_the_handler(echo_stub: echo_pb2_grpc.EchoServiceStub) -> None:
    reply = await echo_stub.Echo(
        echo_pb2.EchoRequest(message="hi"), metadata=(("authorization", f"Bearer {token()}"),)
    )
    assert (reply.message, reply.user_id) == ("hi", "u1")


@pytest.mark.parametrize(
    "bad_token",
    [
        None,
        "not-a-jwt",
        token(aud="other"),
        token(iss="other"),
        token(exp=int(time.time()) - 120),
        token(sid="revoked"),
        jwt.encode({"sub": "u1"}, "", algorithm="none"),
        token()[:-4] + "AAAA",
    ],
    ids=["missing", "garbage", "audience", "issuer", "expired", "revoked", "alg-none", "forged"],
)
async def test_bad_tokens_are_unauthenticated(
    echo_stub: echo_pb2_grpc.EchoServiceStub, bad_token: str | None
) -> None:
    error = await call(echo_stub, "hi", bad_token)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_domain_errors_carry_google_rpc_details(echo_stub: echo_pb2_grpc.EchoServiceStub) -> None:
    error = await call(echo_stub, "invalid", token())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(error) == {"message": "must not be 'invalid'"}
    missing = await call(echo_stub, "missing", token())
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    assert rpc_status.from_call(missing).details[0].type_url.endswith("google.rpc.ResourceInfo")


async def test_unexpected_errors_are_masked(echo_stub: echo_pb2_grpc.EchoServiceStub) -> None:
    error = await call(echo_stub, "crash", token())
    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details() == "internal error"


async def test_a_lost_database_is_unavailable_not_internal(echo_stub: echo_pb2_grpc.EchoServiceStub) -> None:
    error = await call(echo_stub, "db-down", token())
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "refused" not in (error.details() or "")


async def test_calls_without_deadline_get_the_default(echo_stub: echo_pb2_grpc.EchoServiceStub) -> None:
    error = await call(echo_stub, "slow", token())
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def bearer(value: str | None = None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {value or token()}"),)


def count(stub: echo_pb2_grpc.EchoServiceStub) -> Any:
    return stub.channel.unary_stream(  # type: ignore[attr-defined]
        COUNT,
        request_serializer=echo_pb2.EchoRequest.SerializeToString,
        response_deserializer=echo_pb2.EchoResponse.FromString,
    )


async def counted(
    stub: echo_pb2_grpc.EchoServiceStub, message: str, **kwargs: Any
) -> tuple[list[str], grpc.aio.AioRpcError | None]:
    """The messages a Count stream delivered, and the error that ended it (if one did)."""
    received: list[str] = []
    try:
        async for response in count(stub)(echo_pb2.EchoRequest(message=message), **kwargs):
            received.append(response.message)
    except grpc.aio.AioRpcError as error:
        return received, error
    return received, None


async def test_streams_see_the_verified_identity(echo_stub: echo_pb2_grpc.EchoServiceStub) -> None:
    responses = [r async for r in count(echo_stub)(echo_pb2.EchoRequest(message="hi"), metadata=bearer())]
    assert [(r.message, r.user_id) for r in responses] == [("0", "u1"), ("1", "u1"), ("2", "u1")]
    received, error = await counted(echo_stub, "hi")
    assert (received, error and error.code()) == ([], grpc.StatusCode.UNAUTHENTICATED)


async def test_a_domain_error_mid_stream_arrives_with_its_details(
    echo_stub: echo_pb2_grpc.EchoServiceStub,
) -> None:
    received, error = await counted(echo_stub, "invalid", metadata=bearer())
    assert received == ["0", "1", "2"] and error is not None
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(error) == {"message": "must not be 'invalid'"}
    received, error = await counted(echo_stub, "invalid-at-once", metadata=bearer())
    assert received == [] and error is not None
    assert field_violations(error) == {"message": "checked before streaming"}


async def test_unexpected_errors_mid_stream_are_masked(echo_stub: echo_pb2_grpc.EchoServiceStub) -> None:
    received, error = await counted(echo_stub, "crash", metadata=bearer())
    assert received == ["0", "1", "2"] and error is not None
    assert (error.code(), error.details()) == (grpc.StatusCode.INTERNAL, "internal error")
    _, lost = await counted(echo_stub, "db-down", metadata=bearer())
    assert lost is not None and lost.code() == grpc.StatusCode.UNAVAILABLE


async def test_streams_without_deadline_get_the_default(echo_stub: echo_pb2_grpc.EchoServiceStub) -> None:
    received, error = await counted(echo_stub, "slow", metadata=bearer())
    assert received == ["0", "1", "2"] and error is not None
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_client_and_bidirectional_streams_are_wrapped_too(
    echo_stub: echo_pb2_grpc.EchoServiceStub,
) -> None:
    channel = echo_stub.channel  # type: ignore[attr-defined]
    codecs = {
        "request_serializer": echo_pb2.EchoRequest.SerializeToString,
        "response_deserializer": echo_pb2.EchoResponse.FromString,
    }
    join, chat = channel.stream_unary(JOIN, **codecs), channel.stream_stream(CHAT, **codecs)

    def requests(*messages: str) -> list[echo_pb2.EchoRequest]:
        return [echo_pb2.EchoRequest(message=m) for m in messages]

    joined = await join(iter(requests("a", "b")), metadata=bearer())
    assert (joined.message, joined.user_id) == ("a b", "u1")
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await join(iter(requests("a", "invalid")), metadata=bearer())
    assert field_violations(failure.value) == {"message": "must not be 'invalid'"}

    received: list[str] = []
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        async for response in chat(iter(requests("a", "b", "crash", "c")), metadata=bearer()):
            received.append(response.message)
    assert received == ["a", "b"]
    assert (failure.value.code(), failure.value.details()) == (grpc.StatusCode.INTERNAL, "internal error")
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await chat(iter(requests("a")), metadata=bearer("not-a-jwt")).read()
    assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_streams_wrapped_handler_is_built_once() -> None:
    interceptor = KitInterceptor(
        TokenVerifier(MeshSettings().jwt, _no_keys, _no_sessions), MethodAccess(), 1.0, AccessLog()
    )
    servicer = ScriptedStreams()
    asked: list[str] = []

    async def continuation(details: Any) -> grpc.RpcMethodHandler:
        asked.append(details.method)
        return grpc.unary_stream_rpc_method_handler(servicer.Count)

    details = SimpleNamespace(method=COUNT, invocation_metadata=())
    first = await interceptor.intercept_service(continuation, details)
    assert await interceptor.intercept_service(continuation, details) is first
    assert asked == [COUNT] and first.unary_stream is not servicer.Count


async def test_health_follows_dependencies(echo_stub: echo_pb2_grpc.EchoServiceStub) -> None:
    health = echo_stub.health  # type: ignore[attr-defined]

    async def status() -> int:
        return (await health.Check(health_pb2.HealthCheckRequest(service=""))).status

    await asyncio.sleep(0.3)
    assert await status() == health_pb2.HealthCheckResponse.NOT_SERVING
    echo_stub.ready.set()  # type: ignore[attr-defined]
    for _ in range(50):
        if await status() == health_pb2.HealthCheckResponse.SERVING:
            break
        await asyncio.sleep(0.05)
    assert await status() == health_pb2.HealthCheckResponse.SERVING


async def _health_status(health: health_pb2_grpc.HealthStub, service: str) -> int:
    return int((await health.Check(health_pb2.HealthCheckRequest(service=service))).status)


async def _wait_status(health: health_pb2_grpc.HealthStub, service: str, wanted: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while await _health_status(health, service) != wanted:
        assert time.monotonic() < deadline, f"health of {service!r} not {wanted} after {seconds:g} s"
        await asyncio.sleep(0.05)


async def test_readiness_drops_while_a_dependency_is_down_and_recovers_by_itself(
    echo_stub: echo_pb2_grpc.EchoServiceStub,
) -> None:
    health = echo_stub.health  # type: ignore[attr-defined]
    ready = echo_stub.ready  # type: ignore[attr-defined]
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    ready.set()
    await _wait_status(health, "", serving, 2)
    ready.clear()
    await _wait_status(health, "", not_serving, HEALTH_INTERVAL_HEALTHY + 1)
    assert await _health_status(health, "expense.echo.v1.EchoService") == not_serving
    assert await _health_status(health, LIVENESS) == serving
    ready.set()
    await _wait_status(health, "", serving, 2)
    assert await _health_status(health, LIVENESS) == serving


async def test_liveness_stays_serving_while_the_database_is_unreachable(tmp_path: Path) -> None:
    """k8s restarts a pod whose liveness fails: a database outage must not do that,
    only take the pod out of rotation (readiness) until the database answers again."""
    database_dir = tmp_path / "not-yet"
    database = Database(f"sqlite+aiosqlite:///{database_dir / 'echo.sqlite3'}")
    app = ServiceApp(
        name="echo",
        settings=MeshSettings(),
        verifier=TokenVerifier(MeshSettings().jwt, _no_keys, _no_sessions),
        servicers=[
            (echo_pb2_grpc.add_EchoServiceServicer_to_server, ScriptedEcho(), "expense.echo.v1.EchoService")
        ],
        readiness={"database": database.ping},
        port=free_port(),
    )
    server, health_servicer = await app.build_server()
    server.add_insecure_port(f"127.0.0.1:{app.port}")
    await server.start()
    watcher = asyncio.create_task(app._watch_health(health_servicer))
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for _ in range(5):
                assert await _health_status(health, LIVENESS) == serving
                assert await _health_status(health, "") == not_serving
                await asyncio.sleep(0.1)
            database_dir.mkdir()
            await _wait_status(health, "", serving, 2)
            assert await _health_status(health, LIVENESS) == serving
    finally:
        watcher.cancel()
        await server.stop(0)
        await database.dispose()


async def access_records(caplog: pytest.LogCaptureFixture, expected: int) -> list[tuple[str, str]]:
    """The access log's records once `expected` are in (or after a second): the server
    logs a call after its status is sent, so the client may see the status first."""
    for _ in range(50):
        records = [(r.method, r.code) for r in caplog.records if r.name == "access"]  # type: ignore[attr-defined]
        if len(records) >= expected:
            break
        await asyncio.sleep(0.02)
    return records


async def test_errors_mode_logs_failed_and_slow_calls_only(
    echo_stub: echo_pb2_grpc.EchoServiceStub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="access")
    await echo_stub.Echo(
        echo_pb2.EchoRequest(message="hi"), metadata=(("authorization", f"Bearer {token()}"),)
    )
    await call(echo_stub, "missing", token())
    await call(echo_stub, "slow", token())
    assert await access_records(caplog, 2) == [(ECHO, "NOT_FOUND"), (ECHO, "DEADLINE_EXCEEDED")]


@pytest.mark.parametrize("echo_stub", ["all"], indirect=True)
async def test_all_mode_logs_every_call(
    echo_stub: echo_pb2_grpc.EchoServiceStub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="access")
    for _ in range(3):
        await echo_stub.Echo(
            echo_pb2.EchoRequest(message="hi"), metadata=(("authorization", f"Bearer {token()}"),)
        )
    await call(echo_stub, "hi", None)
    assert await access_records(caplog, 4) == [(ECHO, "OK")] * 3 + [(ECHO, "UNAUTHENTICATED")]


async def test_the_access_log_records_streams(
    echo_stub: echo_pb2_grpc.EchoServiceStub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="access")
    await counted(echo_stub, "hi", metadata=bearer())
    await counted(echo_stub, "crash", metadata=bearer())
    await counted(echo_stub, "slow", metadata=bearer())
    assert await access_records(caplog, 2) == [(COUNT, "INTERNAL"), (COUNT, "DEADLINE_EXCEEDED")]


@pytest.mark.parametrize("echo_stub", ["all"], indirect=True)
async def test_all_mode_logs_every_stream(
    echo_stub: echo_pb2_grpc.EchoServiceStub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="access")
    await counted(echo_stub, "hi", metadata=bearer())
    await counted(echo_stub, "invalid", metadata=bearer())
    assert await access_records(caplog, 2) == [(COUNT, "OK"), (COUNT, "INVALID_ARGUMENT")]


@pytest.mark.parametrize("echo_stub", ["off"], indirect=True)
async def test_off_mode_logs_nothing(
    echo_stub: echo_pb2_grpc.EchoServiceStub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="access")
    await call(echo_stub, "crash", token())
    assert await access_records(caplog, 1) == []


async def test_startup_objects_are_frozen_and_long_collections_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    try:
        freeze_startup_objects()
        freeze_startup_objects()
        assert gc.get_freeze_count() > 10_000
        assert gc.callbacks.count(GC_PAUSE_LOG) == 1
    finally:
        gc.unfreeze()
        gc.callbacks.remove(GC_PAUSE_LOG)
    caplog.set_level("WARNING", logger="services.kit.grpc.server")
    GC_PAUSE_LOG("start", {"generation": 0})
    GC_PAUSE_LOG("stop", {"generation": 0})
    GC_PAUSE_LOG("start", {"generation": 2})
    await asyncio.sleep((GC_PAUSE_LOGGED_MS + 5) / 1000)
    GC_PAUSE_LOG("stop", {"generation": 2})
    pauses = [r for r in caplog.records if r.getMessage() == "garbage collection paused the loop"]
    assert [r.generation for r in pauses] == [2]  # type: ignore[attr-defined]
    assert pauses[0].ms >= GC_PAUSE_LOGGED_MS  # type: ignore[attr-defined]


async def test_a_started_server_is_not_serving_before_its_checks_pass() -> None:
    """grpc's health servicer starts out SERVING; a probe (the launcher's, k8s') must not
    see that before the service's readiness checks ran."""
    app = ServiceApp(
        name="echo",
        settings=MeshSettings(),
        verifier=TokenVerifier(MeshSettings().jwt, _no_keys, _no_sessions),
        servicers=[
            (echo_pb2_grpc.add_EchoServiceServicer_to_server, ScriptedEcho(), "expense.echo.v1.EchoService")
        ],
        port=free_port(),
    )
    server, _ = await app.build_server()
    server.add_insecure_port(f"127.0.0.1:{app.port}")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "expense.echo.v1.EchoService"):
                answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
                assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        await server.stop(0)


async def _no_keys() -> dict[str, Any]:
    return {"keys": []}


async def _no_sessions(session_id: str, user_id: str) -> bool:
    return False
