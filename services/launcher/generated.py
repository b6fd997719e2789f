"""The committed generated files (envoy/envoy.yaml, kong/kong.yml, docker-compose.yml,
nats/nats.conf, k8s/{base,overlays/*}/*.yaml), rendered from config/mesh.toml alone: the
environment of whoever runs `deploy-files` must not leak into git."""

from __future__ import annotations

import tomllib
from pathlib import Path

from services.kit.config.settings import DEFAULT_CONFIG_FILE, REPO_ROOT, MeshSettings
from services.launcher import compose, k8s
from services.launcher.envoy import envoy_config
from services.launcher.files import GENERATED, render_yaml
from services.launcher.kong import kong_config
from services.launcher.nats import authorization_config
from services.launcher.routes import rest_surface

COMMAND = "deploy-files"


def committed_settings() -> MeshSettings:
    # model_validate skips the settings sources (environment, EM_CONFIG_FILE).
    return MeshSettings.model_validate(tomllib.loads(DEFAULT_CONFIG_FILE.read_text()))


def deploy_files(settings: MeshSettings | None = None) -> dict[Path, str]:
    """Repo path -> content."""
    settings = settings or committed_settings()
    surface = rest_surface(settings)
    files = {
        REPO_ROOT / "envoy" / "envoy.yaml": render_yaml(
            [envoy_config(settings, surface, "compose")], COMMAND
        ),
        REPO_ROOT / "kong" / "kong.yml": render_yaml([kong_config(settings, surface)], COMMAND),
        REPO_ROOT / "docker-compose.yml": render_yaml([compose.compose_config(settings)], COMMAND),
        REPO_ROOT / ".env.example": compose.env_example(settings),
        REPO_ROOT / compose.NATS_CONFIG: GENERATED.format(command=COMMAND)
        + authorization_config(settings.event_prefix, settings.mesh.services),
    }
    for path, manifests in k8s.files(settings).items():
        files[REPO_ROOT / "k8s" / path] = render_yaml(manifests, COMMAND)
    return files


def stale_files() -> list[Path]:
    """Generated files that differ from (or are missing in) the working tree."""
    return [path for path, text in deploy_files().items() if not path.exists() or path.read_text() != text]
