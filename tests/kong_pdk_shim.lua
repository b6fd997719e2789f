-- Runs kong/kong.yml's pre-function and post-function chunks the way Kong 3.x runs them,
-- outside Kong, for tests/test_kong_lua.py. Usage: <lua5.4|luajit> kong_pdk_shim.lua <spec.json>
--
-- spec.json: {"chunks": {"pre_access", "post_access", "header_filter", "body_filter"},
--             "cases": [{"id", "route", "method", "headers", "query", "body", ...}]}
-- Prints one JSON line per case: the answer the client would get.
--
-- What is Kong's, reproduced here:
-- * the sandbox (kong/tools/kong-lua-sandbox.lua, `untrusted_lua = sandbox`, Kong's default):
--   a chunk sees only the globals listed in SAFE, plus `kong` and `ngx`;
-- * a chunk that returns a function is run once and its function on every request
--   (kong/plugins/pre-function/_handler.lua);
-- * the order: Kong's router answers 404 before any access handler; pre-function
--   (priority 1000000) first in access; a plugin between them (jwt, grpc-gateway,
--   rate-limiting, request-size-limiting: case.plugin_exit) may answer, and then the
--   later access handlers, post-function's included, do not run; then header_filter and
--   body_filter of post-function (priority -1000, after every other plugin's) on every answer;
-- * the PDK functions used, each allowed only in its documented phases, and
--   kong.response.get_source(): "exit" (a plugin or the router answered), "error" (nginx
--   could not reach the upstream), "service" (the upstream answered);
-- * body_filter's ngx.arg: chunks, the last flagged; set_raw_body ends the answer.
local cjson = require "cjson"

local SAFE = [[
_VERSION assert error ipairs next pairs pcall select tonumber tostring type unpack xpcall
coroutine.create coroutine.resume coroutine.running coroutine.status coroutine.wrap coroutine.yield
math.abs math.acos math.asin math.atan math.atan2 math.ceil math.cos math.cosh math.deg math.exp
math.fmod math.floor math.frexp math.huge math.ldexp math.log math.log10 math.max math.min
math.modf math.pi math.pow math.rad math.random math.sin math.sinh math.sqrt math.tan math.tanh
os.clock os.date os.difftime os.time
string.byte string.char string.find string.format string.gmatch string.gsub string.len
string.lower string.match string.rep string.reverse string.sub string.upper
table.concat table.insert table.maxn table.remove table.sort
]]

-- OpenResty's ngx.decode_base64 (padding optional, as nginx's decoder): nil when malformed.
local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function decode_base64(text)
  text = text:gsub("=+$", "")
  if text:find("[^%w%+/]") or #text % 4 == 1 then return nil end
  local bits = text:gsub(".", function(c)
    local n, out = ALPHABET:find(c, 1, true) - 1, ""
    for bit = 5, 0, -1 do out = out .. (math.floor(n / 2 ^ bit) % 2) end
    return out
  end)
  bits = bits:sub(1, #bits - #bits % 8)
  return (bits:gsub("%d%d%d%d%d%d%d%d", function(byte) return string.char(tonumber(byte, 2)) end))
end

local function sandbox_env(kong)
  -- Kong's sandbox passes the whole ngx; the chunks use decode_base64 of it.
  local env = {kong = kong, ngx = {decode_base64 = decode_base64}}
  for id in SAFE:gmatch("%S+") do
    local module, name = id:match("([^%.]+)%.([^%.]+)")
    if module then
      env[module] = env[module] or {}
      env[module][name] = _G[module][name]
    else
      env[id] = _G[id]
    end
  end
  env._G = env
  return env
end

local function lower_keys(t)
  local out = {}
  for k, v in pairs(t or {}) do out[k:lower()] = v end
  return out
end

-- The PDK subset the chunks use, over one request's state.
local function pdk(case, state)
  local function allowed(name, phases)
    if not phases[state.phase] then
      error(name .. " called in phase " .. tostring(state.phase), 2)
    end
  end
  local ANY = {access = true, header_filter = true, body_filter = true}
  local request_headers = lower_keys(case.headers)
  local kong = {ctx = {shared = state.shared}}
  kong.router = {
    get_route = function()
      allowed("kong.router.get_route", ANY)
      return case.route and {name = case.route} or nil
    end,
  }
  kong.request = {
    get_header = function(name)
      allowed("kong.request.get_header", ANY)
      return request_headers[name:lower()]
    end,
    get_raw_query = function()
      allowed("kong.request.get_raw_query", ANY)
      return case.query or ""
    end,
    -- nil when the body went to a file (beyond client_body_buffer_size): case.body_on_disk.
    get_raw_body = function()
      allowed("kong.request.get_raw_body", {access = true})
      state.body_reads = state.body_reads + 1
      if case.body_on_disk then return nil, "request body did not fit into client body buffer" end
      return case.body or ""
    end,
  }
  kong.response = {
    exit = function(status, body, headers)
      allowed("kong.response.exit", {access = true})
      assert(type(status) == "number", "status must be a number")
      assert(body == nil or type(body) == "string", "a string body is sent as it is")
      state.exit = {status = status, body = body or "", headers = headers or {}, source = "exit"}
    end,
    get_status = function()
      allowed("kong.response.get_status", {header_filter = true, body_filter = true})
      return state.answer.status
    end,
    get_source = function()
      allowed("kong.response.get_source", {header_filter = true, body_filter = true})
      return state.answer.source
    end,
    get_header = function(name)
      allowed("kong.response.get_header", ANY)
      return state.answer.headers[name:lower()]
    end,
    set_header = function(name, value)
      allowed("kong.response.set_header", {access = true, header_filter = true})
      assert(type(name) == "string" and type(value) == "string", "header name and value are strings")
      state.answer.headers[name:lower()] = value
    end,
    clear_header = function(name)
      allowed("kong.response.clear_header", {access = true, header_filter = true})
      state.answer.headers[name:lower()] = nil
    end,
    set_raw_body = function(body)
      allowed("kong.response.set_raw_body", {body_filter = true})
      assert(type(body) == "string", "body must be a string")
      state.arg[1], state.arg[2] = body, true
    end,
  }
  return kong
end

-- Compiled as Kong does: in the sandbox, run once; its returned function is the handler.
local function handler(code, name, env)
  local chunk = assert(load(code, name, "t", env))
  local returned = chunk()
  assert(type(returned) == "function", name .. " must return the function Kong runs per request")
  return returned
end

local ROUTER_404 = '{\n  "message":"no Route matched with those values",\n  "request_id":"abc"\n}'

local function run(case, chunks)
  local state = {shared = {}, body_reads = 0}
  local env = sandbox_env(pdk(case, state))
  local pre_access = handler(chunks.pre_access, "pre-function access", env)
  local post_access = handler(chunks.post_access, "post-function access", env)
  local header_filter = handler(chunks.header_filter, "post-function header_filter", env)
  local body_filter = handler(chunks.body_filter, "post-function body_filter", env)

  if case.route == nil then
    state.answer = {status = 404, body = ROUTER_404, headers = {}, source = "exit"}
  else
    state.phase = "access"
    pre_access()
    if case.plugin_exit then
      state.answer = {status = case.plugin_exit.status, body = case.plugin_exit.body or "",
                      headers = lower_keys(case.plugin_exit.headers), source = "exit"}
    else
      post_access()
      if state.exit then
        state.answer = state.exit
        state.answer.headers = lower_keys(state.answer.headers)
      elseif case.upstream_error then
        state.answer = {status = case.upstream_error, body = "<html>An invalid response</html>",
                        headers = {["content-type"] = "text/html"}, source = "error"}
      else
        local service = case.service or {status = 200, body = "{}"}
        state.answer = {status = service.status, body = service.body or "",
                        headers = lower_keys(service.headers), source = "service"}
      end
    end
  end

  state.phase = "header_filter"
  header_filter()
  state.phase = "body_filter"
  -- Two chunks, the second flagged last, as nginx hands a body to the filters.
  local body, out = state.answer.body, {}
  local half = math.floor(#body / 2)
  for _, piece in ipairs({{body:sub(1, half), false}, {body:sub(half + 1), true}}) do
    state.arg = {piece[1], piece[2]}
    body_filter()
    out[#out + 1] = state.arg[1] or ""
    if state.arg[2] then break end
  end
  return {id = case.id, status = state.answer.status, headers = state.answer.headers,
          body = table.concat(out), body_reads = state.body_reads}
end

local file = assert(io.open(arg[1]))
local spec = cjson.decode(file:read("*a"))
file:close()
for _, case in ipairs(spec.cases) do
  print(cjson.encode(run(case, spec.chunks)))
end
