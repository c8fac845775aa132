"""Shared fixtures: the real embedded ClickHouse engine, a fresh database for every test.

chdb allows one engine directory per process, so the whole test process shares one data
directory and isolates tests by database, like clickhouse-connect's own integration tests.
Tests that need a process of their own (serve, SIGKILL) get their own data directory.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["TZ"] = "UTC"
time.tzset()

from kernel import migrations, sites, storage  # noqa: E402
from kernel.settings import Settings  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def engine_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engine")


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


@pytest.fixture
def client(settings: Settings) -> Iterator[storage.Client]:
    c = storage.connect(settings)
    migrations.apply_pending(c, settings.retention_days)
    yield c
    c.command(f"DROP DATABASE IF EXISTS {settings.database}")
    c.close()


@pytest.fixture
def site(client: storage.Client) -> sites.Site:
    return sites.add_site(client, "crm", ["https://crm.example.com"], actor="test")


@pytest.fixture
def signed_site(client: storage.Client) -> sites.Site:
    return sites.add_site(client, "secure", ["https://crm.example.com"], require_identity=True, actor="test")
