"""The built tracker: small, free of what a strict CSP or a privacy review forbids, reproducible."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import pytest

from tracker_js import DISCOVERY_PATH, GZIP_LIMIT, TRACKER_PATH

TRACKER_DIR = TRACKER_PATH.parent.parent


def test_tracker_fits_in_2_kib_gzipped() -> None:
    size = len(gzip.compress(TRACKER_PATH.read_bytes(), compresslevel=9, mtime=0))
    assert size <= GZIP_LIMIT, f"tracker.js is {size} bytes gzipped, over the {GZIP_LIMIT} byte budget"


def test_the_discovery_module_stays_small_and_keeps_only_patterns_and_counts() -> None:
    code = DISCOVERY_PATH.read_text()
    assert len(gzip.compress(code.encode(), compresslevel=9, mtime=0)) <= 1024
    assert "import.meta.url" in code and "sendBeacon" in code
    # what it sends: {site, counts} and nothing that names a person, a time or a session
    for name in ("manager", "session", "Date", "performance", "localStorage", "document.title", "textContent"):
        assert name not in code, name


@pytest.mark.parametrize("forbidden", ["eval(", "new Function", "Function(", "document.cookie", "innerHTML", ".value"])
def test_tracker_uses_nothing_forbidden(forbidden: str) -> None:
    for path in [TRACKER_PATH, *sorted((TRACKER_DIR / "src").glob("*.js"))]:
        assert forbidden not in path.read_text(), f"{path.name} contains {forbidden!r}"


def test_tracker_has_no_other_global() -> None:
    # Everything is inside one function; the only global it writes is `stepwatch`.
    code = TRACKER_PATH.read_text()
    assert code.startswith("!function(){try{") and code.endswith("}();\n")


@pytest.mark.skipif(not (TRACKER_DIR / "node_modules").exists(), reason="no node_modules: run npm ci in tracker_js/")
@pytest.mark.skipif(shutil.which("node") is None, reason="no node")
def test_build_reproduces_dist_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "tracker.js"
    build = ["node", "build.js", "--out", str(out)]
    subprocess.run(build, cwd=TRACKER_DIR, check=True, capture_output=True, timeout=120)
    assert out.read_bytes() == TRACKER_PATH.read_bytes(), "dist/tracker.js is stale: run `npm run build` in tracker_js/"
    assert (tmp_path / "discovery.js").read_bytes() == DISCOVERY_PATH.read_bytes(), "dist/discovery.js is stale"
