"""Wiring of the echo service."""

from __future__ import annotations

from expense.echo.v1 import echo_pb2, echo_pb2_grpc
from services.kit.config.settings import MeshSettings
from services.kit.domain.errors import Unauthenticated
from services.kit.grpc.server import ServiceApp
from services.kit.identity.tokens import current_identity
from services.kit.runtime import Runtime


class EchoServicer(echo_pb2_grpc.EchoServiceServicer):
    async def Echo(self, request: echo_pb2.EchoRequest, context: object) -> echo_pb2.EchoResponse:
        return echo_pb2.EchoResponse(message=request.message, user_id=_caller_id())


def _caller_id() -> str:
    """The verified caller; empty when the method is public (as in the benchmark mesh)."""
    try:
        return current_identity().user_id
    except Unauthenticated:
        return ""


def build_app(settings: MeshSettings) -> ServiceApp:
    runtime = Runtime("echo", settings)
    verifier = runtime.remote_verifier()
    servicer = (
        echo_pb2_grpc.add_EchoServiceServicer_to_server,
        EchoServicer(),
        "expense.echo.v1.EchoService",
    )
    return runtime.app(verifier, [servicer])
