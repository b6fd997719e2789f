"""Entity tags (AIP-154, RFC 9110): what a client sends back is compared by the opaque
version it carries, so `"3"`, `W/"3"` and a bare `3` (what JSON clients type after
reading `"etag": "\"3\""`) all name version 3; `*` matches any version (If-Match: *)."""

from __future__ import annotations

ANY = "*"


def opaque(etag: str) -> str:
    """`W/"3"` -> `3`; `"3"` -> `3`; `3` -> `3`."""
    tag = etag.strip().removeprefix("W/")
    if len(tag) >= 2 and tag[0] == tag[-1] == '"':
        return tag[1:-1]
    return tag


def etag_matches(sent: str, current: str) -> bool:
    """Weak comparison (RFC 9110 §8.8.3.2), quoted or bare."""
    return sent.strip() == ANY or opaque(sent) == opaque(current)
