"""`python -m services.launcher <command>` (also installed as `expense-mesh`)."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path
from typing import cast

import click

from services.auth.keys import rotate_signing_key
from services.kit.config.settings import REPO_ROOT, MeshSettings, load_settings
from services.launcher import generated, health, status
from services.launcher.envoy import TARGETS, Target, envoy_config
from services.launcher.files import render_yaml, write_text
from services.launcher.kong import kong_config, read_jwks
from services.launcher.routes import rest_surface
from services.launcher.supervisor import ChildFailed, Supervisor
from services.launcher.up import UpOptions, child_env, migrate_all, prepare, run_up

output_option = click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="File to write."
)


@click.group()
def main() -> None:
    """Runs the expense mesh and renders its gateway and deployment files."""


@main.command()
@click.option("--ready-timeout", default=90.0, show_default=True, help="Seconds to wait for readiness.")
@click.option("--grace", default=10.0, show_default=True, help="Seconds between SIGTERM and SIGKILL.")
def up(ready_timeout: float, grace: float) -> None:
    """Keys, migrations, NATS, every service and Envoy (restarted when one exits), until Ctrl-C."""
    options = UpOptions(ready_timeout=ready_timeout, grace_seconds=grace)
    sys.exit(asyncio.run(run_up(load_settings(), options)))


def _migrate(settings: MeshSettings) -> None:
    async def run() -> None:
        await migrate_all(settings, Supervisor(child_env(settings)))

    try:
        asyncio.run(run())
    except ChildFailed as error:
        raise click.ClickException(str(error)) from error


@main.command()
def migrate() -> None:
    """Runs every mesh service's migrations (`python -m services.<name> migrate`)."""
    _migrate(load_settings())


@main.command("prepare")
@click.option(
    "--publish-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Where the gateways read jwks.json (Envoy) and kong.yml (Kong, with the public keys).",
)
def prepare_command(publish_dir: Path) -> None:
    """Keys and migrations, then the gateways' key files (compose's one-shot `migrate`)."""
    settings = prepare(load_settings())
    _migrate(settings)
    _publish_keys(settings, publish_dir)


def _publish_keys(settings: MeshSettings, publish_dir: Path) -> None:
    publish_dir.mkdir(parents=True, exist_ok=True)
    jwks_file = settings.keys_dir / "jwks.json"
    shutil.copyfile(jwks_file, publish_dir / "jwks.json")
    kong = kong_config(settings, rest_surface(settings), read_jwks(jwks_file))
    write_text(publish_dir / "kong.yml", render_yaml([kong], "prepare"))
    click.echo(f"published jwks.json and kong.yml to {publish_dir}")


@main.command("rotate-keys")
@click.option(
    "--publish-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Where the gateways read jwks.json and kong.yml (as for `prepare`).",
)
def rotate_keys_command(publish_dir: Path) -> None:
    """A new signing key for auth; the gateways' files then hold it and the previous one
    (kong/README.md, "Rotating the signing key": reload the gateways, then restart auth)."""
    ring = rotate_signing_key(load_settings())
    click.echo(f"signing keys now: {', '.join(key['kid'] for key in ring.jwks()['keys'])} (newest first)")
    _publish_keys(load_settings(), publish_dir)


@main.command("envoy-config")
@click.option("--target", type=click.Choice(TARGETS), default="local", show_default=True)
@output_option
def envoy_config_command(target: str, output: Path) -> None:
    """Envoy config: `local` for `up`, `compose` for containers (docker-compose, k8s)."""
    settings = load_settings()
    config = envoy_config(settings, rest_surface(settings), cast(Target, target))
    write_text(output, render_yaml([config], "envoy-config"))


@main.command("kong-config")
@output_option
@click.option(
    "--jwks",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JWKS (<data_dir>/keys/jwks.json) whose keys become the consumer's RS256 credentials.",
)
def kong_config_command(output: Path, jwks: Path | None) -> None:
    """Kong DB-less config; without --jwks the consumer has no credentials (as committed)."""
    settings = load_settings()
    config = kong_config(settings, rest_surface(settings), read_jwks(jwks) if jwks else None)
    write_text(output, render_yaml([config], "kong-config"))


@main.command("deploy-files")
@click.option("--check", is_flag=True, help="Only report files that are not up to date (exit 1).")
def deploy_files_command(check: bool) -> None:
    """Renders envoy/envoy.yaml, kong/kong.yml, docker-compose.yml and k8s/ from config/mesh.toml."""
    if check:
        stale = generated.stale_files()
        for path in stale:
            click.echo(f"out of date: {path.relative_to(REPO_ROOT)}")
        sys.exit(1 if stale else 0)
    for path, text in generated.deploy_files().items():
        write_text(path, text)
        click.echo(f"wrote {path.relative_to(REPO_ROOT)}")


@main.command("health")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
def health_command(as_json: bool) -> None:
    """Each component's state (services, gateway, NATS, PostgreSQL, Redis, traces); exit 1
    unless everything configured is up."""
    components = asyncio.run(status.mesh_health(load_settings()))
    click.echo(status.as_json(components) if as_json else status.as_table(components))
    sys.exit(0 if status.healthy(components) else 1)


@main.command()
@click.argument("port", type=int)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--service", default="", help="Health service name; empty = the whole server.")
@click.option("--timeout", default=2.0, show_default=True)
def probe(port: int, host: str, service: str, timeout: float) -> None:
    """Exit 0 when grpc.health.v1.Health/Check answers SERVING (container healthchecks)."""
    sys.exit(0 if health.probe(f"{host}:{port}", service, timeout) else 1)
