"""What the HTTP adapters share: one httpx client per adapter with the channel's timeouts,
and the mapping of a failed exchange to a ProviderError."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from services.notification.providers.base import ProviderError
from services.notification.providers.settings import TimeoutSettings

TOO_MANY_REQUESTS = 429
# Connections open at once per provider client (httpx's default ceiling; the worker sends 64 at once).
MAX_CONNECTIONS = 100


def make_client(timeouts: TimeoutSettings, **kwargs: Any) -> httpx.AsyncClient:
    timeout = httpx.Timeout(timeouts.total_seconds, connect=timeouts.connect_seconds)
    # No redirects: a provider's API answers where it is; a redirect is a misconfigured URL.
    # Every connection kept for reuse: the worker sends a batch at once, and httpx's default
    # (20 kept of 100) would close and reopen most of them at every batch.
    limits = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS)
    return httpx.AsyncClient(timeout=timeout, follow_redirects=False, limits=limits, **kwargs)


async def post(
    provider: str,
    client: httpx.AsyncClient,
    url: str,
    *,
    total_seconds: float,
    read_body: bool = True,
    **kwargs: Any,
) -> httpx.Response:
    """POSTs within total_seconds for the whole exchange (httpx's own timeouts bound each
    read, not a server dripping its answer). read_body=False keeps only the status line and
    headers: a stranger's endpoint may answer gigabytes. A transport failure (refused,
    reset, timed out) is a retryable ProviderError."""
    request = client.build_request("POST", url, **kwargs)
    try:
        async with asyncio.timeout(total_seconds):
            response = await client.send(request, stream=True)
            try:
                if read_body:
                    await response.aread()
            finally:
                await response.aclose()
    except (TimeoutError, httpx.TimeoutException):
        raise ProviderError(f"{provider}: timed out", retryable=True) from None
    except httpx.TransportError as error:
        raise ProviderError(f"{provider}: {type(error).__name__}", retryable=True) from None
    return response


def is_retryable_status(status_code: int) -> bool:
    return status_code == TOO_MANY_REQUESTS or status_code >= 500


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Retry-After as seconds, or as an HTTP date (RFC 9110 §10.2.3)."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def status_error(
    provider: str, response: httpx.Response, detail: str, code: str | None = None
) -> ProviderError:
    text = f"{provider}: HTTP {response.status_code}"
    if code:
        text += f" code {code}"
    if detail:
        text += f": {detail}"
    return ProviderError(
        text,
        retryable=is_retryable_status(response.status_code),
        provider_code=code,
        retry_after_seconds=retry_after_seconds(response),
    )


def json_or_empty(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object, or {} when it is not one (an HTML error page of a proxy)."""
    try:
        document = response.json()
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}
