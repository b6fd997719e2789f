"""NATS as k8s prod runs it: the config the prod overlay renders parses (nats-server -t), and
on a real 3-node JetStream cluster (three nats-server processes on loopback, routed as the
StatefulSet's pods are) the kit's EventBus, told event_stream_replicas = 3 as prod's
mesh-config tells it, keeps the events stream on all three nodes; with one node stopped,
events are still published and stored."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.kit.events.bus import EventBus
from services.launcher import generated, k8s
from services.launcher.nats import authorization_config, nats_users, password_variable
from tests.infra import NATS_SERVER, free_port, port_open, unique_prefix

SETTINGS = generated.committed_settings()
NODES = 3


def test_the_prod_nats_config_parses(tmp_path: Path) -> None:
    documents = k8s.prod_overlay(SETTINGS)[0]["nats"]
    (config,) = [doc for doc in documents if doc["kind"] == "ConfigMap"]
    (tmp_path / "nats.conf").write_text(config["data"]["nats.conf"])
    (tmp_path / "authorization.conf").write_text(
        authorization_config(SETTINGS.event_prefix, SETTINGS.mesh.services)
    )
    passwords = {password_variable(user): "k" + "0" * 40 for user in nats_users(SETTINGS.mesh.services)}
    result = subprocess.run(
        [str(NATS_SERVER), "-c", str(tmp_path / "nats.conf"), "-t"],
        env={"PATH": "/usr/bin:/bin", "POD_NAME": "nats-0", **passwords},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cluster" in config["data"]["nats.conf"]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[tuple[subprocess.Popen[bytes], int]]]:
    client_ports = [free_port() for _ in range(NODES)]
    route_ports = [free_port() for _ in range(NODES)]
    routes = ",".join(f"nats://127.0.0.1:{port}" for port in route_ports)
    nodes = []
    for index in range(NODES):
        command = [
            str(NATS_SERVER),
            "-js",
            "-sd",
            str(tmp_path / f"node-{index}"),
            "-a",
            "127.0.0.1",
            "-p",
            str(client_ports[index]),
            "--name",
            f"nats-{index}",
            "--cluster_name",
            "expense-mesh",
            "--cluster",
            f"nats://127.0.0.1:{route_ports[index]}",
            "--routes",
            routes,
        ]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        nodes.append((process, client_ports[index]))
    try:
        deadline = time.monotonic() + 15
        while not all(port_open("127.0.0.1", port) for _, port in nodes):
            assert time.monotonic() < deadline, "the NATS nodes did not start"
            time.sleep(0.1)
        yield nodes
    finally:
        for process, _ in nodes:
            process.terminate()
            process.wait(timeout=10)


async def _publish(bus: EventBus, subject: str, msg_id: str, within: float = 20.0) -> None:
    """Retried while the cluster notices the lost node (the message id makes a retry one event)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            await bus.publish(subject, b"payload", msg_id)
            return
        except Exception:
            assert asyncio.get_running_loop().time() < deadline, f"{msg_id} not stored within {within} s"
            await asyncio.sleep(0.5)


async def test_the_events_stream_is_replicated_on_three_nodes_and_survives_one(
    cluster: list[tuple[subprocess.Popen[bytes], int]],
) -> None:
    prefix = unique_prefix()
    # One node's address, as `nats://nats:4222` is one Service: the client learns the others.
    bus = EventBus(f"nats://127.0.0.1:{cluster[0][1]}", prefix, "cluster-test", stream_replicas=NODES)
    bus.start()  # makes the stream once JetStream's meta leader is elected (retrying until then)
    try:
        await asyncio.wait_for(bus.wait_ready(), 60)
        info = await bus.js.stream_info(bus.stream)
        assert info.config.num_replicas == NODES
        assert info.cluster is not None and len(info.cluster.replicas or []) == NODES - 1
        # A node goes (a pod evicted): neither the stream's leader nor the client's own server,
        # so the test sees the replicas' quorum at work, not a leader election or a reconnect.
        leader = info.cluster.leader
        (process, _) = next(
            node for index, node in enumerate(cluster) if index != 0 and f"nats-{index}" != leader
        )
        process.terminate()
        process.wait(timeout=10)
        for number in range(5):
            await _publish(bus, f"{prefix}.events.test.event", f"event-{number}")
        info = await bus.js.stream_info(bus.stream)
        assert info.state.messages == 5
    finally:
        await bus.close()
