"""Closed-loop REST load with wrk: each connection sends its next request when the
previous answer arrived, so latencies under overload are understated (coordinated
omission); the open-loop generator (bench/load.py) gives the honest tails.

Requests come from a generated Lua script that rotates through variants (token,
path, body) and fills a unique request id into bodies that ask for one."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.stats import LatencySummary

REQUEST_ID_SLOT = "{request_id}"
RESULT_MARKER = "WRKJSON "
TIMEOUT_SECONDS = 5

LUA = r"""
local variants = { %(variants)s }
local nonce = "%(nonce)s"
local next_thread = 1
local counter = 0

function setup(thread)
  thread:set("thread_id", next_thread)
  next_thread = next_thread + 1
end

request = function()
  counter = counter + 1
  local v = variants[(counter %% #variants) + 1]
  local body = v.body
  if body ~= nil and v.unique then
    body = string.gsub(body, "{request_id}", nonce .. "-" .. thread_id .. "-" .. counter)
  end
  return wrk.format(v.method, v.path, v.headers, body)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%(marker)s{"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,' ..
    '"status":%%d,"timeout":%%d,"p50":%%d,"p90":%%d,"p99":%%d,"max":%%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


@dataclass(frozen=True)
class Variant:
    method: str
    path: str
    token: str = ""
    body: str | None = None


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    errors: dict[str, int]
    latency: LatencySummary

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def available() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(text: str) -> str:
    level = "=" * 3
    if f"]{level}]" in text:
        raise ValueError("text cannot be quoted as a Lua long string")
    return f"[{level}[{text}]{level}]"


def _lua_variant(variant: Variant) -> str:
    headers = ['["content-type"] = "application/json"']
    if variant.token:
        headers.append(f'["authorization"] = {_lua_string("Bearer " + variant.token)}')
    body = _lua_string(variant.body) if variant.body is not None else "nil"
    unique = "true" if variant.body is not None and REQUEST_ID_SLOT in variant.body else "false"
    return (
        f"{{ method = {_lua_string(variant.method)}, path = {_lua_string(variant.path)}, "
        f"headers = {{ {', '.join(headers)} }}, body = {body}, unique = {unique} }}"
    )


def script(variants: Sequence[Variant], nonce: str) -> str:
    return LUA % {
        "variants": ",\n  ".join(_lua_variant(variant) for variant in variants),
        "nonce": nonce,
        "marker": RESULT_MARKER,
    }


def run(
    base_url: str,
    variants: Sequence[Variant],
    connections: int,
    seconds: float,
    nonce: str,
    threads: int = 1,
) -> WrkResult:
    with tempfile.TemporaryDirectory(prefix="em-bench-wrk-") as scratch:
        lua = Path(scratch) / "load.lua"
        lua.write_text(script(variants, nonce))
        argv = [
            "wrk",
            f"-t{threads}",
            f"-c{max(connections, threads)}",
            f"-d{max(1, round(seconds))}s",
            f"--timeout={TIMEOUT_SECONDS}s",
            "-s",
            str(lua),
            base_url,
        ]
        completed = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=seconds + 60)
    line = next((ln for ln in completed.stdout.splitlines() if ln.startswith(RESULT_MARKER)), None)
    if completed.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}")
    data = json.loads(line.removeprefix(RESULT_MARKER))
    errors = {key: int(data[key]) for key in ("connect", "read", "write", "status", "timeout") if data[key]}
    return WrkResult(
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        errors=errors,
        latency=LatencySummary(
            p50=data["p50"] / 1000, p90=data["p90"] / 1000, p99=data["p99"] / 1000, max=data["max"] / 1000
        ),
    )
