"""Shared fixtures of the test suite."""

# A fresh SQLite file or PostgreSQL database per test (see tests/infra.py).
from tests.infra import database_url

# --- The whole mesh, booted by `python -m services.launcher up` (see tests/mesh.py) ---
from tests.mesh import mesh, mesh_postgres, mesh_sqlite

__all__ = ["database_url", "mesh", "mesh_postgres", "mesh_sqlite"]
