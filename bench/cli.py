"""`python -m bench [--smoke] [--keep] [--pin auto|split|off] [--only SCENARIO ...]`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bench.cpu import PIN_MODES
from bench.mesh import MeshFailed
from bench.report import RESULTS_DIR
from bench.run import Options, Prerequisite, run
from bench.scenarios import SCENARIOS


@click.command()
@click.option("--smoke", is_flag=True, help="Tiny data and ~1 s per step: checks the harness, not the mesh.")
@click.option(
    "--profile",
    "profile_name",
    default="full",
    show_default=True,
    help="A profile of bench/config.toml (full, dev, smoke); --smoke means --profile smoke.",
)
@click.option("--keep", is_flag=True, help="Keep the database, data dir, NATS stream and Redis keys.")
@click.option(
    "--pin",
    type=click.Choice(PIN_MODES),
    default="auto",
    show_default=True,
    help="split: load generator and mesh on separate cores; auto: split when there are 4 or more.",
)
@click.option(
    "--only",
    multiple=True,
    type=click.Choice(list(SCENARIOS)),
    help="Run only these scenarios (the baseline always runs). Repeatable.",
)
@click.option(
    "--results-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=RESULTS_DIR,
    show_default=True,
)
@click.option(
    "--py-spy",
    "py_spy",
    multiple=True,
    help="Record a py-spy flame graph of this mesh service (e.g. ledger) during every step. Repeatable.",
)
def main(
    smoke: bool,
    profile_name: str,
    keep: bool,
    pin: str,
    only: tuple[str, ...],
    results_dir: Path,
    py_spy: tuple[str, ...],
) -> None:
    """Seeds PostgreSQL, boots the mesh with the launcher, runs every scenario of issue 5
    and writes bench/results/<timestamp>.json."""
    options = Options(
        profile="smoke" if smoke else profile_name,
        keep=keep,
        pin=pin,
        only=only,
        results_dir=results_dir,
        py_spy=py_spy,
    )
    try:
        run(options)
    except (Prerequisite, MeshFailed) as error:
        click.echo(f"bench: {error}", err=True)
        sys.exit(2)
