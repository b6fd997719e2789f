"""ETag and If-Match over the gateways: Envoy and Kong pass HTTP request headers to the
service as gRPC metadata and the service's initial metadata back as response headers,
so a service reads `if-match` and sends `etag` itself (AIP-154's etag field stays the
same value, in the body)."""

from __future__ import annotations

import grpc

from services.kit.domain.errors import InvalidArgument
from services.kit.domain.etags import etag_matches

IF_MATCH = "if-match"
ETAG = "etag"


def requested_etag(context: grpc.aio.ServicerContext, body_etag: str) -> str:
    """The etag a write must match: the body's or the If-Match header's. Both may be sent
    only when they name the same version."""
    header = next((str(value) for key, value in context.invocation_metadata() or () if key == IF_MATCH), "")
    if header and body_etag and not etag_matches(header, body_etag):
        raise InvalidArgument.of("etag", "differs from the If-Match header; send one of them")
    return body_etag or header


async def send_etag(context: grpc.aio.ServicerContext, etag: str, *extra: tuple[str, str]) -> None:
    """The ETag response header of a read or write, with any `extra` headers (initial
    metadata goes once, before the response; never on errors)."""
    headers = ((ETAG, etag),) if etag else ()
    await context.send_initial_metadata((*headers, *extra))
