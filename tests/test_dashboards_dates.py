"""One date style for people, ISO for machines: a recent moment on a page reads "… ago" in the reader's
language with its absolute time in the tooltip, while the JSON twin and the CSV keep ISO 8601."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime
from typing import Any

import pytest

from kernel import sites, storage
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.dashboard_data import load_process
from tests.web_helpers import SECRET, csrf_of, login, make_accounts

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site) -> Any:
    make_accounts(client)
    load_process(client)  # loaded now: a moment of the last week
    return await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET})))


@pytest.mark.parametrize(("language", "ago"), [("en", r"(just now|\d+ seconds? ago|\d+ minutes? ago)"),
                                               ("ru", r"(\d+ секунд\w* назад|\d+ минут\w* назад|сейчас)")])
async def test_a_process_loaded_just_now_reads_relatively_and_exports_keep_iso(api: Any, language: str,
                                                                                ago: str) -> None:
    await login(api, "dora")
    token = csrf_of(await (await api.get("/process")).text())
    assert (await api.post("/account/language", data={"language": language, "csrf": token})).status == 200
    html = await (await api.get("/process")).text()
    times = re.findall(r'<time datetime="([^"]+)" title="([^"]+)">([^<]+)</time>', html)
    assert times, html[:3000]
    for machine, title, said in times:
        assert ISO.match(machine) and re.fullmatch(ago, said), (machine, title, said)
        assert "UTC" in title and not ISO.search(title)  # the absolute time, in the language's own style
    data = await (await api.get("/api/v1/process")).json()
    assert ISO.match(data["process"]["loaded_at"]) and ISO.match(data["history"][0]["loaded_at"])
    rows = list(csv.DictReader(io.StringIO(await (await api.get("/api/v1/process?format=csv&table=history")).text())))
    assert ISO.match(rows[0]["loaded_at"]), rows[0]
    datetime.fromisoformat(rows[0]["loaded_at"])
