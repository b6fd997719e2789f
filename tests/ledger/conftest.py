"""Meshes of the ledger tests: auth, user and ledger behind Envoy, booted by the
launcher through tests/mesh.py, once per backend per session. Not the shared
whole mesh: these tests write tens of thousands of expenses, whose events would
keep other services' consumers (reporting) busy during their own tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from services.kit.db.engine import Database
from tests.infra import REDIS_URL, fresh_postgres_database, require
from tests.ledger.harness import LedgerClient, ledger_client
from tests.mesh import Mesh, forget_run, on_secured_nats, running_mesh

LEDGER_MESH = ["auth", "user", "ledger"]


def mesh_nats_url(mesh: Mesh) -> str:
    return mesh.nats_url_as()


def keep_log(mesh: Mesh) -> None:
    """The mesh's output next to its data, for a failure's post-mortem."""
    (mesh.data_dir / "mesh.log").write_text(mesh.log)


def ledger_database(mesh: Mesh) -> Database:
    """The test's own view of the mesh's ledger database."""
    url = mesh.env.get("DATABASE_URL") or f"sqlite+aiosqlite:///{mesh.data_dir.resolve() / 'ledger.sqlite3'}"
    return Database(url, schema="ledger", pool_size=2)


@pytest.fixture(scope="session")
def ledger_mesh_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """Embedded defaults: SQLite files, the launcher's own NATS, no Redis."""
    with running_mesh(tmp_path_factory.mktemp("ledger-sqlite"), LEDGER_MESH) as mesh:
        yield mesh
    keep_log(mesh)


@pytest.fixture(scope="session")
def ledger_mesh_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """A fresh PostgreSQL database, this machine's Redis, NATS requiring credentials."""
    require("Redis", "127.0.0.1", 6379)
    with fresh_postgres_database() as database_url:
        env = {"DATABASE_URL": database_url, "REDIS_URL": REDIS_URL}
        mesh = Mesh(tmp_path_factory.mktemp("ledger-postgres"), LEDGER_MESH, env)
        with on_secured_nats(mesh):
            try:
                mesh.start()
                yield mesh
            finally:
                mesh.stop()
                keep_log(mesh)
                forget_run(mesh)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def ledger_mesh(request: pytest.FixtureRequest) -> Mesh:
    return request.getfixturevalue(f"ledger_mesh_{request.param}")


@pytest.fixture
async def client(ledger_mesh: Mesh) -> AsyncIterator[LedgerClient]:
    async with ledger_client(ledger_mesh) as ledger:
        yield ledger
