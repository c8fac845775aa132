"""The suite's own setup: each browser package stays on one pytest-xdist worker (tests/conftest.py), which
the extension's policy test needs (its file in Chromium's machine-wide policy folder reaches every
browser of the machine) and which builds each package's server and browser once."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_a_browser_package_runs_on_one_worker() -> None:
    run = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v", "-p",
                          "no:cacheprovider", "tests/browser_extension/test_config.py", "tests/test_docs.py"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    workers = {package: {w for w, p in re.findall(r"\[(gw\d+)\].*? (tests/[a-z_]+)", run.stdout) if p == package}
               for package in ("tests/browser_extension", "tests/test_docs")}
    assert len(workers["tests/browser_extension"]) == 1, workers
