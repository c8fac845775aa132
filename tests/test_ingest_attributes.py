"""Session attributes through POST /v1/events: declared ones stored on the start event, any other
refused per event with a reason naming the field, the rest of the batch kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from collector import keys
from kernel import processes, sites, storage
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.test_ingest import post, session_event, visit

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sales_desk.toml"
DECLARED = '\n[attributes]\nsegment = ["vip", "regular"]\nchannel = ["phone", "email", "chat"]\n'


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site) -> Any:
    processes.load(client, processes.parse(EXAMPLE.read_text() + DECLARED, site.name), actor="test")
    return await aiohttp_client(create_app(settings))


def attributes_of(client: storage.Client) -> dict[str, dict[str, str]]:
    rows = storage.query_rows(client, "SELECT session_id, attributes FROM service_sessions")
    return {r["session_id"]: r["attributes"] for r in rows}


async def test_declared_attributes_are_stored_with_the_session(api: Any, site: sites.Site,
                                                               client: storage.Client) -> None:
    events = [session_event(session_id="s-1", attributes={"segment": "vip", "channel": "phone"}),
              session_event(session_id="s-2", attributes={"channel": "chat"}),
              session_event(session_id="s-3"),
              session_event(session_id="s-1", action="end", outcome="sale"),
              visit(session_id="s-1")]
    response = await post(api, site.key, events)
    assert (response.status, await response.json()) == (200, {"accepted": 5, "rejected": []})
    assert attributes_of(client) == {"s-1": {"segment": "vip", "channel": "phone"}, "s-2": {"channel": "chat"},
                                     "s-3": {}}


@pytest.mark.parametrize("slow_path", [False, True])
async def test_undeclared_names_and_values_are_refused_per_event(api: Any, site: sites.Site, client: storage.Client,
                                                                 slow_path: bool) -> None:
    # A field the fast paths cannot vouch for (an escaped character) sends the batch down the slow path.
    extra = {"manager": "manager-\u00e9"} if slow_path else {}
    events = [session_event(session_id="ok", attributes={"segment": "regular"}, **extra),
              session_event(session_id="region", attributes={"region": "north"}, **extra),
              session_event(session_id="gold", attributes={"segment": "gold"}, **extra),
              session_event(session_id="on-end", action="end", attributes={"segment": "vip"}, **extra),
              session_event(session_id="bad-end", action="end", attributes={"segment": "x"}, **extra),
              visit(**extra)]
    response = await post(api, site.key, events)
    assert response.status == 200
    assert await response.json() == {"accepted": 3, "rejected": [
        {"index": 1, "reason": "attributes.region: not declared by the process (declared: channel, segment)"},
        {"index": 2, "reason": "attributes.segment: the value is not one of vip, regular"},
        {"index": 4, "reason": "attributes.segment: the value is not one of vip, regular"},
    ]}
    # an end event may repeat its session's attributes (the tracker does); the start event's are the session's
    assert attributes_of(client) == {"ok": {"segment": "regular"}, "on-end": {}}


async def test_a_batch_of_only_refused_attributes_is_a_400(api: Any, site: sites.Site) -> None:
    response = await post(api, site.key, [session_event(attributes={"segment": "platinum"})])
    assert response.status == 400
    body = await response.json()
    assert body["rejected"] == [{"index": 0, "reason": "attributes.segment: the value is not one of vip, regular"}]


async def test_free_text_is_refused_by_the_contract(api: Any, site: sites.Site) -> None:
    response = await post(api, site.key, [session_event(attributes={"segment": "Very Important Client"}), visit()])
    body = await response.json()
    assert body["accepted"] == 1 and body["rejected"][0]["index"] == 0
    assert body["rejected"][0]["reason"].startswith("attributes.segment")


async def test_a_site_whose_process_declares_none_refuses_any(aiohttp_client: Any, settings: Settings,
                                                              client: storage.Client, site: sites.Site) -> None:
    processes.load(client, processes.parse(EXAMPLE.read_text(), site.name), actor="test")
    api = await aiohttp_client(create_app(settings))
    response = await post(api, site.key, [session_event(attributes={"segment": "vip"}), visit()])
    assert (await response.json())["rejected"] == [
        {"index": 0, "reason": "attributes.segment: not declared by the process (it declares none)"}]


async def test_the_tracker_config_carries_the_declared_map(api: Any, site: sites.Site, client: storage.Client) -> None:
    config = await (await api.get(f"/v1/config/{site.key}")).json()
    assert config["attributes"] == {"segment": ["vip", "regular"], "channel": ["phone", "email", "chat"]}
    processes.load(client, processes.parse(EXAMPLE.read_text(), site.name), actor="test")
    await api.server.app[keys.SITES].refresh()
    assert "attributes" not in await (await api.get(f"/v1/config/{site.key}")).json()


def test_spooled_session_rows_from_before_attributes_still_insert(client: storage.Client) -> None:
    from collector.writer import insert_session_events

    old = (b'["crm","0b6c1234-5678-9abc-def0-123456789abc","s-old","start","m","c","sales",1767225600.5,"",'
           b'"1.0","tracker"]')
    new = (b'["crm","1b6c1234-5678-9abc-def0-123456789abc","s-new","start","m","c","sales",1767225600.5,"",'
           b'{"segment":"vip"},"1.0","tracker"]')
    insert_session_events(client, old, compact=True)
    insert_session_events(client, new, compact=True)
    assert attributes_of(client) == {"s-old": {}, "s-new": {"segment": "vip"}}
