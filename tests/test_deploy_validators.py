"""The deploy files read by the validators of their own ecosystems, all offline, each
test failing with the validator's own output:

- Kong: `deck validate` (decK reads the file alone, no Kong), then every plugin block
  against its JSON Schema in kong/schemas/ with `check-jsonschema`: decK checks the
  entities but not plugin names, config fields nor enum values.
- Kubernetes: `kubernetes-validate --strict` on the kustomize build of k8s/base and of
  each overlay (or, with no kustomize nor kubectl here, on each file the base lists). The
  operators' custom resources (CloudNativePG `Cluster`, the Prometheus operator's
  `PodMonitor`) have no schema in it: they are skipped explicitly, by kind, and any other
  kind without a schema fails.
- Compose: `check-jsonschema --builtin-schema vendor.compose-spec` on docker-compose.yml.

Both Envoy configs (`envoy --mode validate`, the `up` variant and envoy/envoy.yaml) are in
test_gateway_config.py. test_deploy_manifests.py checks what the files must hold, which no
schema says."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.auth.keys import ensure_signing_keys, rotate_signing_key
from services.kit.config.settings import REPO_ROOT
from services.launcher import generated, kong
from services.launcher.files import render_yaml
from services.launcher.routes import rest_surface

BIN = Path(sys.executable).parent
KONG_FILE = REPO_ROOT / "kong" / "kong.yml"
KONG_SCHEMAS = REPO_ROOT / "kong" / "schemas"
K8S = REPO_ROOT / "k8s"
SETTINGS = generated.committed_settings()


def _tool(name: str, install: str) -> str:
    """A validator that is not a Python package: skipped when missing, failed when CI
    demands every tool (.ci/run installs it)."""
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed ({install})"
    if os.environ.get("EM_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


def _run(argv: list[str], cwd: Path = REPO_ROOT) -> str:
    result = subprocess.run(argv, cwd=cwd, check=False, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(argv)} exited {result.returncode}:\n{output}"
    return output


@pytest.fixture(scope="module")
def deployed_kong(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kong.yml as `prepare` renders it at deploy time: both keys of a rotation as RS256
    credentials, and a CORS origin so that the cors plugin is there too."""
    data_dir = tmp_path_factory.mktemp("kong")
    cors = SETTINGS.cors.model_copy(update={"allowed_origins": ["https://app.example.com"]})
    settings = SETTINGS.model_copy(update={"data_dir": data_dir, "cors": cors})
    ensure_signing_keys(settings)
    ring = rotate_signing_key(settings)
    assert len(ring.jwks()["keys"]) == 2
    config = kong.kong_config(settings, rest_surface(settings), ring.jwks())
    path = data_dir / "kong.yml"
    path.write_text(render_yaml([config], "prepare"))
    return path


def _plugin_blocks(config: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, plugin) for each plugin at every level Kong's declarative format allows."""
    for index, plugin in enumerate(config.get("plugins", [])):
        yield f"global-{index}", plugin
    for service in config.get("services", []):
        for index, plugin in enumerate(service.get("plugins", [])):
            yield f"{service['name']}-{index}", plugin
        for route in service.get("routes", []):
            for index, plugin in enumerate(route.get("plugins", [])):
                yield f"{route['name']}-{index}", plugin
    for consumer in config.get("consumers", []):
        for index, plugin in enumerate(consumer.get("plugins", [])):
            yield f"{consumer['username']}-{index}", plugin


def _check_plugins(kong_file: Path, out_dir: Path) -> dict[str, int]:
    """Each plugin block to a file of its own, then one check-jsonschema per plugin name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    by_name: dict[str, list[Path]] = defaultdict(list)
    for where, plugin in _plugin_blocks(yaml.safe_load(kong_file.read_text())):
        block = out_dir / f"{plugin['name']}--{where}.json"
        block.write_text(json.dumps(plugin))
        by_name[plugin["name"]].append(block)
    unknown = sorted(name for name in by_name if not (KONG_SCHEMAS / f"{name}.json").exists())
    assert not unknown, f"{kong_file}: no schema in kong/schemas/ for plugins {unknown} (misspelled?)"
    for name, blocks in by_name.items():
        schema = KONG_SCHEMAS / f"{name}.json"
        _run([str(BIN / "check-jsonschema"), "--schemafile", str(schema), *map(str, blocks)])
    return {name: len(blocks) for name, blocks in by_name.items()}


def test_deck_validates_the_committed_kong_config() -> None:
    deck = _tool("deck", "apt-get install -y deck")
    _run([deck, "validate", "--state", str(KONG_FILE)])


def test_deck_validates_the_deploy_time_kong_config_with_its_credentials(deployed_kong: Path) -> None:
    deck = _tool("deck", "apt-get install -y deck")
    _run([deck, "validate", "--state", str(deployed_kong)])
    consumer = yaml.safe_load(deployed_kong.read_text())["consumers"][0]
    # decK requires a secret on every jwt credential; Kong ignores it for RS256.
    assert all(secret["secret"] for secret in consumer["jwt_secrets"])


def test_each_kong_plugin_block_matches_its_schema(tmp_path: Path, deployed_kong: Path) -> None:
    committed = _check_plugins(KONG_FILE, tmp_path / "committed")
    deployed = _check_plugins(deployed_kong, tmp_path / "deployed")
    production = {"grpc-gateway", "jwt", "rate-limiting", "response-transformer", "prometheus"}
    strict_input_and_errors = {"pre-function", "post-function"}
    assert production | strict_input_and_errors | {"request-size-limiting", "correlation-id"} <= set(
        committed
    )
    assert set(deployed) == set(committed) | {"cors"}


@pytest.mark.parametrize(
    "plugin",
    [
        {"name": "rate-limiting", "config": {"second": 5, "hour": 1000, "policy": "local"}},
        {
            "name": "rate-limiting",
            "config": {
                "minute": 60,
                "policy": "redis",
                "redis": {"host": "redis", "port": 6379},
                "sync_rate": 1,
            },
        },
        {"name": "jwt", "config": {"claims_to_verify": ["exp", "nbf"], "maximum_expiration": 900}},
        {"name": "cors", "config": {"origins": ["http://mockbin.com"], "methods": ["GET", "POST"]}},
        {"name": "response-transformer", "config": {"add": {"headers": ["New-Header:Header Value"]}}},
        {"name": "correlation-id", "config": {"header_name": "X-Request-ID", "generator": "uuid#counter"}},
        {"name": "request-size-limiting", "config": {"allowed_payload_size": 1, "size_unit": "megabytes"}},
        {"name": "prometheus", "config": {"status_code_metrics": True, "latency_metrics": True}},
        {"name": "grpc-gateway", "config": {"proto": "/usr/local/kong/include/a.proto"}},
        {"name": "pre-function", "config": {"access": ["kong.log.err('Hello Kong!')"]}},
        {"name": "post-function", "config": {"header_filter": ["return function() end"], "log": []}},
    ],
    ids=lambda plugin: plugin["name"],
)
def test_the_plugin_schemas_accept_kongs_documented_examples(plugin: dict[str, Any], tmp_path: Path) -> None:
    kong_file = tmp_path / "kong.yml"
    kong_file.write_text(yaml.safe_dump({"_format_version": "3.0", "plugins": [plugin]}))
    _check_plugins(kong_file, tmp_path / "blocks")


@pytest.mark.parametrize(
    ("plugin", "why"),
    [
        ({"name": "grpc-gatway", "config": {"proto": "x.proto"}}, "no schema"),
        ({"name": "rate-limiting", "config": {"second": 5, "limit_by": "ipp"}}, "'ipp' is not one of"),
        ({"name": "rate-limiting", "config": {"limit_by": "ip"}}, "is not valid under any of"),
        ({"name": "rate-limiting", "config": {"second": 5, "policy": "cluster"}}, "'cluster' is not one of"),
        (
            {"name": "rate-limiting", "config": {"second": 5, "limit_by": "header"}},
            "'header_name' is a required",
        ),
        ({"name": "rate-limiting", "config": {"second": 5, "policy": "redis"}}, "'redis' is a required"),
        ({"name": "rate-limiting", "config": {"second": 5, "sync_rate": 1}}, "-1 was expected"),
        ({"name": "jwt", "config": {"claims_to_verify": ["iat"]}}, "'iat' is not one of"),
        ({"name": "jwt", "config": {"maximum_expiration": 60}}, "'claims_to_verify' is a required"),
        ({"name": "jwt", "config": {"key_claim": "kid"}}, "'key_claim' was unexpected"),
        ({"name": "cors", "config": {"methods": ["get"]}}, "'get' is not one of"),
        ({"name": "response-transformer", "config": {"add": {"headers": ["X-No-Value"]}}}, "does not match"),
        ({"name": "correlation-id", "config": {"generator": "uuid4"}}, "'uuid4' is not one of"),
        ({"name": "request-size-limiting", "config": {"size_unit": "gigabytes"}}, "is not one of"),
        ({"name": "prometheus", "config": {"per_consumers": True}}, "'per_consumers' was unexpected"),
        # Kong 3.0 dropped the 0.x `functions` field; a phase is named, and at least one given.
        ({"name": "pre-function", "config": {"functions": ["return 1"]}}, "'functions' was unexpected"),
        ({"name": "pre-function", "config": {"acess": ["return 1"]}}, "'acess' was unexpected"),
        ({"name": "post-function", "config": {"access": []}}, "is not valid under any of"),
        ({"name": "post-function", "config": {"access": "return 1"}}, "is not of type 'array'"),
    ],
    ids=lambda value: value.get("name", "") if isinstance(value, dict) else value,
)
def test_the_plugin_schemas_catch_what_deck_misses(plugin: dict[str, Any], why: str, tmp_path: Path) -> None:
    kong_file = tmp_path / "kong.yml"
    kong_file.write_text(yaml.safe_dump({"_format_version": "3.0", "plugins": [plugin]}))
    with pytest.raises(AssertionError) as failure:
        _check_plugins(kong_file, tmp_path / "blocks")
    assert why in str(failure.value)


def test_deck_rejects_a_misspelled_route_field(tmp_path: Path) -> None:
    deck = _tool("deck", "apt-get install -y deck")
    broken = tmp_path / "kong.yml"
    broken.write_text(KONG_FILE.read_text().replace("strip_path:", "strip_paht:", 1))
    with pytest.raises(AssertionError) as failure:
        _run([deck, "validate", "--state", str(broken)])
    assert "strip_paht" in str(failure.value)


# The base and, once there are any, each overlay: every directory with a kustomization.
KUSTOMIZATIONS = sorted(path.parent for path in K8S.rglob("kustomization.yaml"))


def _kustomize_build(directory: Path) -> str | None:
    """The kustomize build of a directory, or None when neither kustomize nor kubectl is here."""
    if kustomize := shutil.which("kustomize"):
        return _run([kustomize, "build", str(directory)])
    if kubectl := shutil.which("kubectl"):
        result = subprocess.run(
            [kubectl, "kustomize", str(directory)], check=False, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        return result.stdout
    return None


def _listed_files(directory: Path) -> list[str]:
    """Without a kustomize binary: the manifest files the kustomization lists itself."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    listed = [directory / name for name in kustomization.get("resources", [])]
    files = [str(path) for path in listed if path.is_file()]
    if not files:
        pytest.skip(f"{directory} lists no manifest file of its own; rendering it needs kustomize")
    return files


# Custom resources of the operators prod relies on: kubernetes-validate has no schema for them.
CUSTOM_RESOURCES = {("postgresql.cnpg.io/v1", "Cluster"), ("monitoring.coreos.com/v1", "PodMonitor")}
NO_SCHEMA = re.compile(r"Couldn't find schema for kind (\S+) with api version (\S+)")


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_kubernetes_validate_strict_accepts_every_manifest(directory: Path, tmp_path: Path) -> None:
    built = _kustomize_build(directory)
    if built is None:
        files = _listed_files(directory)
    else:
        rendered = tmp_path / "kustomize-build.yaml"
        rendered.write_text(built)
        files = [str(rendered)]
    output = _run([str(BIN / "kubernetes-validate"), "--strict", *files])
    # Every overlay holds a workload of its own (its engines), the base the services'.
    assert "passed for resource deployment/" in output or "passed for resource statefulset/" in output
    unvalidated = {(version, kind) for kind, version in NO_SCHEMA.findall(output)}
    assert unvalidated <= CUSTOM_RESOURCES, f"no schema for {unvalidated - CUSTOM_RESOURCES}"
    if directory.name == "prod":
        assert unvalidated == CUSTOM_RESOURCES


def test_compose_file_matches_the_compose_spec() -> None:
    # The schema ships inside check-jsonschema: nothing is downloaded.
    output = _run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "docker-compose.yml"]
    )
    assert "ok -- validation done" in output


def test_the_compose_spec_check_rejects_a_misspelled_key(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        (REPO_ROOT / "docker-compose.yml").read_text().replace("healthcheck:", "healthchek:", 1)
    )
    with pytest.raises(AssertionError) as failure:
        _run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(broken)])
    assert "healthchek" in str(failure.value)


def test_kubernetes_validate_strict_rejects_an_unknown_field(tmp_path: Path) -> None:
    """The validator is not a rubber stamp: a misspelled field fails it."""
    deployment = next(
        doc
        for doc in yaml.safe_load_all((K8S / "base" / "auth.yaml").read_text())
        if doc["kind"] == "Deployment"
    )
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(deployment))
    with pytest.raises(AssertionError) as failure:
        _run([str(BIN / "kubernetes-validate"), "--strict", str(broken)])
    assert "livenesProbe" in str(failure.value)
