"""Each insight's sentence, rendered by the templating service (its in_app channel, the
user's locale) from the insight's template key and variables (config/templates/insight.*).
All of a report's sentences in one BatchRender call; while templating fails, insights answer without sentences
(their numbers stand on their own) rather than not at all."""

from __future__ import annotations

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
        """Each insight's sentence, "" for one templating did not render."""
        if not insights:
            return []
        request = templating_pb2.BatchRenderRequest(
            requests=[_request(insight, locale, category_names) for insight in insights]
        )
        stub = templating_pb2_grpc.TemplatingInternalServiceStub(self.channel.get())
        try:
            answer = await stub.BatchRender(
                request, metadata=await self.tokens.metadata(), timeout=self.timeout_seconds
            )
        except grpc.aio.AioRpcError as error:
            log.warning("insight sentences not rendered", extra={"code": error.code().name})
            return ["" for _ in insights]
        for insight, result in zip(insights, answer.results, strict=True):
            if result.HasField("error"):
                log.warning(
                    "insight sentence not rendered",
                    extra={"key": insight.sentence, "error": result.error.message},
                )
        return [result.rendered.body for result in answer.results]

    async def close(self) -> None:
        await self.channel.close()


def _request(insight: Insight, locale: str, category_names: dict[str, str]) -> templating_pb2.RenderRequest:
    values = dict(insight.variables)
    if insight.category_id or "category" in insight.sentence:
        values["category"] = category_names.get(insight.category_id) or "Uncategorized"
    variables = Struct()
    variables.update(values)
    return templating_pb2.RenderRequest(
        key=insight.sentence, channel=CHANNEL, locale=locale, variables=variables
    )
