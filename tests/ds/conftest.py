"""A mesh of the services ds works with (no reporting or billing: it needs neither), on
PostgreSQL, Redis and a NATS that requires each service's credentials."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.infra import REDIS_URL, fresh_postgres_database, require
from tests.mesh import Mesh, forget_run, on_secured_nats

DS_MESH = ["auth", "user", "ledger", "templating", "ds"]
# Migrations and starts run one after the other; a shared, loaded machine is slow.
DS_START_TIMEOUT = 240.0


@pytest.fixture(scope="session")
def ds_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    require("Redis", "127.0.0.1", 6379)
    with fresh_postgres_database() as database_url:
        # Templating checks every default template by rendering it at start; on a shared,
        # loaded machine a cold first render (Babel's locale data) can pass the 250 ms cap.
        env = {"DATABASE_URL": database_url, "REDIS_URL": REDIS_URL, "EM_TEMPLATING__MAX_RENDER_MS": "3000"}
        mesh = Mesh(tmp_path_factory.mktemp("mesh-ds"), services=DS_MESH, env=env)
        with on_secured_nats(mesh):
            try:
                mesh.start(DS_START_TIMEOUT)
                yield mesh
            finally:
                mesh.stop()
                forget_run(mesh)
