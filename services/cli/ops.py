"""`em ops dlq`, `em ops templates` and `em ops rebuild`: the operator's RPCs and rebuilds,
from the mesh's own settings (config/mesh.toml, EM_*), like `em ops health`.

Dead letters (notification's `NotificationInternalService`) and templates (templating's
`TemplatingInternalService`, Render excepted) are RPCs only operators may call:
the token is `EM_OPERATOR_TOKEN` (what `python -m services.auth operator-token` printed, e.g.
from inside an auth container), else one minted here with auth's signing keys when this
machine holds them (the data dir of `make up`)."""

from __future__ import annotations

import asyncio
import getpass
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.json_format import MessageToDict

from expense.notification.v1 import notification_pb2 as pb
from expense.notification.v1 import notification_pb2_grpc as pb_grpc
from expense.templating.v1 import templating_pb2 as templating_pb
from expense.templating.v1 import templating_pb2_grpc as templating_grpc
from services.cli.errors import INVALID, NOT_FOUND, NOT_SIGNED_IN, UNAVAILABLE, EmError
from services.kit.config.settings import MeshSettings

CALL_SECONDS = 10.0
T = TypeVar("T")
GRPC_EXIT = {
    grpc.StatusCode.INVALID_ARGUMENT: INVALID,
    grpc.StatusCode.FAILED_PRECONDITION: INVALID,
    grpc.StatusCode.NOT_FOUND: NOT_FOUND,
    grpc.StatusCode.UNAUTHENTICATED: NOT_SIGNED_IN,
    grpc.StatusCode.PERMISSION_DENIED: NOT_SIGNED_IN,
}


def operator_token() -> str:
    given = os.environ.get("EM_OPERATOR_TOKEN", "").strip()
    if given:
        return given
    from services.auth.keys import load_key_ring
    from services.auth.service_identity import sign_service_token
    from services.auth.settings import AuthMeshSettings
    from services.kit.identity.service_tokens import Caller

    settings = AuthMeshSettings()
    caller = Caller.from_subject(f"operator:{getpass.getuser()}") or Caller.from_subject("operator:operator")
    assert caller is not None  # "operator:operator" is a valid subject
    try:
        ring = load_key_ring(settings)
    except FileNotFoundError:
        raise EmError(
            "no operator token: set EM_OPERATOR_TOKEN (python -m services.auth operator-token, "
            "where auth keeps its keys)",
            NOT_SIGNED_IN,
        ) from None
    return sign_service_token(settings.jwt, ring.current, caller, settings.jwt.operator_token_ttl_seconds)


def _call(service: str, work: Callable[[grpc.aio.Channel, tuple[tuple[str, str], ...]], Awaitable[T]]) -> T:
    """One RPC to `service` with the operator's token; gRPC errors become em's exit codes."""
    address = MeshSettings().service_address(service)
    metadata = (("authorization", f"Bearer {operator_token()}"),)

    async def run() -> T:
        async with grpc.aio.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)]) as channel:
            return await work(channel, metadata)

    try:
        return asyncio.run(run())
    except grpc.aio.AioRpcError as error:
        code = error.code()
        if code in GRPC_EXIT:
            raise EmError(error.details() or code.name, GRPC_EXIT[code]) from None
        raise EmError(f"{service} at {address} did not answer ({code.name})", UNAVAILABLE) from None


def _dict(message: Any) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def dead_letters(limit: int, page_token: str) -> dict[str, Any]:
    async def work(channel: grpc.aio.Channel, metadata: Any) -> Any:
        stub = pb_grpc.NotificationInternalServiceStub(channel)
        request = pb.ListDeadLettersRequest(page_size=limit, page_token=page_token)
        return await stub.ListDeadLetters(request, metadata=metadata, timeout=CALL_SECONDS)

    return _dict(_call("notification", work))


def dead_letter(sequence: int) -> dict[str, Any]:
    async def work(channel: grpc.aio.Channel, metadata: Any) -> Any:
        stub = pb_grpc.NotificationInternalServiceStub(channel)
        request = pb.GetDeadLetterRequest(sequence=sequence)
        return await stub.GetDeadLetter(request, metadata=metadata, timeout=CALL_SECONDS)

    return _dict(_call("notification", work))


def replay(sequence: int) -> dict[str, Any]:
    async def work(channel: grpc.aio.Channel, metadata: Any) -> Any:
        stub = pb_grpc.NotificationInternalServiceStub(channel)
        request = pb.ReplayDeadLetterRequest(sequence=sequence)
        return await stub.ReplayDeadLetter(request, metadata=metadata, timeout=CALL_SECONDS)

    return _dict(_call("notification", work))


def rebuild(service: str, user_id: str | None) -> dict[str, int]:
    """The service's own rebuild (`python -m services.<service> rebuild`), run here with its
    settings and service identity: each user's rebuild is one transaction."""
    from services.kit.domain.errors import Unavailable

    if service == "reporting":
        from services.reporting.commands import _rebuild as rebuild_reporting
        from services.reporting.settings import ReportingMeshSettings

        settings: Any = ReportingMeshSettings()
        work = rebuild_reporting(settings, user_id)
    else:
        from services.billing.commands import _rebuild as rebuild_billing
        from services.billing.settings import BillingMeshSettings

        settings = BillingMeshSettings()
        work = rebuild_billing(settings, user_id)
    try:
        return asyncio.run(work)
    except grpc.aio.AioRpcError as error:
        address = settings.service_address("ledger")
        raise EmError(f"the ledger at {address} did not answer ({error.code().name})", UNAVAILABLE) from None
    except Unavailable as error:
        raise EmError(error.message, UNAVAILABLE) from None


def templates(key: str, channel: str, locale: str) -> list[dict[str, Any]]:
    """Every template matching the filters, all pages."""

    async def work(channel_: grpc.aio.Channel, metadata: Any) -> list[Any]:
        stub = templating_grpc.TemplatingInternalServiceStub(channel_)
        found, token = [], ""
        while True:
            request = templating_pb.ListTemplatesRequest(
                key=key, channel=channel, locale=locale, page_size=200, page_token=token
            )
            page = await stub.ListTemplates(request, metadata=metadata, timeout=CALL_SECONDS)
            found.extend(page.templates)
            token = page.next_page_token
            if not token:
                return found

    return [_dict(template) for template in _call("templating", work)]


def publish(key: str, channel: str, locale: str, version: int) -> dict[str, Any]:
    async def work(channel_: grpc.aio.Channel, metadata: Any) -> Any:
        stub = templating_grpc.TemplatingInternalServiceStub(channel_)
        request = templating_pb.PublishRequest(key=key, channel=channel, locale=locale, version=version)
        return await stub.Publish(request, metadata=metadata, timeout=CALL_SECONDS)

    return _dict(_call("templating", work))


def rollback(key: str, channel: str, locale: str) -> dict[str, Any]:
    async def work(channel_: grpc.aio.Channel, metadata: Any) -> Any:
        stub = templating_grpc.TemplatingInternalServiceStub(channel_)
        request = templating_pb.RollbackRequest(key=key, channel=channel, locale=locale)
        return await stub.Rollback(request, metadata=metadata, timeout=CALL_SECONDS)

    return _dict(_call("templating", work))
