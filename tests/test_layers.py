"""The arrows between the parts: lower parts never import higher ones; domain code stays pure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
KERNEL_LOW = ["settings", "storage", "migrations", "sites", "audit", "errors", "logs", "users", "teams", "processes",
              "band_versions", "flag_store"]
PARTS = ["collector", "analysis", "coaching", "dashboards"]

# module or folder -> top-level imports it must not make
FORBIDDEN = {
    **{f"kernel/{m}": {"collector", "analysis", "coaching", "dashboards", "stepwatch.app", "stepwatch.cli",
                          "aiohttp", "jinja2"} for m in KERNEL_LOW},
    "collector": {"analysis", "coaching", "dashboards", "stepwatch.app", "stepwatch.cli", "jinja2"},
    "analysis": {"collector", "coaching", "dashboards", "aiohttp", "jinja2", "aiohttp_jinja2", "stepwatch.app",
                 "stepwatch.cli"},
    "coaching": {"collector", "dashboards", "aiohttp", "jinja2", "aiohttp_jinja2", "stepwatch.app", "stepwatch.cli"},
    "dashboards": {"stepwatch.cli"},
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def files(target: str) -> list[Path]:
    """A part's folder, or one kernel module (a file, or a package folder like migrations/)."""
    path = REPO / target
    return sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]


@pytest.mark.parametrize("target", sorted(FORBIDDEN))
def test_no_import_against_the_arrows(target: str) -> None:
    found = files(target)
    assert found, target
    for path in found:
        for name in imports_of(path):
            for banned in FORBIDDEN[target]:
                assert not (name == banned or name.startswith(banned + ".")), f"{path.relative_to(REPO)} imports {name}"
