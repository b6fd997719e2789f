"""Shared fixtures of the test suite, and the meshes' output in failure reports."""

from collections.abc import Generator

import pytest
from hypothesis import settings

# A fresh SQLite file or PostgreSQL database per test (see tests/infra.py).
from tests.infra import database_url

# --- The whole mesh, booted by `python -m services.launcher up` (see tests/mesh.py) ---
from tests.mesh import Mesh, mesh, mesh_postgres, mesh_sqlite

__all__ = ["database_url", "mesh", "mesh_postgres", "mesh_sqlite"]

# Property tests check what code does, not how fast: on a shared 2-core machine an
# example's time says more about the neighbours (speed is the benchmarks' business).
settings.register_profile("suite", deadline=None)
settings.load_profile("suite")

# The last lines a mesh printed while a failed test ran go into its report: the
# services' own account of a failure (an error's cause, a peer's status code).
MESH_REPORT_LINES = 200
_OUTPUT_AT_START = pytest.StashKey[dict[Mesh, int]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    item.stash[_OUTPUT_AT_START] = {mesh: len(mesh.output) for mesh in Mesh.launched}
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed:
        for mesh, start in item.stash.get(_OUTPUT_AT_START, {}).items():
            lines = mesh.output[start:][-MESH_REPORT_LINES:]
            if lines:
                report.sections.append((f"mesh output during the test: {mesh.data_dir}", "\n".join(lines)))
    return report
