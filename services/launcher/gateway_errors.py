"""The gateway's own error answers, shared by both gateways (docs/errors.md): for each HTTP
status a gateway answers itself, the gRPC code its google.rpc.Status body names, the message
in our words and ErrorInfo's stable reason. Envoy renders them into local_reply_config
(envoy.py), Kong into its post-function (kong.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.rpc import error_details_pb2

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


# proto3 JSON of the scalar kinds google.rpc's details use (int64 as a string).
_DETAIL_KINDS = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_INT32: "int",
    FieldDescriptor.TYPE_UINT32: "int",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_UINT64: "int64",
    FieldDescriptor.TYPE_BOOL: "bool",
}


def detail_types() -> dict[str, dict[str, Any]]:
    """google.rpc's error details (error_details.proto, the messages services send in
    grpc-status-details-bin) for Kong's decoder: per message, its fields by number (JSON
    name, kind, whether repeated, the message type) and their order."""
    found: dict[str, dict[str, Any]] = {}

    def add(message: Descriptor) -> None:
        fields: dict[int, dict[str, Any]] = {}
        for field in message.fields:
            fields[field.number] = {"n": field.name, **_detail_kind(field, add)}
        found[message.full_name] = {"fields": fields, "order": [field.number for field in message.fields]}

    for message in error_details_pb2.DESCRIPTOR.message_types_by_name.values():
        add(message)
    return found


def _detail_kind(field: FieldDescriptor, add: Callable[[Descriptor], None]) -> dict[str, Any]:
    repeated = {"r": True} if field.is_repeated else {}
    if field.type != FieldDescriptor.TYPE_MESSAGE:
        return {"k": _DETAIL_KINDS[field.type], **repeated}
    message = field.message_type
    if message.GetOptions().map_entry:
        return {"k": "map"}
    if message.full_name == "google.protobuf.Duration":
        return {"k": "duration"}
    add(message)
    return {"k": "message", "m": message.full_name, **repeated}


def kong_error_filters(gateway: GatewayLimits, verdict_key: str) -> tuple[str, str]:
    """Kong's post-function header_filter and body_filter chunks: every answer Kong makes
    itself (source "exit": a plugin such as jwt, rate-limiting, request-size-limiting,
    grpc-gateway or the router's 404; "error": an upstream that cannot be reached) in the
    google.rpc.Status shape with our message and reason. A 400 of a request strict input
    refused (`verdict_key` in kong.ctx.shared) carries that refusal: grpc-gateway may have
    answered before the post-function could. A service's gRPC error, which grpc-gateway
    passes as an HTTP status, `grpc-*` headers and no body, is rendered from its
    grpc-status-details-bin as Envoy's transcoder renders it; other service answers pass."""
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
        .replace("@DETAILS@", lua.literal(detail_types()))
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
local DETAILS = @DETAILS@
local GRPC_HEADERS = {"grpc-status", "grpc-message", "grpc-status-details-bin"}
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

-- ------------------------------------------------------------ a service's google.rpc.Status
-- The protobuf wire format, as far as google.rpc.Status and its details need it.
local function varint(bytes, i)
  local value, scale = 0, 1
  while true do
    local byte = bytes:byte(i)
    if byte == nil then error("truncated varint", 0) end
    value, i = value + (byte % 128) * scale, i + 1
    if byte < 128 then return value, i end
    scale = scale * 128
  end
end

-- The fields of a message: {{n = number, v = integer or bytes}, ...} in wire order.
local function fields(bytes)
  local found, i, key, value = {}, 1, nil, nil
  while i <= #bytes do
    key, i = varint(bytes, i)
    local wire = key % 8
    if wire == 0 then
      value, i = varint(bytes, i)
    elseif wire == 2 then
      local length
      length, i = varint(bytes, i)
      value = bytes:sub(i, i + length - 1)
      if #value < length then error("truncated field", 0) end
      i = i + length
    elseif wire == 1 or wire == 5 then
      value, i = nil, i + (wire == 1 and 8 or 4)
    else
      error("unsupported wire type " .. wire, 0)
    end
    found[#found + 1] = {n = math.floor(key / 8), v = value}
  end
  return found
end

local function duration(bytes)
  local seconds, nanos = 0, 0
  for _, f in ipairs(fields(bytes)) do
    if f.n == 1 then seconds = f.v elseif f.n == 2 then nanos = f.v end
  end
  local text = string.format("%d", seconds)
  if nanos ~= 0 then
    -- proto3 JSON: 3, 6 or 9 fractional digits.
    local fraction = string.format("%09d", nanos):gsub("000$", "")
    text = text .. "." .. fraction:gsub("000$", "")
  end
  return text .. "s"
end

local render
local DEFAULTS = {string = '""', int = "0", int64 = '"0"', bool = "false"}

local function scalar(field, value)
  local kind = field.k
  if kind == "string" then return quote(value) end
  if kind == "int" then return string.format("%d", value) end
  if kind == "int64" then return '"' .. string.format("%d", value) .. '"' end
  if kind == "bool" then return value ~= 0 and "true" or "false" end
  if kind == "duration" then return quote(duration(value)) end
  return "{" .. render(field.m, value) .. "}"
end

-- A message's members as proto3 JSON, without the braces, as Envoy's transcoder prints them
-- (preserve_proto_field_names, always_print_primitive_fields): snake_case names, fields
-- without presence printed even when unset, an unset message field left out.
function render(type_name, bytes)
  local spec, values = DETAILS[type_name], {}
  for _, f in ipairs(fields(bytes)) do
    local field = spec.fields[f.n]
    if field ~= nil and f.v ~= nil then
      local list = values[f.n] or {}
      values[f.n] = list
      if field.k == "map" then
        local key, value = "", ""
        for _, entry in ipairs(fields(f.v)) do
          if entry.n == 1 then key = entry.v elseif entry.n == 2 then value = entry.v end
        end
        list[#list + 1] = quote(key) .. ":" .. quote(value)
      else
        list[#list + 1] = scalar(field, f.v)
      end
    end
  end
  local members = {}
  for _, number in ipairs(spec.order) do
    local field, list = spec.fields[number], values[number]
    local value
    if field.k == "map" then
      value = "{" .. table.concat(list or {}, ",") .. "}"
    elseif field.r then
      value = "[" .. table.concat(list or {}, ",") .. "]"
    elseif list ~= nil then
      value = list[#list]
    else
      value = DEFAULTS[field.k]
    end
    if value ~= nil then members[#members + 1] = quote(field.n) .. ":" .. value end
  end
  return table.concat(members, ",")
end

local function percent_decoded(s)
  return (s:gsub("%%(%x%x)", function(hex) return string.char(tonumber(hex, 16)) end))
end

-- grpc-gateway passes a service's error as the HTTP status and its grpc-* headers, no body.
local function service_error(grpc_status)
  local code = tonumber(grpc_status) or 2
  local message = percent_decoded(kong.response.get_header("grpc-message") or "")
  local details, encoded = {}, kong.response.get_header("grpc-status-details-bin")
  local bytes = encoded and ngx.decode_base64(encoded)
  if encoded and not bytes then error("grpc-status-details-bin is not base64", 0) end
  for _, f in ipairs(bytes and fields(bytes) or {}) do
    if f.n == 1 then
      code = f.v
    elseif f.n == 2 then
      message = f.v
    elseif f.n == 3 then
      local type_url, value = "", ""
      for _, any in ipairs(fields(f.v)) do
        if any.n == 1 then type_url = any.v elseif any.n == 2 then value = any.v end
      end
      local type_name = type_url:match("([^/]+)$")
      if DETAILS[type_name] then
        local members = render(type_name, value)
        if members ~= "" then members = "," .. members end
        details[#details + 1] = '{"@type":' .. quote(type_url) .. members .. "}"
      end
    end
  end
  return '{"code":' .. string.format("%d", code) .. ',"message":' .. quote(message)
    .. ',"details":[' .. table.concat(details, ",") .. "]}"
end

return function()
  local status = kong.response.get_status()
  if status < 400 then return end
  local body
  if kong.response.get_source() == "service" then
    local grpc_status = kong.response.get_header("grpc-status")
    if grpc_status == nil or grpc_status == "0" then return end
    local ok, rendered = pcall(service_error, grpc_status)
    -- Details it cannot read: the answer goes as it came (status and grpc-* headers).
    if not ok then return end
    body = rendered
    for _, name in ipairs(GRPC_HEADERS) do kong.response.clear_header(name) end
  else
    body = error_body(status)
  end
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
