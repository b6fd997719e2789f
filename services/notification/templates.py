"""Rendering through the templating service (TemplatingInternalService.Render, with
notification's service token): its breaker and retry budget are the kit's ("templating")."""

from __future__ import annotations

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

    async def render(self, key: str, channel: str, locale: str, variables: dict[str, Any]) -> Rendered:
        """TemplateUnusable for a permanent refusal; grpc.aio.AioRpcError (UNAVAILABLE...)
        when templating does not answer: the job tries again later."""
        struct = struct_pb2.Struct()
        struct.update(variables)
        request = templating_pb2.RenderRequest(key=key, channel=channel, locale=locale, variables=struct)
        stub = templating_pb2_grpc.TemplatingInternalServiceStub(self.channel.get())
        try:
            answer = await stub.Render(
                request, metadata=await self.tokens.metadata(), timeout=self.timeout_seconds
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in PERMANENT:
                raise TemplateUnusable(f"{key}/{channel}: {error.details()}") from None
            raise
        return Rendered(
            answer.subject,
            answer.body,
            answer.template,
            answer.whatsapp.name,
            answer.whatsapp.language,
            tuple(answer.whatsapp.parameters),
        )

    async def close(self) -> None:
        await self.channel.close()
