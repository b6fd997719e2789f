"""The gateway's own error answers, shared by both gateways (docs/errors.md): for each HTTP
status a gateway answers itself, the gRPC code its google.rpc.Status body names, the message
in our words and ErrorInfo's stable reason. Envoy renders them into local_reply_config
(envoy.py), Kong into its post-function (kong.py)."""

from __future__ import annotations

import json
from typing import Any

from services.kit.config.settings import GatewayLimits, RateLimit
from services.launcher import lua

# HTTP status of an answer the gateway makes itself -> the gRPC code its JSON body names (the
# inverse of the transcoder's mapping), its message in our words (None: the gateway's own text,
# e.g. Envoy's transcoder naming a bad field) and ErrorInfo's stable reason.
LOCAL_REPLIES: dict[int, tuple[int, str | None, str]] = {
    400: (3, None, "INVALID_REQUEST"),
    401: (16, "the access token is invalid or expired", "TOKEN_INVALID"),
    403: (7, None, "PERMISSION_DENIED"),
    404: (5, "no such route", "NO_ROUTE"),
    413: (3, "request body too large", "BODY_TOO_LARGE"),
    414: (3, "request URL too long", "URL_TOO_LONG"),
    415: (3, "content-type must be application/json", "UNSUPPORTED_CONTENT_TYPE"),
    429: (8, "too many requests", "RATE_LIMITED"),
    431: (3, "request headers too large", "HEADERS_TOO_LARGE"),
    500: (13, "internal error", "INTERNAL"),
    502: (14, "service unavailable, try again shortly", "UNAVAILABLE"),
    503: (14, "service unavailable, try again shortly", "UNAVAILABLE"),
    504: (4, "deadline exceeded", "DEADLINE_EXCEEDED"),
}
# Where a gateway's own text is not fit to show (Kong's plugins word theirs for operators).
OWN_WORDS = {400: "the request does not match this route", 403: "permission denied"}
# A 401 without any Authorization header: missing, not invalid.
TOKEN_MISSING = (16, "an access token is required: Authorization: Bearer <token>", "TOKEN_MISSING")
# Any other status a gateway answers itself.
UNKNOWN = (2, "the gateway could not answer this request", "UNKNOWN")
# Answers the gateway may retry for the client after a pause (google.rpc.RetryInfo).
RETRYABLE = {502, 503}
ERROR_DOMAIN = "expense-mesh"
RPC_TYPES = "type.googleapis.com/google.rpc"
# Retry-After of a 429 that brings none of its own (the rate limit sets its period's).
RATE_LIMIT_RETRY_AFTER = "1"


def error_info(reason: str) -> dict[str, Any]:
    return {"@type": f"{RPC_TYPES}.ErrorInfo", "reason": reason, "domain": ERROR_DOMAIN, "metadata": {}}


def retry_info(delay: str) -> dict[str, Any]:
    return {"@type": f"{RPC_TYPES}.RetryInfo", "retry_delay": delay}


def quota_failure(gateway: GatewayLimits) -> dict[str, Any]:
    """The gateway's rate limits, named in a 429 (google.rpc.QuotaFailure)."""

    def rate(limit: RateLimit) -> str:
        return f"{limit.requests} requests per {limit.per}"

    violations = [
        {"subject": "user", "description": f"{rate(gateway.per_user)} per signed-in user"},
        {
            "subject": "client address",
            "description": f"{rate(gateway.per_ip)} per client address without a token",
        },
        {
            "subject": "password routes",
            "description": f"{rate(gateway.password_routes)} on signup, login, password change",
        },
    ]
    return {"@type": f"{RPC_TYPES}.QuotaFailure", "violations": violations}


def kong_error_filters(gateway: GatewayLimits, verdict_key: str) -> tuple[str, str]:
    """Kong's post-function header_filter and body_filter chunks: every answer Kong makes
    itself (source "exit": a plugin such as jwt, rate-limiting, request-size-limiting,
    grpc-gateway or the router's 404; "error": an upstream that cannot be reached) in the
    google.rpc.Status shape with our message and reason. A 400 of a request strict input
    refused (`verdict_key` in kong.ctx.shared) carries that refusal: grpc-gateway may have
    answered before the post-function could. Services' answers (source "service") pass."""
    replies = {status: _kong_reply(status, *reply, gateway) for status, reply in LOCAL_REPLIES.items()}
    header_filter = (
        _KONG_HEADER_FILTER.replace("@REPLIES@", lua.literal(replies))
        .replace("@TOKEN_MISSING@", lua.literal(_kong_reply(401, *TOKEN_MISSING, gateway)))
        .replace("@UNKNOWN@", lua.literal(_kong_reply(0, *UNKNOWN, gateway)))
        .replace("@VERDICT@", lua.literal(verdict_key))
        .replace("@ERROR_INFO@", lua.literal(f"{RPC_TYPES}.ErrorInfo"))
        .replace("@RETRY_INFO@", lua.literal(f"{RPC_TYPES}.RetryInfo"))
        .replace("@DOMAIN@", lua.literal(ERROR_DOMAIN))
        .replace("@RETRY_AFTER@", lua.literal(RATE_LIMIT_RETRY_AFTER))
        .replace("@QUOTE@", lua.JSON_QUOTE)
    )
    return header_filter.lstrip(), _KONG_BODY_FILTER.lstrip()


def _kong_reply(
    status: int, code: int, message: str | None, reason: str, gateway: GatewayLimits
) -> dict[str, Any]:
    reply: dict[str, Any] = {"code": code, "message": message or OWN_WORDS[status], "reason": reason}
    if status == 429 or status in RETRYABLE:
        reply["retry"] = True
    if status == 429:
        reply["quota"] = json.dumps(quota_failure(gateway), separators=(",", ":"))
    return reply


# The body is made in header_filter (its length known, the headers still open) and kept for
# body_filter, which replaces whatever the plugin, grpc-gateway or nginx wrote.
_KONG_HEADER_FILTER = r"""
local REPLIES = @REPLIES@
local TOKEN_MISSING = @TOKEN_MISSING@
local UNKNOWN = @UNKNOWN@
local VERDICT = @VERDICT@
local ERROR_INFO = @ERROR_INFO@
local RETRY_INFO = @RETRY_INFO@
local DOMAIN = @DOMAIN@
local RETRY_AFTER = @RETRY_AFTER@
local BODY = "expense.error_body"
@QUOTE@

local function details(reply)
  local found = {'{"@type":"' .. ERROR_INFO .. '","reason":"' .. reply.reason
    .. '","domain":"' .. DOMAIN .. '","metadata":{}}'}
  if reply.retry then
    local after = kong.response.get_header("Retry-After")
    if after == nil then
      after = RETRY_AFTER
      kong.response.set_header("Retry-After", after)
    end
    found[#found + 1] = '{"@type":"' .. RETRY_INFO .. '","retry_delay":' .. quote(after .. "s") .. "}"
  end
  if reply.quota then found[#found + 1] = reply.quota end
  return table.concat(found, ",")
end

local function error_body(status)
  local refused = kong.ctx.shared[VERDICT]
  if status == 400 and refused then return refused end
  local reply = REPLIES[status] or UNKNOWN
  if status == 401 and kong.request.get_header("Authorization") == nil then reply = TOKEN_MISSING end
  return '{"code":' .. reply.code .. ',"message":' .. quote(reply.message)
    .. ',"details":[' .. details(reply) .. "]}"
end

return function()
  local status = kong.response.get_status()
  if status < 400 or kong.response.get_source() == "service" then return end
  local body = error_body(status)
  kong.ctx.shared[BODY] = body
  kong.response.set_header("Content-Type", "application/json")
  kong.response.set_header("Content-Length", tostring(#body))
end
"""

# set_raw_body ends the response (later chunks are dropped): called once, on the first chunk.
_KONG_BODY_FILTER = r"""
local BODY = "expense.error_body"

return function()
  local body = kong.ctx.shared[BODY]
  if body == nil then return end
  kong.ctx.shared[BODY] = nil
  kong.response.set_raw_body(body)
end
"""
