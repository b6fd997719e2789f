"""Strict input at the gateway: what a REST request may name, read from the descriptor set.

Envoy's transcoder drops unknown JSON body fields silently (proto3 JSON's lenient
mode) and words its other refusals for proto authors ("invalid value 45.5 for type
TYPE_STRING"). A Lua filter placed just before the transcoder checks each request
against its route's request message first: the body is JSON, names only fields the
message has (proto or lowerCamel name), each of the JSON type the proto3 JSON mapping
accepts, and the query names only the fields a GET may set. A refusal is a 400 in the
google.rpc.Status shape with a BadRequest violation per field, worded for client
developers, e.g. `amount must be a decimal string such as "45.50"`.

The schema is rendered into the filter's Lua source as a table literal (one entry per
message type); each route names its request type in its metadata."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from google.protobuf import descriptor_pb2

from services.launcher import lua
from services.launcher.routes import HttpRoute

FieldProto = descriptor_pb2.FieldDescriptorProto
# Where Kong's pre-function leaves its verdict (kong.ctx.shared) for the post-function.
KONG_VERDICT = "expense.strict_input"
# Route metadata namespace: the Lua filter's name in the chain (Envoy keys route
# metadata for a Lua filter by the filter's name).
FILTER_NAME = "expense.strict_input"
# Money travels as a decimal string: a string field with one of these names.
DECIMAL_FIELD = re.compile(r"^(amount|.+_amount)$")
_SCALARS = {
    FieldProto.TYPE_STRING: "string",
    FieldProto.TYPE_BYTES: "bytes",
    FieldProto.TYPE_BOOL: "bool",
    FieldProto.TYPE_DOUBLE: "number",
    FieldProto.TYPE_FLOAT: "number",
    FieldProto.TYPE_ENUM: "enum",
}
# Well-known types whose JSON form is not an object of their fields.
_WELL_KNOWN = {
    ".google.protobuf.Timestamp": "string",
    ".google.protobuf.Duration": "string",
    ".google.protobuf.FieldMask": "string",
    ".google.protobuf.StringValue": "string",
    ".google.protobuf.BytesValue": "bytes",
    ".google.protobuf.BoolValue": "bool",
    ".google.protobuf.Int32Value": "integer",
    ".google.protobuf.UInt32Value": "integer",
    ".google.protobuf.Int64Value": "integer",
    ".google.protobuf.UInt64Value": "integer",
    ".google.protobuf.DoubleValue": "number",
    ".google.protobuf.FloatValue": "number",
    ".google.protobuf.Struct": "any",
    ".google.protobuf.Value": "any",
    ".google.protobuf.ListValue": "any",
    ".google.protobuf.Any": "any",
}


def _messages(
    files: Iterable[descriptor_pb2.FileDescriptorProto],
) -> dict[str, descriptor_pb2.DescriptorProto]:
    """Every message type by its full name (".pkg.Outer.Inner")."""
    found: dict[str, descriptor_pb2.DescriptorProto] = {}

    def add(prefix: str, message: descriptor_pb2.DescriptorProto) -> None:
        name = f"{prefix}.{message.name}"
        found[name] = message
        for nested in message.nested_type:
            add(name, nested)

    for file in files:
        for message in file.message_type:
            add(f".{file.package}" if file.package else "", message)
    return found


class Schema:
    """The JSON shape of the mesh's request messages, for the Lua filter."""

    def __init__(self, files: Iterable[descriptor_pb2.FileDescriptorProto]) -> None:
        self._messages = _messages(files)
        self.types: dict[str, dict[str, dict[str, Any]]] = {}

    def request(self, type_name: str) -> str:
        """Adds a request message (and every message it reaches); returns its key."""
        self._add(f".{type_name}")
        return type_name

    def _add(self, full_name: str) -> None:
        key = full_name.removeprefix(".")
        if key in self.types:
            return
        self.types[key] = {}
        fields: dict[str, dict[str, Any]] = {}
        for field in self._messages[full_name].field:
            spec = self._field(field)
            fields[field.name] = spec
            json_name = field.json_name or _lower_camel(field.name)
            if json_name != field.name:
                fields[json_name] = spec
        self.types[key] = fields

    def _field(self, field: FieldProto) -> dict[str, Any]:
        spec: dict[str, Any] = {"n": field.name}
        if field.label == FieldProto.LABEL_REPEATED:
            entry = self._messages.get(field.type_name)
            if entry is not None and entry.options.map_entry:
                return {**spec, "k": "map", "v": self._field(entry.field[1])}
            spec["r"] = True
        spec.update(self._kind(field))
        return spec

    def _kind(self, field: FieldProto) -> dict[str, Any]:
        if field.type == FieldProto.TYPE_MESSAGE:
            if field.type_name in _WELL_KNOWN:
                return {"k": _WELL_KNOWN[field.type_name]}
            self._add(field.type_name)
            return {"k": "message", "m": field.type_name.removeprefix(".")}
        if field.type in _SCALARS:
            kind = _SCALARS[field.type]
            decimal = kind == "string" and DECIMAL_FIELD.match(field.name) is not None
            return {"k": kind, **({"d": True} if decimal else {})}
        return {"k": "integer"}

    def body_type(self, route: HttpRoute) -> str:
        """The message the route's JSON body is: the request (`body: "*"`), the message
        field the rule names (`body: "preferences"`), or "" for none."""
        if route.body == "*":
            return self.request(route.request_type)
        if not route.body:
            return ""
        field = next(f for f in self._messages[f".{route.request_type}"].field if f.name == route.body)
        return self.request(field.type_name.removeprefix("."))

    def query_fields(self, route: HttpRoute) -> dict[str, str]:
        """What a route's query may set: each scalar field bound neither by the path nor
        by the body (none when the body is the whole request), nested messages' fields as
        dotted paths (`a.b=1`), as the transcoder maps them."""
        if route.body == "*":
            return {}
        self.request(route.request_type)
        bound = {*route.path_fields, *([route.body] if route.body else [])}
        return dict(self._query_paths(route.request_type, "", bound))

    def _query_paths(self, type_name: str, prefix: str, bound: set[str]) -> Iterator[tuple[str, str]]:
        for name, spec in self.types[type_name].items():
            if name != spec["n"] or f"{prefix}{name}" in bound:
                continue
            if spec["k"] == "message" and not spec.get("r"):
                yield from self._query_paths(spec["m"], f"{prefix}{name}.", bound)
            elif spec["k"] not in ("message", "map", "any"):
                yield f"{prefix}{name}", spec["k"]


def _lower_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def route_metadata(schema: Schema, route: HttpRoute) -> dict[str, Any]:
    """What the Lua filter reads for one route (route metadata under FILTER_NAME); none
    for a google.api.HttpBody route (its bytes pass as they came: a provider's callback)."""
    if route.raw_body:
        return {}
    return {"body": schema.body_type(route), "query": schema.query_fields(route)}


def lua_source(schema: Schema, max_json_depth: int) -> str:
    """Envoy's strict-input filter: the checks, then Envoy's entry point."""
    return _core(schema, max_json_depth) + _ENVOY


def kong_access_source(
    schema: Schema, routes: Iterable[HttpRoute], max_json_depth: int, max_body: int
) -> str:
    """Kong's strict input (the global pre-function, access phase): the same checks, each
    route's rules found by the matched route's name. The chunk returns the function Kong
    runs per request (compiled once per worker), in Kong's sandbox (no require, no
    setmetatable). The verdict waits in kong.ctx.shared for KONG_REFUSE (the post-function,
    last in the access phase), so that jwt, the rate limits and the body limit answer first,
    as in Envoy's filter order."""
    rules = {route.name: metadata for route in routes if (metadata := route_metadata(schema, route))}
    adapter = _KONG.replace("@ROUTES@", lua.literal(rules)).replace("@MAX_BODY@", str(max_body))
    return _core(schema, max_json_depth) + adapter


def _core(schema: Schema, max_json_depth: int) -> str:
    return (
        _STRICT_INPUT.replace("@TYPES@", lua.literal(schema.types))
        .replace("@MAX_DEPTH@", str(max_json_depth))
        .replace("@QUOTE@", lua.JSON_QUOTE)
        .lstrip()
    )


# JSON is parsed into tagged values ({t = "object", keys = {...}, vals = {...}}, ...), so
# that a number, null and key order survive; then checked against the route's type.
_STRICT_INPUT = r"""
local TYPES = @TYPES@
local MAX_DEPTH = @MAX_DEPTH@
local BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
local ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
local DOMAIN = "expense-mesh"
local MAX_VIOLATIONS = 20

-- ------------------------------------------------------------------ JSON text
@QUOTE@
-- An object of a class: the methods copied in (Kong's sandbox has no setmetatable).
local function new(class, fields)
  for name, method in pairs(class) do fields[name] = method end
  return fields
end

local function utf8_char(code)
  if code < 0x80 then return string.char(code) end
  if code < 0x800 then return string.char(0xC0 + math.floor(code / 64), 0x80 + code % 64) end
  if code < 0x10000 then
    return string.char(0xE0 + math.floor(code / 4096), 0x80 + math.floor(code / 64) % 64, 0x80 + code % 64)
  end
  return string.char(0xF0 + math.floor(code / 262144), 0x80 + math.floor(code / 4096) % 64,
                     0x80 + math.floor(code / 64) % 64, 0x80 + code % 64)
end

local Parser = {}

local function fail(position, what)
  error({json = true, message = what .. " at character " .. position}, 0)
end

function Parser:skip()
  self.i = self.text:find("[^ \t\r\n]", self.i) or #self.text + 1
end

-- Skips white space inside an object or array, which must go on.
function Parser:more()
  self:skip()
  if self.i > #self.text then fail(self.i, "unexpected end") end
end

function Parser:string()
  local text, i, parts = self.text, self.i + 1, {}
  while true do
    local stop = text:find('["\\%c]', i)
    if stop == nil then fail(self.i, "unterminated string") end
    parts[#parts + 1] = text:sub(i, stop - 1)
    local c = text:sub(stop, stop)
    if c == '"' then self.i = stop + 1; return table.concat(parts) end
    if c ~= "\\" then fail(stop, "control character in a string") end
    local escape = text:sub(stop + 1, stop + 1)
    local simple = ({['"'] = '"', ["\\"] = "\\", ["/"] = "/",
                     b = "\b", f = "\f", n = "\n", r = "\r", t = "\t"})[escape]
    if simple then
      parts[#parts + 1] = simple; i = stop + 2
    elseif escape == "u" and text:sub(stop + 2, stop + 5):match("^%x%x%x%x$") then
      -- A character beyond the BMP comes as a UTF-16 surrogate pair: one code point (a name
      -- quoted back in a refusal must be UTF-8); a lone surrogate is no character at all.
      local code, low = tonumber(text:sub(stop + 2, stop + 5), 16), nil
      if code >= 0xD800 and code <= 0xDBFF and text:sub(stop + 6, stop + 7) == "\\u" then
        low = tonumber(text:sub(stop + 8, stop + 11):match("^%x%x%x%x$") or "", 16)
      end
      if low ~= nil and low >= 0xDC00 and low <= 0xDFFF then
        parts[#parts + 1] = utf8_char(0x10000 + (code - 0xD800) * 1024 + (low - 0xDC00)); i = stop + 12
      elseif code >= 0xD800 and code <= 0xDFFF then
        fail(stop, "a lone UTF-16 surrogate in a string")
      else
        parts[#parts + 1] = utf8_char(code); i = stop + 6
      end
    else
      fail(stop, "invalid escape in a string")
    end
  end
end

function Parser:number()
  local text, start = self.text, self.i
  local j = start
  if text:sub(j, j) == "-" then j = j + 1 end
  local digits = text:match("^%d+", j)
  if digits == nil or (#digits > 1 and digits:sub(1, 1) == "0") then fail(start, "invalid number") end
  j = j + #digits
  if text:sub(j, j) == "." then
    local fraction = text:match("^%d+", j + 1)
    if fraction == nil then fail(start, "invalid number") end
    j = j + 1 + #fraction
  end
  if text:sub(j, j):match("[eE]") then
    j = j + 1
    if text:sub(j, j):match("[+-]") then j = j + 1 end
    local exponent = text:match("^%d+", j)
    if exponent == nil then fail(start, "invalid number") end
    j = j + #exponent
  end
  self.i = j
  return {t = "number", v = text:sub(start, j - 1)}
end

function Parser:value(depth)
  if depth > MAX_DEPTH then fail(self.i, "nested too deeply") end
  self:skip()
  local text, i = self.text, self.i
  local c = text:sub(i, i)
  if c == "{" then return self:object(depth) end
  if c == "[" then return self:array(depth) end
  if c == '"' then return {t = "string", v = self:string()} end
  if c == "-" or c:match("%d") then return self:number() end
  for literal, tag in pairs({["true"] = "bool", ["false"] = "bool", ["null"] = "null"}) do
    if text:sub(i, i + #literal - 1) == literal then
      self.i = i + #literal
      return {t = tag}
    end
  end
  if c == "" then fail(i, "unexpected end") end
  fail(i, "unexpected character")
end

function Parser:object(depth)
  local result = {t = "object", keys = {}, vals = {}}
  self.i = self.i + 1
  self:skip()
  if self.text:sub(self.i, self.i) == "}" then self.i = self.i + 1; return result end
  while true do
    self:more()
    if self.text:sub(self.i, self.i) ~= '"' then fail(self.i, "expected a field name") end
    local key = self:string()
    self:more()
    if self.text:sub(self.i, self.i) ~= ":" then fail(self.i, "expected ':'") end
    self.i = self.i + 1
    if result.vals[key] == nil then result.keys[#result.keys + 1] = key end
    result.vals[key] = self:value(depth + 1)
    self:more()
    local c = self.text:sub(self.i, self.i)
    self.i = self.i + 1
    if c == "}" then return result end
    if c ~= "," then fail(self.i - 1, "expected ',' or '}'") end
  end
end

function Parser:array(depth)
  local result = {t = "array", items = {}}
  self.i = self.i + 1
  self:skip()
  if self.text:sub(self.i, self.i) == "]" then self.i = self.i + 1; return result end
  while true do
    result.items[#result.items + 1] = self:value(depth + 1)
    self:more()
    local c = self.text:sub(self.i, self.i)
    self.i = self.i + 1
    if c == "]" then return result end
    if c ~= "," then fail(self.i - 1, "expected ',' or ']'") end
  end
end

local function parse(text)
  local parser = new(Parser, {text = text, i = 1})
  local value = parser:value(0)
  parser:skip()
  if parser.i <= #text then fail(parser.i, "unexpected text after the JSON value") end
  return value
end

-- ------------------------------------------------------------------ checks
local EXPECTED = {
  string = "a string", bytes = "a base64 string", bool = "true or false",
  integer = "an integer", number = "a number", enum = "a string", message = "an object",
  map = "an object",
}
local DECIMAL = 'a decimal string such as "45.50"'

local function kind_ok(value, spec)
  local t, k = value.t, spec.k
  if k == "any" then return true end
  if k == "string" or k == "bytes" then return t == "string" end
  if k == "bool" then return t == "bool" end
  if k == "integer" then
    return (t == "number" or t == "string") and value.v:match("^%-?%d+$") ~= nil
  end
  if k == "number" then return t == "number" or t == "string" end
  if k == "enum" then return t == "string" or (t == "number" and value.v:match("^%d+$") ~= nil) end
  return t == "object"
end

local function expected(spec)
  if spec.d then return DECIMAL end
  return EXPECTED[spec.k]
end

local Checker = {}

function Checker:violate(field, description, reason)
  if #self.violations < MAX_VIOLATIONS then
    self.violations[#self.violations + 1] = {field = field, description = description}
  end
  self.reason = self.reason or reason
end

function Checker:field(value, spec, path)
  if value.t == "null" then return end
  if spec.r then
    if value.t ~= "array" then
      local items = expected(spec):gsub("^an? ", "") .. "s"
      return self:violate(path, "must be an array of " .. items, "WRONG_TYPE")
    end
    for index, item in ipairs(value.items) do self:single(item, spec, path .. "[" .. (index - 1) .. "]") end
  elseif spec.k == "map" then
    if value.t ~= "object" then return self:violate(path, "must be an object", "WRONG_TYPE") end
    for _, key in ipairs(value.keys) do self:single(value.vals[key], spec.v, path .. "." .. key) end
  else
    self:single(value, spec, path)
  end
end

function Checker:single(value, spec, path)
  if not kind_ok(value, spec) then
    return self:violate(path, "must be " .. expected(spec), "WRONG_TYPE")
  end
  if spec.k == "message" and value.t == "object" then self:object(value, spec.m, path .. ".") end
end

-- A name the message lacks but one of its message fields has: "did you mean profile.x?"
local function nested_hint(type_name, key)
  for name, spec in pairs(TYPES[type_name]) do
    if spec.k == "message" and not spec.r and name == spec.n and TYPES[spec.m][key] ~= nil then
      return "; did you mean " .. spec.n .. "." .. key .. "?"
    end
  end
  return ""
end

function Checker:object(value, type_name, prefix)
  local fields = TYPES[type_name]
  for _, key in ipairs(value.keys) do
    local spec = fields[key]
    if spec == nil then
      local description = "is not a field of this request" .. nested_hint(type_name, key)
      self:violate(prefix .. key, description, "UNKNOWN_FIELD")
    else
      self:field(value.vals[key], spec, prefix .. spec.n)
    end
  end
end

-- ------------------------------------------------------------------ query
local function unescape(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(hex) return string.char(tonumber(hex, 16)) end))
end

function Checker:query(query, allowed)
  for pair in query:gmatch("[^&]+") do
    local name, value = pair:match("^([^=]*)=?(.*)$")
    name, value = unescape(name), unescape(value)
    local kind = allowed[name]
    if kind == nil then
      self:violate(name, "is not a query parameter of this request", "UNKNOWN_FIELD")
    elseif kind == "integer" and not value:match("^%-?%d+$") then
      self:violate(name, "must be an integer", "WRONG_TYPE")
    elseif kind == "bool" and not (value == "true" or value == "false") then
      self:violate(name, "must be true or false", "WRONG_TYPE")
    end
  end
end

-- ------------------------------------------------------------------ body
function Checker:body(body_type, text)
  if not text:match("[^ \t\r\n]") then return end
  if body_type == "" then return self:violate("", "this request takes no body", "UNEXPECTED_BODY") end
  local ok, parsed = pcall(parse, text)
  if not ok then
    if type(parsed) ~= "table" or not parsed.json then error(parsed, 0) end
    self:violate("", "the body is not valid JSON: " .. parsed.message, "MALFORMED_JSON")
  elseif parsed.t ~= "object" then
    self:violate("", "the body must be a JSON object", "WRONG_TYPE")
  else
    self:object(parsed, body_type, "")
  end
end

-- ------------------------------------------------------------------ answer
local function refusal(checker)
  local violations, first = {}, checker.violations[1]
  for _, v in ipairs(checker.violations) do
    violations[#violations + 1] =
      '{"field":' .. quote(v.field) .. ',"description":' .. quote(v.description) .. "}"
  end
  local message
  if #checker.violations == 1 then
    message = (first.field ~= "" and first.field .. " " or "") .. first.description
  else
    local names = {}
    for _, v in ipairs(checker.violations) do names[#names + 1] = v.field end
    message = "invalid fields: " .. table.concat(names, ", ")
  end
  return '{"code":3,"message":' .. quote(message) .. ',"details":['
    .. '{"@type":"' .. BAD_REQUEST .. '","field_violations":[' .. table.concat(violations, ",") .. "]},"
    .. '{"@type":"' .. ERROR_INFO .. '","reason":"' .. checker.reason
    .. '","domain":"' .. DOMAIN .. '","metadata":{}}]}'
end

-- The 400 body (google.rpc.Status JSON) refusing a request to a route whose body is a
-- `body_type` ("" for none) and whose query may set `allowed_query`; nil when it may pass.
-- With `text` nil (the body is not at hand) only the query is checked.
local function check(body_type, allowed_query, query, text)
  local checker = new(Checker, {violations = {}})
  if query ~= nil and query ~= "" then checker:query(query, allowed_query) end
  if text ~= nil then checker:body(body_type, text) end
  if #checker.violations > 0 then return refusal(checker) end
  return nil
end
"""

# Envoy: the route's rules are its metadata under FILTER_NAME; the filter answers itself and
# marks the answer for local_reply_config to pass on unchanged.
_ENVOY = r"""
local REPLY = "expense.gateway.reply"

-- Everything the route's metadata and the headers give is read before handle:body(), which
-- waits for the whole body: Envoy's objects fetched before that wait are out of scope after it.
function envoy_on_request(handle)
  local metadata = handle:metadata()
  local allowed_query = metadata:get("query")
  if allowed_query == nil then return end
  local body_type = metadata:get("body")
  local query = handle:headers():get(":path"):match("%?(.*)$")
  local body = handle:body()
  local text = body and body:getBytes(0, body:length()) or ""
  local refused = check(body_type, allowed_query, query, text)
  if refused then
    handle:streamInfo():dynamicMetadata():set(REPLY, "json", true)
    handle:respond({[":status"] = "400"}, refused)
  end
end
"""

# Kong: the rules of every route by its name; the verdict is kept, not answered (see
# kong_access_source). A body over the limit is not read: request-size-limiting answers 413.
# get_raw_body gives nil for a body Kong buffered to disk (over client_body_buffer_size,
# which compose and k8s set to the limit): its query is still checked.
_KONG = (
    r"""
local ROUTES = @ROUTES@
local MAX_BODY = @MAX_BODY@
"""
    + f'local VERDICT = "{KONG_VERDICT}"\n'
    + r"""
return function()
  local route = kong.router.get_route()
  local rules = route and ROUTES[route.name]
  if rules == nil then return end
  local text
  local length = tonumber(kong.request.get_header("content-length") or "")
  if length == nil or length <= MAX_BODY then text = kong.request.get_raw_body() end
  kong.ctx.shared[VERDICT] = check(rules.body, rules.query, kong.request.get_raw_query(), text)
end
"""
)

# Kong's post-function, last in the access phase: answers the pre-function's verdict once the
# plugins before it (jwt, rate-limiting, request-size-limiting) let the request through.
KONG_REFUSE = f"""
local VERDICT = "{KONG_VERDICT}"

return function()
  local refused = kong.ctx.shared[VERDICT]
  if refused then
    return kong.response.exit(400, refused, {{["Content-Type"] = "application/json"}})
  end
end
""".lstrip()
