"""Child processes of `up`: started in order, output relayed with a name prefix,
restarted with back-off when they exit, given up on when they keep crashing, and
stopped in reverse order (SIGTERM, then SIGKILL after a grace period).

Why not a library: honcho (a Procfile runner) starts everything at once and
restarts nothing; supervisord and circus are daemons of their own (a config file,
a control socket, circus a ZeroMQ stack) that `up` would have to drive from the
outside. NATS must accept connections before the services start and readiness is
waited for over gRPC: asyncio subprocesses give ordering, readiness waits,
restarts and a clean shutdown in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.kit.config.settings import SupervisionSettings

OUTPUT_LINE_LIMIT = 1 << 20


class ChildFailed(Exception):
    """A one-shot child failed, or a long-running one kept crashing and was given up on."""

    def __init__(self, name: str, returncode: int, detail: str = "") -> None:
        super().__init__(f"{name} exited with code {returncode}{detail}")
        self.name = name
        self.returncode = returncode


def say(name: str, text: str) -> None:
    sys.stdout.write(f"{name:>9} | {text}\n")
    sys.stdout.flush()


@dataclass
class Run:
    """One process of a child, and the task relaying its output."""

    process: asyncio.subprocess.Process
    relay: asyncio.Task[None]


@dataclass
class Child:
    """A long-running child: its current run and how many restarts in a row it had."""

    name: str
    argv: list[str]
    run: Run
    restarts: int = 0

    @property
    def process(self) -> asyncio.subprocess.Process:
        return self.run.process


def backoff_seconds(policy: SupervisionSettings, restart: int) -> float:
    """The wait before restart number `restart` (1, 2, ...): doubling, capped."""
    return min(policy.backoff_initial_seconds * 2 ** (restart - 1), policy.backoff_max_seconds)


class Supervisor:
    def __init__(
        self,
        env: Mapping[str, str],
        grace_seconds: float = 10.0,
        policy: SupervisionSettings | None = None,
    ) -> None:
        self.env = dict(env)
        self.grace_seconds = grace_seconds
        self.policy = policy or SupervisionSettings()
        self.children: list[Child] = []
        # The first child given up on (`up` fails while starting, logs it once running).
        self.failure: asyncio.Future[ChildFailed] = asyncio.get_running_loop().create_future()
        self._stopping = asyncio.Event()
        self._keepers: list[asyncio.Task[None]] = []

    async def _spawn(self, name: str, argv: Sequence[str]) -> Run:
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
        return Run(process, asyncio.create_task(_relay(name, process.stdout)))

    async def run_once(self, name: str, argv: Sequence[str]) -> None:
        """Runs a one-shot command (a migration) to completion; raises ChildFailed."""
        run = await self._spawn(name, argv)
        try:
            returncode = await run.process.wait()
            await run.relay
        except asyncio.CancelledError:
            await _terminate(name, run, self.grace_seconds)
            raise
        if returncode != 0:
            raise ChildFailed(name, returncode)

    async def start(self, name: str, argv: Sequence[str]) -> None:
        """Starts a long-running child, restarted whenever it exits until stop()."""
        child = Child(name, list(argv), await self._spawn(name, argv))
        self.children.append(child)
        self._keepers.append(asyncio.create_task(self._keep_running(child), name=f"keep {name}"))
        say("launcher", f"started {name} (pid {child.process.pid})")

    async def _keep_running(self, child: Child) -> None:
        while True:
            started = time.monotonic()
            returncode = await child.process.wait()
            # Its output to the end; a grandchild still holding the pipe goes with the group.
            await _terminate(child.name, child.run, self.grace_seconds)
            if self._stopping.is_set():
                return
            ran_seconds = time.monotonic() - started
            if ran_seconds >= self.policy.healthy_after_seconds:
                child.restarts = 0
            if child.restarts >= self.policy.max_restarts:
                self._give_up(child, returncode)
                return
            if not await self._restart(child, returncode, ran_seconds):
                return

    async def _restart(self, child: Child, returncode: int, ran_seconds: float) -> bool:
        """After the back-off, a new run of the child; False if stop() came first."""
        child.restarts += 1
        delay = backoff_seconds(self.policy, child.restarts)
        say(
            "launcher",
            f"{child.name} exited with code {returncode} after {ran_seconds:.1f} s: "
            f"restart {child.restarts}/{self.policy.max_restarts} in {delay:g} s",
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)
        if self._stopping.is_set():
            return False
        child.run = await self._spawn(child.name, child.argv)
        if self._stopping.is_set():
            # stop() may have passed this child while it was spawning.
            await _terminate(child.name, child.run, self.grace_seconds)
            return False
        say("launcher", f"restarted {child.name} (pid {child.process.pid})")
        return True

    def _give_up(self, child: Child, returncode: int) -> None:
        error = ChildFailed(child.name, returncode, f" {child.restarts + 1} times in a row: given up on")
        say("launcher", f"{error}; the rest of the mesh keeps running")
        if not self.failure.done():
            self.failure.set_result(error)

    async def stop(self) -> None:
        """Stops the children, last started first (Envoy, services, then NATS)."""
        self._stopping.set()
        for child in reversed(self.children):
            await _terminate(child.name, child.run, self.grace_seconds)
        await asyncio.gather(*self._keepers, return_exceptions=True)


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


async def _terminate(name: str, run: Run, grace_seconds: float) -> None:
    if run.process.returncode is None:
        say("launcher", f"stopping {name}")
        _signal_group(run.process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(run.process.wait(), grace_seconds)
        except TimeoutError:
            say("launcher", f"{name} still running after {grace_seconds:g} s: killing it")
            _signal_group(run.process.pid, signal.SIGKILL)
            await run.process.wait()
    try:
        await asyncio.wait_for(asyncio.shield(run.relay), 1.0)
    except TimeoutError:
        # A grandchild still holds the output pipe: the group goes too.
        _signal_group(run.process.pid, signal.SIGKILL)
        await run.relay


def _signal_group(pid: int, signum: signal.Signals) -> None:
    # The child leads its own group (start_new_session), so its pid is the group id.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)
