"""POST /v1/events against the real embedded engine: the happy path, every rejection, exactly once."""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from typing import Any

import pytest

from collector import keys
from collector.identity import sign
from kernel import sites, storage
from kernel.settings import Settings
from stepwatch.app import create_app

ORIGIN = "https://crm.example.com"


def now_ms() -> int:
    return int(time.time() * 1000)


def visit(**overrides: Any) -> dict[str, Any]:
    event = {
        "type": "visit",
        "visit_id": str(uuid.uuid4()),
        "seq": 0,
        "final": False,
        "manager": "manager-42",
        "session_id": str(uuid.uuid4()),
        "customer": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "process": "sales",
        "step": "offer",
        "path": "/clients/:customer/offer",
        "started_at": now_ms() - 60_000,
        "active_ms": 30_000,
        "idle_ms": 5_000,
        "hidden_ms": 1_000,
        "tracker": "1.0.0",
    }
    event.update(overrides)
    return event


def session_event(**overrides: Any) -> dict[str, Any]:
    event = {
        "type": "session",
        "event_id": str(uuid.uuid4()),
        "action": "start",
        "session_id": "s-1",
        "manager": "manager-42",
        "customer": "ab12",
        "process": "sales",
        "at": now_ms() - 1000,
        "outcome": "",
    }
    event.update(overrides)
    return event


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site) -> Any:
    return await aiohttp_client(create_app(settings))


async def post(api: Any, site_key: str, events: list[dict[str, Any]], *, content_type: str = "text/plain",
               origin: str | None = ORIGIN, identity: str | None = None) -> Any:
    body: dict[str, Any] = {"site": site_key, "events": events}
    if identity is not None:
        body["identity"] = identity
    headers = {"Content-Type": content_type}
    if origin:
        headers["Origin"] = origin
    response = await api.post("/v1/events", data=io.BytesIO(json.dumps(body).encode()), headers=headers)
    await api.server.app[keys.WRITER].ship()  # in wal mode, rows reach ClickHouse within flush_ms: now
    return response


def stored(client: storage.Client, sql: str = "SELECT * FROM visits ORDER BY started_at") -> list[dict[str, Any]]:
    return storage.query_rows(client, sql)


# -- happy path -------------------------------------------------------------------------------


async def test_valid_batch_is_stored_and_acknowledged(api: Any, site: sites.Site, client: storage.Client) -> None:
    events = [visit(step="identification"), visit(step="offer", active_ms=1234), session_event()]
    response = await post(api, site.key, events)
    assert response.status == 200
    assert await response.json() == {"accepted": 3, "rejected": []}
    rows = stored(client)
    assert sorted(r["step"] for r in rows) == ["identification", "offer"]
    offer = next(r for r in rows if r["step"] == "offer")
    assert (offer["site"], offer["manager"], offer["active_ms"], offer["idle_ms"], offer["hidden_ms"]) == (
        "crm", "manager-42", 1234, 5000, 1000,
    )
    assert offer["source"] == "tracker"
    sessions = stored(client, "SELECT session_id, manager, ended FROM service_sessions")
    assert sessions == [{"session_id": "s-1", "manager": "manager-42", "ended": False}]


async def test_application_json_is_accepted_too(api: Any, site: sites.Site) -> None:
    response = await post(api, site.key, [visit()], content_type="application/json; charset=utf-8")
    assert response.status == 200


async def test_request_without_origin_is_accepted(api: Any, site: sites.Site) -> None:
    # Server-side senders (imports, scripts) carry no Origin; the origin list guards browsers.
    response = await post(api, site.key, [visit()], origin=None)
    assert response.status == 200


async def test_unknown_fields_are_ignored(api: Any, site: sites.Site, client: storage.Client) -> None:
    response = await post(api, site.key, [visit(future_field={"x": 1})])
    assert (await response.json())["accepted"] == 1
    assert len(stored(client)) == 1


async def test_session_end_with_outcome(api: Any, site: sites.Site, client: storage.Client) -> None:
    start = session_event(session_id="s-9", at=now_ms() - 60_000)
    end = session_event(session_id="s-9", action="end", outcome="sale")
    assert (await post(api, site.key, [start, end])).status == 200
    assert stored(client, "SELECT ended, outcome FROM service_sessions") == [{"ended": True, "outcome": "sale"}]


# -- exactly once ---------------------------------------------------------------------------------


async def test_replaying_a_batch_does_not_double_count(api: Any, site: sites.Site, client: storage.Client) -> None:
    events = [visit(), visit(), session_event(), session_event(action="end", outcome="no_sale")]
    for _ in range(3):
        assert (await post(api, site.key, events)).status == 200
    assert stored(client, "SELECT count() AS n, sum(active_ms) AS active FROM visits") == [
        {"n": 2, "active": 60_000}
    ]
    assert stored(client, "SELECT count() AS n FROM service_sessions") == [{"n": 1}]
    assert stored(client, "SELECT count() AS n FROM session_events FINAL") == [{"n": 2}]


async def test_checkpoints_count_once_with_the_highest_seq(api: Any, site: sites.Site, client: storage.Client) -> None:
    visit_id = str(uuid.uuid4())
    started = now_ms() - 120_000
    checkpoints = [visit(visit_id=visit_id, started_at=started, seq=s, active_ms=15_000 * s, final=s == 3)
                   for s in range(4)]
    # out of order, in separate requests, with one repeated: order of arrival must not matter
    for event in [checkpoints[0], checkpoints[2], checkpoints[3], checkpoints[1], checkpoints[2]]:
        assert (await post(api, site.key, [event])).status == 200
    rows = stored(client)
    assert len(rows) == 1
    assert (rows[0]["seq"], rows[0]["active_ms"], rows[0]["final"]) == (3, 45_000, True)


# -- per-event rejections -----------------------------------------------------------------------

BAD_EVENTS = {
    "bad uuid": (visit(visit_id="not-a-uuid"), "visit_id"),
    "negative duration": (visit(active_ms=-1), "active_ms"),
    "duration too long": (visit(idle_ms=13 * 3600 * 1000), "duration"),
    "float duration": (visit(hidden_ms=1.5), "hidden_ms"),
    "missing field": ({k: v for k, v in visit().items() if k != "step"}, "step"),
    "future": (visit(started_at=now_ms() + 3600_000), "future"),
    "older than retention": (visit(started_at=now_ms() - 401 * 86_400_000), "retention"),
    "manager too long": (visit(manager="m" * 129), "manager"),
    "control character": (visit(manager="a\nb"), "manager"),
    "query string in path": (visit(path="/clients/1?email=a@b.c"), "path"),
    "unknown type": ({"type": "click"}, "type"),
    "not an object": ("visit", ""),
    "seq as string": (visit(seq="1"), "seq"),
    "session without action": ({k: v for k, v in session_event().items() if k != "action"}, "action"),
}


@pytest.mark.parametrize("name", sorted(BAD_EVENTS))
async def test_each_invalid_event_is_rejected_and_the_valid_ones_kept(
    name: str, api: Any, site: sites.Site, client: storage.Client
) -> None:
    bad, reason = BAD_EVENTS[name]
    good = [visit(step="offer"), visit(step="contract")]
    response = await post(api, site.key, [good[0], bad, good[1]])
    assert response.status == 200
    body = await response.json()
    assert body["accepted"] == 2
    assert len(body["rejected"]) == 1 and body["rejected"][0]["index"] == 1
    assert reason in body["rejected"][0]["reason"]
    assert sorted(r["step"] for r in stored(client)) == ["contract", "offer"]


async def test_a_batch_with_no_valid_event_is_400_with_every_reason(api: Any, site: sites.Site) -> None:
    response = await post(api, site.key, [visit(seq=-1), visit(visit_id="x")])
    assert response.status == 400
    body = await response.json()
    assert [r["index"] for r in body["rejected"]] == [0, 1]
    assert body["accepted"] == 0


# -- whole-request rejections --------------------------------------------------------------------


async def test_malformed_json_is_400(api: Any) -> None:
    response = await api.post("/v1/events", data=b"{not json", headers={"Content-Type": "text/plain"})
    assert response.status == 400
    assert "JSON" in (await response.json())["error"]


@pytest.mark.parametrize("body", [[], {"events": []}, {"site": "x"}, {"site": "x", "events": {}}, "text", 1])
async def test_malformed_envelope_is_400(api: Any, body: Any) -> None:
    response = await api.post("/v1/events", data=json.dumps(body), headers={"Content-Type": "text/plain"})
    assert response.status == 400
    assert (await response.json())["error"]


async def test_invalid_utf8_is_400(api: Any) -> None:
    response = await api.post("/v1/events", data=b'{"site": "\xff"}', headers={"Content-Type": "text/plain"})
    assert response.status == 400


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data", ""])
async def test_wrong_content_type_is_415(api: Any, site: sites.Site, content_type: str) -> None:
    response = await post(api, site.key, [visit()], content_type=content_type)
    assert response.status == 415
    assert "content type" in (await response.json())["error"]


async def test_body_too_large_is_413(api: Any, site: sites.Site, settings: Settings) -> None:
    big = [visit(manager="m" * 100) for _ in range(settings.max_body_bytes // 300)]
    response = await post(api, site.key, big)
    assert response.status == 413
    assert "body larger" in (await response.json())["error"]


async def test_too_many_events_is_413(api: Any, site: sites.Site, settings: Settings) -> None:
    response = await post(api, site.key, [visit() for _ in range(settings.max_batch_events + 1)])
    assert response.status == 413
    assert "events" in (await response.json())["error"]


async def test_unknown_site_is_401(api: Any) -> None:
    response = await post(api, "pk_nope", [visit()])
    assert response.status == 401


async def test_disabled_site_is_401(api: Any, site: sites.Site, client: storage.Client) -> None:
    sites.set_enabled(client, site.name, False, actor="test", reason="contract ended")
    await api.server.app[keys.SITES].refresh()
    response = await post(api, site.key, [visit()])
    assert response.status == 401
    assert stored(client) == []


async def test_origin_not_allowed_is_403(api: Any, site: sites.Site, client: storage.Client) -> None:
    response = await post(api, site.key, [visit()], origin="https://evil.example.org")
    assert response.status == 403
    assert stored(client) == []


async def test_rate_limit_per_address_is_429_with_retry_after(
    aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site
) -> None:
    api = await aiohttp_client(create_app(settings.model_copy(update={"rate_limit_address": 1.0})))
    statuses = [(await post(api, site.key, [visit()])).status for _ in range(2)]
    assert statuses == [200, 200]  # burst of 2
    response = await post(api, site.key, [visit()])
    assert response.status == 429
    assert int(response.headers["Retry-After"]) >= 1


async def test_rate_limit_per_site_is_429(
    aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site
) -> None:
    api = await aiohttp_client(create_app(settings.model_copy(update={"rate_limit_site": 0.5})))
    statuses = [(await post(api, site.key, [visit()])).status for _ in range(3)]
    assert statuses[-1] == 429


async def test_fuzzed_bodies_never_cause_a_500(api: Any, site: sites.Site) -> None:
    import random

    rng = random.Random(7)
    samples: list[Any] = [None, True, 1e308, "", [], {}, {"site": None}, {"site": site.key, "events": [None]},
                          {"site": site.key, "events": [[]]}, {"site": site.key, "events": ["x" * 10]},
                          {"site": site.key, "events": [{"type": "visit", "visit_id": None}]},
                          {"site": site.key, "identity": 5, "events": []}, {"site": ["a"], "events": []}]
    for _ in range(60):
        event = visit()
        key = rng.choice(list(event))
        event[key] = rng.choice([None, -1, 2**64, "", "x" * 5000, [], {}, 1.5, True, "😀" * 10])
        samples.append({"site": site.key, "events": [event]})
    for body in samples:
        response = await api.post("/v1/events", data=json.dumps(body), headers={"Content-Type": "text/plain"})
        assert response.status < 500, body


# -- CORS ------------------------------------------------------------------------------------------


async def test_preflight_for_an_allowed_origin(api: Any) -> None:
    response = await api.options("/v1/events", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type",
    })
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in response.headers["Access-Control-Allow-Headers"]


async def test_preflight_for_another_origin_is_refused(api: Any) -> None:
    response = await api.options("/v1/events", headers={
        "Origin": "https://evil.example.org", "Access-Control-Request-Method": "POST"})
    assert response.status == 403
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_answers_carry_the_origin_so_the_tracker_can_read_them(api: Any, site: sites.Site) -> None:
    response = await post(api, site.key, [visit()])
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["Access-Control-Expose-Headers"] == "Retry-After"


async def test_origin_match_ignores_default_port_and_case(api: Any, site: sites.Site) -> None:
    response = await post(api, site.key, [visit()], origin="HTTPS://CRM.example.com:443")
    assert response.status == 200


# -- signed identity ------------------------------------------------------------------------------------


@pytest.fixture
async def secure_api(aiohttp_client: Any, settings: Settings, client: storage.Client, signed_site: sites.Site) -> Any:
    return await aiohttp_client(create_app(settings))


async def test_signed_identity_is_accepted(secure_api: Any, signed_site: sites.Site, client: storage.Client) -> None:
    token = sign(signed_site.secret, "manager-42", int(time.time()) + 600)
    response = await post(secure_api, signed_site.key, [visit()], identity=token)
    assert response.status == 200
    assert len(stored(client)) == 1


@pytest.mark.parametrize("case", ["missing", "expired", "forged", "other manager", "malformed"])
async def test_bad_identity_is_401(secure_api: Any, signed_site: sites.Site, client: storage.Client, case: str) -> None:
    future = int(time.time()) + 600
    token = {
        "missing": None,
        "expired": sign(signed_site.secret, "manager-42", int(time.time()) - 1),
        "forged": sign("sk_wrong", "manager-42", future),
        "other manager": sign(signed_site.secret, "manager-7", future),
        "malformed": "abc",
    }[case]
    response = await post(secure_api, signed_site.key, [visit()], identity=token)
    assert response.status == 401
    assert (await response.json())["error"]
    assert stored(client) == []


async def test_events_of_an_unsigned_manager_are_rejected_one_by_one(
    secure_api: Any, signed_site: sites.Site, client: storage.Client
) -> None:
    token = sign(signed_site.secret, "manager-42", int(time.time()) + 600)
    response = await post(secure_api, signed_site.key, [visit(), visit(manager="manager-7")], identity=token)
    body = await response.json()
    assert body["accepted"] == 1 and body["rejected"][0]["index"] == 1
    assert [r["manager"] for r in stored(client)] == ["manager-42"]


# -- group commit, spool, durability ---------------------------------------------------------------------


class CountingStore(storage.Store):
    """A real store that counts inserts, and can be switched off to play an unavailable ClickHouse."""

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.down = False
        self.inserts = 0

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            raise storage.StorageUnavailable("switched off by the test")
        if getattr(fn, "__name__", "") in ("_insert_all", "_ship_file"):
            self.inserts += 1
        return super().call(fn, *args, **kwargs)


@pytest.mark.parametrize("ack_mode", ["wal", "insert"])
async def test_concurrent_requests_share_one_write_and_one_insert(
    aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site, ack_mode: str
) -> None:
    from collector.spool import Spool

    appends = 0
    original = Spool.append

    def counting_append(self: Spool, *args: Any) -> None:
        nonlocal appends
        appends += 1
        original(self, *args)

    Spool.append = counting_append  # type: ignore[method-assign]
    try:
        grouped = settings.model_copy(update={"group_commit_ms": 50, "ack_mode": ack_mode})
        store = CountingStore(grouped)
        api = await aiohttp_client(create_app(grouped, store=store))
        responses = await asyncio.gather(*(post(api, site.key, [visit() for _ in range(10)]) for _ in range(20)))
    finally:
        Spool.append = original  # type: ignore[method-assign]
    assert {r.status for r in responses} == {200}
    assert len(stored(client)) == 200
    assert store.inserts <= 3, store.inserts  # one or two group commits, not 20 inserts
    if ack_mode == "wal":
        assert 1 <= appends <= 3, appends  # and as few fsynced spool writes
    else:
        assert appends == 0


async def test_wal_mode_acknowledges_before_clickhouse_and_ships_within_flush_ms(
    aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site
) -> None:
    api = await aiohttp_client(create_app(settings.model_copy(update={"flush_ms": 100})))
    body = json.dumps({"site": site.key, "events": [visit(), visit()]})
    response = await api.post("/v1/events", data=body, headers={"Content-Type": "text/plain"})
    assert response.status == 200
    assert api.server.app[keys.WRITER].spool.events in (0, 2)  # fsynced in the spool, or shipped already
    spool = api.server.app[keys.WRITER].spool
    for _ in range(50):  # the rows show in ClickHouse a moment before the shipper counts them off the spool
        if len(stored(client)) == 2 and spool.events == 0:
            break
        await asyncio.sleep(0.05)
    assert len(stored(client)) == 2
    assert spool.events == 0


@pytest.mark.parametrize("ack_mode", ["wal", "insert"])
async def test_events_are_spooled_while_storage_is_down_and_drained_after(
    aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site, ack_mode: str
) -> None:
    settings = settings.model_copy(update={"ack_mode": ack_mode})
    store = CountingStore(settings)
    api = await aiohttp_client(create_app(settings, store=store))
    store.down = True
    events = [visit(), visit(), session_event()]
    response = await post(api, site.key, events)
    assert response.status == 200  # acknowledged: durable in the spool
    writer = api.server.app[keys.WRITER]
    assert writer.spool.events == 3 and writer.spool.files()
    ready = await api.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["spool_events"] == 3
    assert stored(client) == []

    store.down = False
    for _ in range(100):
        if not writer.spool.files():
            break
        await asyncio.sleep(0.05)
    assert len(stored(client)) == 2
    assert stored(client, "SELECT count() AS n FROM service_sessions") == [{"n": 1}]
    assert writer.spool.bytes == 0
    assert (await api.get("/readyz")).status == 200
    # and back in normal mode: new events go straight to ClickHouse
    assert (await post(api, site.key, [visit()])).status == 200
    assert len(stored(client)) == 3


async def test_spool_full_is_503_with_retry_after(
    aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site
) -> None:
    small = settings.model_copy(update={"spool_max_bytes": 4096})
    store = CountingStore(small)
    api = await aiohttp_client(create_app(small, store=store))
    store.down = True
    statuses = [(await post(api, site.key, [visit() for _ in range(5)])).status for _ in range(4)]
    assert statuses[0] == 200
    assert statuses[-1] == 503
    last = await post(api, site.key, [visit() for _ in range(5)])
    assert last.status == 503 and last.headers["Retry-After"]


async def test_spool_left_by_a_previous_run_is_replayed_at_start(
    aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site
) -> None:
    from collector.events import check_events, parse_batch
    from collector.spool import Spool

    batch = parse_batch(json.dumps({"site": site.key, "events": [visit(), visit(seq=2), session_event()]}).encode())
    checked = check_events(batch, site=site.name, settings=settings)
    spool = Spool(settings.spool_path, settings.spool_max_bytes)
    spool.append(b"\n".join(checked.visits), len(checked.visits), b"\n".join(checked.sessions), len(checked.sessions))
    spool.close()
    # a crash mid-write: the header promises more bytes than the file holds
    (settings.spool_path / "spool-99999999999999999999.log").write_bytes(b"V 1 500\n" + checked.visits[0][:40])
    await aiohttp_client(create_app(settings))
    assert len(stored(client)) == 2
    assert stored(client, "SELECT count() AS n FROM service_sessions") == [{"n": 1}]


# -- operations -----------------------------------------------------------------------------------------


async def test_health_ready_metrics_schema(api: Any, site: sites.Site) -> None:
    await post(api, site.key, [visit(), visit(seq=-5)])
    assert (await (await api.get("/healthz")).json()) == {"status": "ok"}
    ready = await api.get("/readyz")
    assert ready.status == 200 and (await ready.json())["storage"] == "ok"
    text = await (await api.get("/metrics")).text()
    for name in ("stepwatch_events_accepted_total", "stepwatch_events_rejected_total", "stepwatch_group_commit_rows",
                 "stepwatch_insert_seconds", "stepwatch_spool_bytes", 'reason="invalid_event"'):
        assert name in text
    schema = await (await api.get("/v1/schema")).json()
    assert schema["properties"]["events"]["maxItems"] == 500
    assert {"VisitEvent", "SessionEvent"} <= set(schema["$defs"])


async def test_schema_validates_a_real_event(api: Any) -> None:
    import jsonschema

    schema = await (await api.get("/v1/schema")).json()
    jsonschema.validate({"site": "k", "events": [visit(), session_event()]}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"site": "k", "events": [visit(seq=-1)]}, schema)


async def test_responses_carry_a_request_id(api: Any) -> None:
    response = await api.get("/healthz", headers={"X-Request-Id": "abc123"})
    assert response.headers["X-Request-Id"] == "abc123"
    assert len((await api.get("/healthz")).headers["X-Request-Id"]) == 16
