"""Shared fixtures: the real embedded ClickHouse engine, a fresh database for every test.

chdb allows one engine directory per process, so the whole test process shares one data
directory and isolates tests by database, like clickhouse-connect's own integration tests.
Tests that need a process of their own (serve, SIGKILL) get their own data directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["TZ"] = "UTC"
time.tzset()

from argon2 import PasswordHasher, profiles  # noqa: E402

from kernel import migrations, sites, storage, users  # noqa: E402
from kernel.settings import Settings  # noqa: E402

# Passwords hashed in this process use argon2-cffi's profile for tests (CHEAPEST: Argon2id, one pass
# over 8 KiB): a hash or a check costs microseconds instead of 0.15 s, which the organisations built
# for hundreds of tests spent on their seven accounts. What is tested does not change: the same
# library, the same Argon2id hashes, wrong passwords still refused. Processes the tests start
# (`stepwatch serve`, the CLI) hash with the product's parameters, and test_users checks them.
PRODUCT_HASHER = users._HASHER
users._HASHER = PasswordHasher.from_parameters(profiles.CHEAPEST)

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


BROWSER_PACKAGES = ("browser", "browser_dashboards", "browser_extension")


@pytest.hookimpl(tryfirst=True)  # the marks in place before pytest-xdist reads them to group the tests
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that drive Chromium `browser`, and keep each browser package on one xdist
    worker (`--dist loadgroup`): its server, demo store and browser are built once per package, and
    the extension's policy test (a file in Chromium's machine-wide policy folder) never meets another
    of the package's browsers."""
    for item in items:
        parts = Path(str(item.path)).relative_to(REPO / "tests").parts
        if len(parts) > 1 and parts[0] in BROWSER_PACKAGES:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.xdist_group(parts[0]))


@pytest.fixture(scope="session")
def engine_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The test process's engine directory: in memory (/dev/shm) where there is a roomy one, where the
    engine's many small files cost less (a test's inserts and schema 15% to 20% less than on disk)."""
    shm = Path("/dev/shm")
    # a container's /dev/shm is often 64 MB: too small for an engine, so only a roomy one is used
    if not (shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free >= 2 << 30):
        yield tmp_path_factory.mktemp("engine")
        return
    path = Path(tempfile.mkdtemp(prefix="stepwatch-test-engine-", dir=shm))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def settings(engine_dir: Path, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=engine_dir,
        database=f"t_{uuid.uuid4().hex[:12]}",
        spool_dir=tmp_path / "spool",
        rate_limit_site=0,
        rate_limit_address=0,
        group_commit_ms=2,
        spool_retry_s=0.2,
    )


# Each test's database is a copy of one migrated once per test process: the migrations' 37
# statements and their ledger cost 0.27 s a test, creating the 29 resulting tables and views
# 0.11 s. test_migrations checks that a copy's schema is the reviewed snapshot, as a migrated one's.
TEMPLATE = "stepwatch_template"


@pytest.fixture(scope="session")
def migrated_schema(engine_dir: Path) -> list[str]:
    """The CREATE statements of a migrated database (named TEMPLATE), tables before views."""
    template = Settings(data_dir=engine_dir, database=TEMPLATE)
    c = storage.connect(template)
    migrations.apply_pending(c, template.retention_days)
    rows = c.query("SELECT create_table_query FROM system.tables WHERE database = {db:String} "
                   "ORDER BY engine LIKE '%View', engine = 'MaterializedView', metadata_modification_time, name",
                   parameters={"db": TEMPLATE}).result_rows
    c.close()
    return [ddl for ddl, in rows]


@pytest.fixture
def client(settings: Settings, migrated_schema: list[str]) -> Iterator[storage.Client]:
    c = storage.connect(settings)
    for ddl in migrated_schema:
        c.command(ddl.replace(f"{TEMPLATE}.", f"{settings.database}."))
    c.command(f"INSERT INTO schema_migrations SELECT * FROM {TEMPLATE}.schema_migrations")
    yield c
    # SYNC: an Atomic database dropped without it keeps its tables for 8 minutes, and every
    # CREATE after that gets slower (migrations took 0.3 s on a fresh engine, 2.6 s after 120
    # dropped databases).
    c.command(f"DROP DATABASE IF EXISTS {settings.database} SYNC")
    c.close()


@pytest.fixture
def site(client: storage.Client) -> sites.Site:
    return sites.add_site(client, "crm", ["https://crm.example.com"], actor="test")


@pytest.fixture
def signed_site(client: storage.Client) -> sites.Site:
    return sites.add_site(client, "secure", ["https://crm.example.com"], require_identity=True, actor="test")
