"""What several scenarios share: gRPC outcomes, the heavy user's months, the REST
bodies and paths of a create and a summary."""

from __future__ import annotations

import calendar
import json
from collections.abc import Awaitable
from datetime import date, timedelta

import grpc

from bench.api import grpc_outcome
from bench.context import Bench
from bench.stats import OK

RPC_TIMEOUT_SECONDS = 30.0


def month_starts(today: date, months: int) -> list[date]:
    """First days of the `months` months up to today's, newest first."""
    first = today.replace(day=1)
    starts = []
    for _ in range(months):
        starts.append(first)
        first = (first - timedelta(days=1)).replace(day=1)
    return starts


def month_end(start: date) -> date:
    return start.replace(day=calendar.monthrange(start.year, start.month)[1])


def heavy_months(bench: Bench) -> list[date]:
    return month_starts(bench.today, 12 * bench.seed_years)


async def rpc_outcome(awaitable: Awaitable[object]) -> str:
    try:
        await awaitable
    except grpc.aio.AioRpcError as error:
        return grpc_outcome(error)
    return OK


def create_body(category_id: str, day: date, request_id: str) -> str:
    return json.dumps(
        {
            "request_id": request_id,
            "amount": "249.50",
            "currency": "INR",
            "spent_on": day.isoformat(),
            "category_id": category_id,
            "merchant": "Bench Cafe",
        }
    )


def summary_path(period: str, day: date) -> str:
    return f"/v1/reports/summary?period={period}&date={day.isoformat()}"
