"""Rendering through the templating service (TemplatingInternalService.BatchRender, with
notification's service token): its breaker and retry budget are the kit's ("templating")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import struct_pb2

from expense.templating.v1 import templating_pb2, templating_pb2_grpc
from services.kit.config.settings import ResilienceSettings
from services.kit.grpc.clients import LazyChannel
from services.kit.identity.service_tokens import ServiceTokens

TEMPLATING_INTERNAL_SERVICE = "expense.templating.v1.TemplatingInternalService"
# Answers that a retry cannot change: the template or its variables are wrong.
PERMANENT = frozenset(
    {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION}
)
# google.rpc.Status.code (an int) -> grpc.StatusCode.
_CODES = {code.value[0]: code for code in grpc.StatusCode}


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str
    # "budget.threshold@3"
    template: str
    whatsapp_name: str = ""
    whatsapp_language: str = ""
    whatsapp_parameters: tuple[str, ...] = ()


class TemplateUnusable(Exception):
    """The template cannot render this message (missing, or variables refused): final."""


class TemplatingUnavailable(Exception):
    """Templating did not render the message this time (down, busy): try again later."""


@dataclass(frozen=True)
class RenderCall:
    key: str
    channel: str
    locale: str
    variables: dict[str, Any]


class TemplatingClient:
    def __init__(
        self,
        target: str,
        timeout_seconds: float,
        tokens: ServiceTokens,
        resilience: ResilienceSettings | None,
    ) -> None:
        self.tokens = tokens
        self.timeout_seconds = timeout_seconds
        self.channel = LazyChannel(
            target, [TEMPLATING_INTERNAL_SERVICE], timeout_seconds, True, resilience, peer="templating"
        )

    async def render(self, call: RenderCall) -> Rendered:
        """TemplateUnusable for a permanent refusal; TemplatingUnavailable when templating
        does not answer: the job tries again later."""
        (result,) = await self.render_many([call])
        if isinstance(result, Exception):
            raise result
        return result

    async def render_many(
        self, calls: Sequence[RenderCall]
    ) -> list[Rendered | TemplateUnusable | TemplatingUnavailable]:
        """Each call's message or why it is not rendered, in one BatchRender call."""
        if not calls:
            return []
        request = templating_pb2.BatchRenderRequest(requests=[_request(call) for call in calls])
        stub = templating_pb2_grpc.TemplatingInternalServiceStub(self.channel.get())
        try:
            answer = await stub.BatchRender(
                request, metadata=await self.tokens.metadata(), timeout=self.timeout_seconds
            )
        except grpc.aio.AioRpcError as error:
            return [TemplatingUnavailable(error.code().name) for _ in calls]
        return [_result(call, result) for call, result in zip(calls, answer.results, strict=True)]

    async def close(self) -> None:
        await self.channel.close()


def _request(call: RenderCall) -> templating_pb2.RenderRequest:
    struct = struct_pb2.Struct()
    struct.update(call.variables)
    return templating_pb2.RenderRequest(
        key=call.key, channel=call.channel, locale=call.locale, variables=struct
    )


def _result(
    call: RenderCall, result: templating_pb2.RenderResult
) -> Rendered | TemplateUnusable | TemplatingUnavailable:
    if result.HasField("error"):
        code = _CODES.get(result.error.code, grpc.StatusCode.UNKNOWN)
        if code in PERMANENT:
            return TemplateUnusable(f"{call.key}/{call.channel}: {result.error.message}")
        return TemplatingUnavailable(code.name)
    answer = result.rendered
    return Rendered(
        answer.subject,
        answer.body,
        answer.template,
        answer.whatsapp.name,
        answer.whatsapp.language,
        tuple(answer.whatsapp.parameters),
    )
