"""Each insight's sentence, rendered by the templating service (its in_app channel, the
user's locale) from the insight's template key and variables (config/templates/insight.*).
Renders run concurrently; while templating fails, insights answer without sentences
(their numbers stand on their own) rather than not at all."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import grpc
from google.protobuf.struct_pb2 import Struct

from expense.templating.v1 import templating_pb2, templating_pb2_grpc
from services.ds.insights import Insight
from services.kit.config.settings import ResilienceSettings
from services.kit.grpc.clients import LazyChannel
from services.kit.identity.service_tokens import ServiceTokens

log = logging.getLogger(__name__)
TEMPLATING_INTERNAL_SERVICE = "expense.templating.v1.TemplatingInternalService"
CHANNEL = "in_app"


class Sentences:
    def __init__(
        self, target: str, timeout_seconds: float, tokens: ServiceTokens, resilience: ResilienceSettings
    ) -> None:
        self.tokens = tokens
        self.timeout_seconds = timeout_seconds
        self.channel = LazyChannel(
            target, [TEMPLATING_INTERNAL_SERVICE], timeout_seconds, True, resilience, peer="templating"
        )

    async def render(
        self, insights: Sequence[Insight], locale: str, category_names: dict[str, str]
    ) -> list[str]:
        if not insights:
            return []
        metadata = await self.tokens.metadata()
        stub = templating_pb2_grpc.TemplatingInternalServiceStub(self.channel.get())
        calls = [self._one(stub, metadata, insight, locale, category_names) for insight in insights]
        return list(await asyncio.gather(*calls))

    async def _one(
        self,
        stub: templating_pb2_grpc.TemplatingInternalServiceStub,
        metadata: tuple[tuple[str, str], ...],
        insight: Insight,
        locale: str,
        category_names: dict[str, str],
    ) -> str:
        variables = Struct()
        values = dict(insight.variables)
        if insight.category_id or "category" in insight.sentence:
            values["category"] = category_names.get(insight.category_id) or "Uncategorized"
        variables.update(values)
        request = templating_pb2.RenderRequest(
            key=insight.sentence, channel=CHANNEL, locale=locale, variables=variables
        )
        try:
            answer = await stub.Render(request, metadata=metadata, timeout=self.timeout_seconds)
        except grpc.aio.AioRpcError as error:
            log.warning(
                "insight sentence not rendered", extra={"key": insight.sentence, "code": error.code().name}
            )
            return ""
        return answer.body

    async def close(self) -> None:
        await self.channel.close()
