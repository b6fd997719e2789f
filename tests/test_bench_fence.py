"""The benchmark seeds through each service's own bulk load (services/<name>/seed.py):
it never imports a service's storage module, so a service's schema stays its own."""

from __future__ import annotations

import ast
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def storage_imports(source: str) -> list[str]:
    """The services' storage modules a module imports, however it spells the import."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            # `from services.ledger.storage import x` or `from services.ledger import storage`
            modules = (
                [node.module]
                if _is_service_storage(node.module)
                else [f"{node.module}.{alias.name}" for alias in node.names]
            )
        else:
            continue
        found += [name for name in modules if _is_service_storage(name)]
    return found


def _is_service_storage(module: str) -> bool:
    parts = module.split(".")
    return len(parts) >= 3 and parts[0] == "services" and parts[2] == "storage"


def test_the_scan_sees_every_spelling() -> None:
    source = (
        "import services.ledger.storage\n"
        "from services.user import storage as user_storage\n"
        "from services.auth.storage import users\n"
        "from services.ledger.seed import seed_expenses\n"
        "from services.kit.db.bulk import libpq_dsn\n"
    )
    assert storage_imports(source) == [
        "services.ledger.storage",
        "services.user.storage",
        "services.auth.storage",
    ]


def test_bench_imports_no_service_storage() -> None:
    modules = sorted(BENCH.rglob("*.py"))
    assert modules
    offenders = {
        str(path.relative_to(BENCH)): imports
        for path in modules
        if (imports := storage_imports(path.read_text()))
    }
    assert offenders == {}
