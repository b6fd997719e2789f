"""Shared fixtures of the test suite."""

# --- The whole mesh, booted by `python -m services.launcher up` (see tests/mesh.py) ---
from tests.mesh import mesh, mesh_postgres, mesh_sqlite

__all__ = ["mesh", "mesh_postgres", "mesh_sqlite"]
