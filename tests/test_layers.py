"""The floors of the house: no import runs back up, and domain code stays pure.

    stepwatch     the application: CLI, app factory, demo, analysis schedule   imports everything below
    ──────────
    tracker_js, collector, analysis, coaching, dashboards   the parts        import the kernel, some parts
    ──────────
    kernel        settings, storage, migrations, errors, the shared tables   imports no part, no application

docs/architecture.md says the same in prose. Tests and benchmarks stand outside the house and may
import anything; every other top-level package must be given a floor here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

KERNEL = "kernel"
APPLICATION = "stepwatch"
# Each part -> the other parts it may import (the kernel it always may).
PARTS: dict[str, set[str]] = {
    "tracker_js": set(),
    "analysis": set(),
    "collector": {"tracker_js"},  # serves the built tracker script
    "coaching": {"analysis"},  # measures coaching with the analysis' statistics
    "dashboards": {"collector", "analysis", "coaching"},
}
OUTSIDE = {"tests", "benchmarks"}  # they exercise the whole house
OURS = {KERNEL, APPLICATION, *PARTS}

WEB = {"aiohttp", "aiohttp_jinja2", "jinja2"}
DATABASE = {"clickhouse_connect", "chdb", "kernel.storage", "kernel.migrations"}
# Third-party (or kernel) modules a package or module must not import, beyond the floors.
FORBIDDEN_LIBRARIES: dict[str, set[str]] = {
    "kernel": WEB,  # app_keys.py is the one exception: the typed keys are aiohttp's
    "analysis": WEB | DATABASE,  # arrays in, frozen dataclasses out
    "coaching": WEB,
    # coaching's domain modules are pure as well; only its stores (_store, catalog, assignments,
    # measure, outbox) read and write ClickHouse
    **{f"coaching/{m}.py": WEB | DATABASE for m in ("evaluation", "lifecycle", "permissions", "peers")},
}
ALLOWED_EXCEPTIONS = {("kernel/app_keys.py", "aiohttp")}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: a relative import; the floors are checked on absolute ones"
            assert node.module
            names.add(node.module)
    return names


def python_files(target: str) -> list[Path]:
    path = REPO / target
    found = sorted(p for p in path.rglob("*.py") if "node_modules" not in p.parts) if path.is_dir() else [path]
    assert found, target
    return found


def top_level_packages() -> set[str]:
    """Every folder at the top of the repository that holds Python code."""
    return {path.name for path in REPO.iterdir()
            if path.is_dir() and not path.name.startswith(".") and any(path.glob("*.py"))}


def may_import(package: str) -> set[str]:
    """Our top-level packages that `package` may import."""
    if package == KERNEL:
        return {KERNEL}
    if package == APPLICATION:
        return OURS
    return {package, KERNEL, *PARTS[package]}


def test_every_top_level_package_has_a_floor() -> None:
    unplaced = top_level_packages() - OURS - OUTSIDE
    assert not unplaced, f"give {sorted(unplaced)} a floor in tests/test_layers.py and docs/architecture.md"
    assert not (OURS | OUTSIDE) - top_level_packages(), "a package named here no longer exists"


@pytest.mark.parametrize("package", sorted(OURS))
def test_no_import_runs_back_up(package: str) -> None:
    allowed = may_import(package)
    for path in python_files(package):
        for name in imports_of(path):
            top = name.split(".")[0]
            assert top not in OURS or top in allowed, f"{path.relative_to(REPO)} imports {name}"


@pytest.mark.parametrize("target", sorted(FORBIDDEN_LIBRARIES))
def test_no_forbidden_library(target: str) -> None:
    for path in python_files(target):
        where = str(path.relative_to(REPO))
        for name in imports_of(path):
            for banned in FORBIDDEN_LIBRARIES[target]:
                if (where, banned) in ALLOWED_EXCEPTIONS:
                    continue
                assert not (name == banned or name.startswith(banned + ".")), f"{where} imports {name}"


def test_nothing_but_tests_and_benchmarks_imports_the_application() -> None:
    for package in sorted(OURS - {APPLICATION}):
        for path in python_files(package):
            found = [n for n in imports_of(path) if n == APPLICATION or n.startswith(APPLICATION + ".")]
            assert not found, f"{path.relative_to(REPO)} imports {found}"


def test_the_checks_see_a_wrong_import(tmp_path: Path) -> None:
    """The walker finds imports made inside functions too (the CLI imports lazily)."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from stepwatch import app\n    import collector.views\n")
    assert imports_of(module) == {"stepwatch", "collector.views"}
