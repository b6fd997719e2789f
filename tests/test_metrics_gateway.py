"""Envoy's own metrics in a container: the config the launcher writes for compose and k8s
(envoy/envoy.yaml's shape, on free ports) runs in a real Envoy, whose stats listener
answers GET /stats/prometheus from the admin API and 404 to every other admin path,
while the admin port itself listens on loopback only."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from services.auth.keys import ensure_signing_keys
from services.kit.config.settings import MetricsSettings
from services.launcher import envoy, generated
from services.launcher.envoy import DESCRIPTOR_SET
from services.launcher.routes import rest_surface
from tests.mesh import free_ports

ENVOY = Path(sys.executable).parent / "envoy"


def _get(url: str, method: str = "GET") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""
    except (urllib.error.URLError, ConnectionError):
        return 0, ""  # not listening yet


@pytest.fixture
def stats_url(tmp_path: Path) -> Iterator[str]:
    gateway, admin, stats = free_ports(3)
    settings = generated.committed_settings().model_copy(
        update={
            "data_dir": tmp_path,
            "gateway_port": gateway,
            "envoy_admin_port": admin,
            "metrics": MetricsSettings(gateway_port=stats),
        }
    )
    ensure_signing_keys(settings)
    text = yaml.safe_dump(envoy.envoy_config(settings, rest_surface(settings), "compose"))
    text = text.replace(envoy.CONTAINER_DESCRIPTOR, str(DESCRIPTOR_SET))
    text = text.replace(envoy.CONTAINER_JWKS, str(settings.keys_dir / "jwks.json"))
    config = tmp_path / "envoy.yaml"
    config.write_text(text)
    argv = [str(ENVOY), "-c", str(config), "--base-id", str(gateway), "-l", "error", "--concurrency", "1"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{stats}"
    try:
        deadline = time.monotonic() + 30
        while _get(url + "/stats/prometheus")[0] != 200:
            assert process.poll() is None and time.monotonic() < deadline, "envoy did not serve its stats"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def test_the_stats_listener_serves_prometheus_stats_and_nothing_else(stats_url: str) -> None:
    status, body = _get(stats_url + "/stats/prometheus")
    assert status == 200
    assert "# TYPE envoy_cluster_upstream_rq_total counter" in body
    assert _get(stats_url + "/stats/prometheus?usedonly")[0] == 200
    for path, method in (("/quitquitquit", "POST"), ("/config_dump", "GET"), ("/stats", "GET")):
        assert _get(stats_url + path, method)[0] == 404, path
