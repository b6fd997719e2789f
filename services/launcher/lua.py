"""Lua source shared by the gateways' generated filters (Envoy's Lua filters, Kong's
pre-/post-function): literals rendered from Python data, and a JSON string quoter. The
code runs in LuaJIT (Envoy, Kong) and is tested in Lua 5.4 too (tests/test_kong_lua.py)."""

from __future__ import annotations

import json
from typing import Any


def literal(value: Any) -> str:
    """A Lua expression for a dict, list, bool, int or (ASCII) str."""
    if isinstance(value, list):
        return "{" + ",".join(literal(item) for item in value) + "}"
    if isinstance(value, dict):
        items = ",".join(f"[{literal(key)}]={literal(item)}" for key, item in value.items())
        return "{" + items + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        # JSON's escapes of a str are valid in a Lua string literal (ASCII only).
        return json.dumps(value)
    raise TypeError(f"no Lua literal for {value!r}")


# quote(s): s as a JSON string literal.
JSON_QUOTE = r"""
local function quote(s)
  s = s:gsub('[%c"\\]', function(c)
    local named = {['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t'}
    return named[c] or string.format("\\u%04x", c:byte())
  end)
  return '"' .. s .. '"'
end
""".strip()
