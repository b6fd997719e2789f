"""Child processes of `up`: started in order, output relayed with a name prefix,
stopped in reverse order (SIGTERM, then SIGKILL after a grace period).

Why not honcho's Manager (installed, and fine for a Procfile): it starts every
process at once, while NATS must accept connections before the services start;
it runs commands through a shell; its blocking loop owns the signal handlers, so
readiness checks would need a thread beside it; and it does not say which child
stopped first. asyncio subprocesses give ordering, readiness waits and a clean
shutdown in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

OUTPUT_LINE_LIMIT = 1 << 20


class ChildFailed(Exception):
    """A child exited although nobody asked it to (or a one-shot child failed)."""

    def __init__(self, name: str, returncode: int) -> None:
        super().__init__(f"{name} exited with code {returncode}")
        self.name = name
        self.returncode = returncode


def say(name: str, text: str) -> None:
    sys.stdout.write(f"{name:>9} | {text}\n")
    sys.stdout.flush()


@dataclass
class Child:
    name: str
    process: asyncio.subprocess.Process
    relay: asyncio.Task[None]


class Supervisor:
    def __init__(self, env: Mapping[str, str], grace_seconds: float = 10.0) -> None:
        self.env = dict(env)
        self.grace_seconds = grace_seconds
        self.children: list[Child] = []
        self.failure: asyncio.Future[ChildFailed] = asyncio.get_running_loop().create_future()
        self._stopping = False
        self._watchers: list[asyncio.Task[None]] = []

    async def _spawn(self, name: str, argv: Sequence[str]) -> Child:
        process = await asyncio.create_subprocess_exec(
            *argv,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            limit=OUTPUT_LINE_LIMIT,
            # Own process group: a terminal's Ctrl-C reaches only the launcher,
            # which then stops the children in order; killpg also reaches any
            # grandchild a wrapper script may have left.
            start_new_session=True,
        )
        assert process.stdout is not None
        return Child(name, process, asyncio.create_task(_relay(name, process.stdout)))

    async def run_once(self, name: str, argv: Sequence[str]) -> None:
        """Runs a one-shot command (a migration) to completion; raises ChildFailed."""
        child = await self._spawn(name, argv)
        try:
            returncode = await child.process.wait()
            await child.relay
        except asyncio.CancelledError:
            await _terminate(child, self.grace_seconds)
            raise
        if returncode != 0:
            raise ChildFailed(name, returncode)

    async def start(self, name: str, argv: Sequence[str]) -> None:
        """Starts a long-running child; its exit before stop() resolves `failure`."""
        child = await self._spawn(name, argv)
        self.children.append(child)
        self._watchers.append(asyncio.create_task(self._watch(child)))
        say("launcher", f"started {name} (pid {child.process.pid})")

    async def _watch(self, child: Child) -> None:
        returncode = await child.process.wait()
        await child.relay
        if not self._stopping and not self.failure.done():
            self.failure.set_result(ChildFailed(child.name, returncode))

    async def stop(self) -> None:
        """Stops the children, last started first (Envoy, services, then NATS)."""
        self._stopping = True
        for child in reversed(self.children):
            await _terminate(child, self.grace_seconds)
        await asyncio.gather(*self._watchers, return_exceptions=True)


async def _relay(name: str, stream: asyncio.StreamReader) -> None:
    # Reading to the end also keeps the child from blocking on a full pipe.
    while True:
        try:
            line = await stream.readline()
        except ValueError:
            # Over OUTPUT_LINE_LIMIT: asyncio has already dropped it.
            say(name, "[line too long, dropped]")
            continue
        if not line:
            return
        say(name, line.decode(errors="replace").rstrip())


async def _terminate(child: Child, grace_seconds: float) -> None:
    if child.process.returncode is None:
        say("launcher", f"stopping {child.name}")
        _signal_group(child.process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(child.process.wait(), grace_seconds)
        except TimeoutError:
            say("launcher", f"{child.name} still running after {grace_seconds:g} s: killing it")
            _signal_group(child.process.pid, signal.SIGKILL)
            await child.process.wait()
    try:
        await asyncio.wait_for(asyncio.shield(child.relay), 1.0)
    except TimeoutError:
        # A grandchild still holds the output pipe: the group goes too.
        _signal_group(child.process.pid, signal.SIGKILL)
        await child.relay


def _signal_group(pid: int, signum: signal.Signals) -> None:
    # The child leads its own group (start_new_session), so its pid is the group id.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)
