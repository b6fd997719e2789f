"""Copy the dashboard's third-party assets from node_modules (npm, versions pinned in
package.json) into services/web/static/vendor/, with a manifest of what came from where.

The copies are committed, so the web service needs no npm at run time and no CDN;
tests/web/test_vendored.py fails when they drift from the pinned packages.
Run after `npm install`: `python tools/vendor_web.py` (make up does)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR_DIR = ROOT / "services" / "web" / "static" / "vendor"
# (npm package, file inside it): what the page loads.
ASSETS = [("uplot", "dist/uPlot.iife.min.js"), ("uplot", "dist/uPlot.min.css")]


def manifest(node_modules: Path) -> dict[str, dict[str, str]]:
    entries = {}
    for package, file in ASSETS:
        source = node_modules / package / file
        version = json.loads((node_modules / package / "package.json").read_text())["version"]
        entries[Path(file).name] = {
            "package": package,
            "version": version,
            "sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
        }
    return entries


def vendor(node_modules: Path = ROOT / "node_modules") -> None:
    VENDOR_DIR.mkdir(parents=True, exist_ok=True)
    for package, file in ASSETS:
        (VENDOR_DIR / Path(file).name).write_bytes((node_modules / package / file).read_bytes())
    text = json.dumps(manifest(node_modules), indent=2, sort_keys=True) + "\n"
    (VENDOR_DIR / "MANIFEST.json").write_text(text)


if __name__ == "__main__":
    vendor(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "node_modules")
    print(f"vendored {len(ASSETS)} files into {VENDOR_DIR.relative_to(ROOT)}")
