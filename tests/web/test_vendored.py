"""The dashboard's third-party files are the pinned npm packages' own, byte for byte
(tools/vendor_web.py copies them; nothing is fetched at run time)."""

from __future__ import annotations

import json
import re

from services.kit.config.settings import REPO_ROOT
from tools.vendor_web import ASSETS, VENDOR_DIR, manifest

STATIC = REPO_ROOT / "services" / "web" / "static"


def test_npm_versions_are_pinned_exactly() -> None:
    pins = json.loads((REPO_ROOT / "package.json").read_text())["devDependencies"]
    for package in {package for package, _ in ASSETS} | {"axe-core"}:
        assert re.fullmatch(r"\d+\.\d+\.\d+", pins[package]), f"{package} is not pinned: {pins[package]}"


def test_vendored_files_match_the_installed_packages() -> None:
    recorded = json.loads((VENDOR_DIR / "MANIFEST.json").read_text())
    assert recorded == manifest(REPO_ROOT / "node_modules"), "run: python tools/vendor_web.py"
    pins = json.loads((REPO_ROOT / "package.json").read_text())["devDependencies"]
    assert all(entry["version"] == pins[entry["package"]] for entry in recorded.values())


def test_the_page_loads_nothing_from_elsewhere_and_nothing_inline() -> None:
    page = (STATIC / "index.html").read_text()
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(s.startswith(("/assets/", "#", "data:")) for s in sources), sources
    assert "<style" not in page and " style=" not in page and "<script>" not in page
    for script in STATIC.glob("js/*.js"):
        text = script.read_text()
        assert "http://" not in text and "https://" not in text, script
        assert "eval(" not in text and "innerHTML" not in text, script
