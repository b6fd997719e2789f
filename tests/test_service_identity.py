"""Service identity on a running mesh (issue 21, item 2): mesh-internal RPCs, unary and
streamed, refuse callers without a service or operator token, refuse user tokens, forged
and wrongly scoped service tokens, and a wrong service credential; the right credential
and the operator's token (`python -m services.auth operator-token`, used with grpcurl as the
README shows) open them; and the services' own calls between each other carry theirs."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from expense.auth.v1 import auth_pb2, auth_pb2_grpc
from expense.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from expense.user.v1 import user_pb2, user_pb2_grpc
from services.auth.keys import load_key_ring
from services.auth.settings import AuthMeshSettings
from services.kit.config.settings import REPO_ROOT, MeshSettings
from services.kit.domain.errors import Unavailable
from services.kit.identity.access import Access, MethodAccess
from services.kit.identity.service_tokens import SERVICE_TOKEN_TYPE, Caller
from services.kit.runtime import Runtime
from tests.mesh import Mesh
from tests.service_identity import credential_of, operator_bearer

Metadata = tuple[tuple[str, str], ...]
TIMEOUT = 30.0
PASSWORD = "violet-harbor-tune-42"


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


class Peers:
    """Stubs straight to the services' gRPC ports (not through a gateway)."""

    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        self.auth_channel = grpc.aio.insecure_channel(mesh.address("auth"))
        self.ledger_channel = grpc.aio.insecure_channel(mesh.address("ledger"))
        self.user_channel = grpc.aio.insecure_channel(mesh.address("user"))
        self.auth = auth_pb2_grpc.AuthServiceStub(self.auth_channel)
        self.identity = auth_pb2_grpc.IdentityServiceStub(self.auth_channel)
        self.service_tokens = auth_pb2_grpc.ServiceTokenServiceStub(self.auth_channel)
        self.ledger = ledger_pb2_grpc.LedgerServiceStub(self.ledger_channel)
        self.internal = ledger_pb2_grpc.LedgerInternalServiceStub(self.ledger_channel)
        self.users = user_pb2_grpc.UserServiceStub(self.user_channel)

    async def close(self) -> None:
        for channel in (self.auth_channel, self.ledger_channel, self.user_channel):
            await channel.close()

    async def sign_up(self) -> auth_pb2.AuthTokens:
        email = f"svcid.{secrets.token_hex(6)}@example.org"
        request = auth_pb2.SignUpRequest(email=email, password=PASSWORD, display_name="Svc Id")
        return await self.auth.SignUp(request, timeout=TIMEOUT)

    async def service_token(self, service: str) -> str:
        """What the service itself gets from auth with its credential."""
        request = auth_pb2.IssueServiceTokenRequest(
            service=service, credential=credential_of(self.mesh.data_dir, service)
        )
        return (await self.service_tokens.IssueServiceToken(request, timeout=TIMEOUT)).token

    def internal_calls(self, user_id: str) -> dict[str, Callable[[Metadata], Awaitable[object]]]:
        """Each mesh-internal RPC, unary and streamed (a stream read to its end)."""

        async def drain(stream: AsyncIterator[object]) -> list[object]:
            return [message async for message in stream]

        return {
            "CheckSession": lambda md: self.identity.CheckSession(
                auth_pb2.CheckSessionRequest(session_id="s", user_id=user_id), metadata=md, timeout=TIMEOUT
            ),
            "GetAccount": lambda md: self.identity.GetAccount(
                auth_pb2.GetAccountRequest(user_id=user_id), metadata=md, timeout=TIMEOUT
            ),
            # An empty user id streams every user's rows.
            "StreamExpenses": lambda md: drain(
                self.internal.StreamExpenses(ledger_pb2.StreamExpensesRequest(), metadata=md, timeout=TIMEOUT)
            ),
            "StreamCategories": lambda md: drain(
                self.internal.StreamCategories(
                    ledger_pb2.StreamCategoriesRequest(), metadata=md, timeout=TIMEOUT
                )
            ),
        }


async def refused(call: Awaitable[object]) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    raise AssertionError("the call succeeded but was expected to be refused")


@pytest.fixture
async def peers(mesh: Mesh) -> AsyncIterator[Peers]:
    peers = Peers(mesh)
    yield peers
    await peers.close()


@pytest.fixture
async def user(peers: Peers) -> auth_pb2.AuthTokens:
    tokens = await peers.sign_up()
    request = ledger_pb2.CreateExpenseRequest(amount="12.50", currency="INR", spent_on="2026-01-15")
    await peers.ledger.CreateExpense(request, metadata=bearer(tokens.access_token), timeout=TIMEOUT)
    return tokens


def test_internal_methods_are_derived_from_the_service_names() -> None:
    access = MethodAccess(
        frozenset({"/p.AuthService/LogIn"}),
        frozenset({"p.IdentityService"}),
        {"p.IdentityService/Get": frozenset({"user"})},
    )
    assert access.of("/p.AuthService/LogIn") is Access.PUBLIC
    assert access.of("/p.AuthService/ListSessions") is Access.USER
    assert access.of("/p.LedgerInternalService/StreamExpenses") is Access.INTERNAL
    assert access.of("/p.IdentityService/CheckSession") is Access.INTERNAL
    assert access.allows("/p.IdentityService/Get", Caller("service", "user"))
    assert not access.allows("/p.IdentityService/Get", Caller("service", "ledger"))
    assert access.allows("/p.IdentityService/Get", Caller("operator", "ann"))
    assert access.allows("/p.IdentityService/CheckSession", Caller("service", "ledger"))


async def test_internal_rpcs_refuse_callers_without_a_credential(
    peers: Peers, user: auth_pb2.AuthTokens
) -> None:
    for name, call in peers.internal_calls(user.user.user_id).items():
        assert await refused(call(())) == grpc.StatusCode.UNAUTHENTICATED, name
        assert await refused(call(bearer("not-a-token"))) == grpc.StatusCode.UNAUTHENTICATED, name


async def test_a_user_token_never_opens_an_internal_rpc(peers: Peers, user: auth_pb2.AuthTokens) -> None:
    for name, call in peers.internal_calls(user.user.user_id).items():
        assert await refused(call(bearer(user.access_token))) == grpc.StatusCode.PERMISSION_DENIED, name


async def test_a_wrong_service_credential_gets_no_token(peers: Peers) -> None:
    genuine = credential_of(peers.mesh.data_dir, "reporting")
    for service, credential in [
        ("reporting", secrets.token_urlsafe(32)),
        ("reporting", ""),
        ("reporting", genuine[:-1]),
        ("user", genuine),  # another service's credential
        ("mallory", genuine),
        ("auth", genuine),
    ]:
        request = auth_pb2.IssueServiceTokenRequest(service=service, credential=credential)
        code = await refused(peers.service_tokens.IssueServiceToken(request, timeout=TIMEOUT))
        assert code == grpc.StatusCode.UNAUTHENTICATED, (service, credential[:4])


def _forgeries(data_dir: Path) -> dict[str, str]:
    """Service tokens each wrong in one way."""
    settings = AuthMeshSettings(data_dir=data_dir)
    key = load_key_ring(settings).current
    now = int(time.time())
    claims = {
        "iss": settings.jwt.issuer,
        "aud": settings.jwt.service_audience,
        "sub": "service:reporting",
        "iat": now,
        "exp": now + 300,
        "jti": "j",
    }
    headers = {"kid": key.kid, "typ": SERVICE_TOKEN_TYPE}
    other_key = rsa.generate_private_key(65537, 2048)

    def signed(changes: dict[str, object], with_key: object = key.private_key, **header: str) -> str:
        return jwt.encode({**claims, **changes}, with_key, algorithm="RS256", headers={**headers, **header})

    return {
        "another key": signed({}, other_key),
        "expired": signed({"iat": now - 900, "exp": now - 600}),
        "user audience": signed({"aud": settings.jwt.audience}),
        "long-lived": signed({"exp": now + 7200}),
        "not a service": signed({"sub": "user-123"}),
        "user type": signed({}, typ="JWT"),
        "alg none": jwt.encode(claims, None, algorithm="none", headers=headers),
    }


async def test_forged_service_tokens_are_refused(peers: Peers, user: auth_pb2.AuthTokens) -> None:
    calls = peers.internal_calls(user.user.user_id)
    for what, token in _forgeries(peers.mesh.data_dir).items():
        for name in ("StreamExpenses", "GetAccount"):
            assert await refused(calls[name](bearer(token))) == grpc.StatusCode.UNAUTHENTICATED, (what, name)


async def test_each_service_opens_what_it_needs_only(peers: Peers, user: auth_pb2.AuthTokens) -> None:
    calls = peers.internal_calls(user.user.user_id)
    reporting = bearer(await peers.service_token("reporting"))
    user_service = bearer(await peers.service_token("user"))
    ledger = bearer(await peers.service_token("ledger"))

    batches = await calls["StreamExpenses"](reporting)
    assert user.user.user_id in {e.user_id for batch in batches for e in batch.expenses}  # type: ignore[attr-defined]
    assert await calls["StreamCategories"](reporting)
    account = await peers.identity.GetAccount(
        auth_pb2.GetAccountRequest(user_id=user.user.user_id), metadata=user_service, timeout=TIMEOUT
    )
    assert account.email == user.user.email
    for token in (reporting, user_service, ledger):
        await calls["CheckSession"](token)

    assert await refused(calls["StreamExpenses"](user_service)) == grpc.StatusCode.PERMISSION_DENIED
    assert await refused(calls["StreamExpenses"](ledger)) == grpc.StatusCode.PERMISSION_DENIED
    assert await refused(calls["GetAccount"](reporting)) == grpc.StatusCode.PERMISSION_DENIED


async def test_a_service_token_never_acts_as_a_user(peers: Peers) -> None:
    reporting = bearer(await peers.service_token("reporting"))
    code = await refused(peers.ledger.ListExpenses(ledger_pb2.ListExpensesRequest(), metadata=reporting))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    code = await refused(peers.users.GetProfile(user_pb2.GetProfileRequest(), metadata=reporting))
    assert code == grpc.StatusCode.UNAUTHENTICATED


async def test_the_operator_command_prints_a_token_that_works_with_grpcurl(
    peers: Peers, user: auth_pb2.AuthTokens
) -> None:
    env = {**peers.mesh.env, "EM_DATA_DIR": str(peers.mesh.data_dir)}
    printed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.auth", "operator-token", "--name", "ops.ann"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    token = printed.stdout.strip()
    assert jwt.decode(token, options={"verify_signature": False})["sub"] == "operator:ops.ann"
    calls = peers.internal_calls(user.user.user_id)
    for name in ("StreamExpenses", "StreamCategories", "GetAccount", "CheckSession"):
        await calls[name](bearer(token))
    # Each operator call is on record in the callee's log.
    for _ in range(50):
        if any("operator call" in line and "ops.ann" in line for line in peers.mesh.output):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("no operator call in the mesh's log")

    grpcurl = Path(sys.executable).parent / "grpcurl"
    if not grpcurl.exists():
        pytest.skip("grpcurl is not installed in the venv (dev extras)")
    request = json.dumps({"user_id": user.user.user_id})
    method = "expense.ledger.v1.LedgerInternalService/StreamExpenses"
    argv = [str(grpcurl), "-plaintext", "-d", request, peers.mesh.address("ledger"), method]
    with_token = [*argv[:1], "-H", f"authorization: Bearer {token}", *argv[1:]]
    answer = await asyncio.to_thread(subprocess.run, with_token, capture_output=True, text=True, timeout=60)
    assert answer.returncode == 0, answer.stderr
    streamed = json.loads(answer.stdout)["expenses"]
    assert [(e["user_id"], e["amount_minor"]) for e in streamed] == [(user.user.user_id, "1250")]
    without = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=60)
    assert "Unauthenticated" in without.stderr


async def test_the_services_calls_between_each_other_carry_their_identity(
    peers: Peers, user: auth_pb2.AuthTokens
) -> None:
    """A fresh user's token reaches the user service, which checks the session with auth
    (CheckSession) under its own service token, and reads the account (GetAccount) when the
    signup event is not there yet; an operator token from the suite's helper opens a stream."""
    profile = await peers.users.GetProfile(
        user_pb2.GetProfileRequest(), metadata=bearer(user.access_token), timeout=TIMEOUT
    )
    assert profile.user_id == user.user.user_id
    operator = operator_bearer(peers.mesh.data_dir)
    assert await peers.internal_calls(user.user.user_id)["StreamCategories"](operator)


async def test_a_service_whose_credential_auth_refuses_never_gets_ready(
    peers: Peers, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A deployment mistake stalls the start with one logged error, instead of a service
    that reports ready and then fails every call that needs auth."""
    auth_port = int(peers.mesh.address("auth").rpartition(":")[2])
    for credential, ready in [
        (secrets.token_urlsafe(32), False),
        (credential_of(peers.mesh.data_dir, "reporting"), True),
    ]:
        settings = MeshSettings(
            data_dir=tmp_path, ports={"auth": auth_port}, service_credential=SecretStr(credential)
        )
        runtime = Runtime("reporting", settings)
        runtime.remote_verifier()
        check = runtime.readiness["service_identity"]
        try:
            if ready:
                assert await check()
                token = await runtime.service_tokens().token()
                assert jwt.decode(token, options={"verify_signature": False})["sub"] == "service:reporting"
            else:
                for _ in range(3):
                    with pytest.raises(Unavailable):
                        await check()
                refusals = [
                    r for r in caplog.records if "refused this service's credential" in r.getMessage()
                ]
                assert len(refusals) == 1
        finally:
            await runtime.service_tokens().close()
            await runtime.db.dispose()
