"""The collector under hostile and unlucky input: bodies that arrive in pieces, forged or odd
headers, odd identity tokens, one client flooding, and the customer pseudonyms that keep a public
salt from revealing customer numbers. Against a real server on 127.0.0.1 and the real engine."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from collector import keys
from collector.identity import IdentityRejected, sign, verify
from collector.views import forwarded_client
from kernel import migrations, processes, sites, storage
from kernel.settings import Settings
from stepwatch import eventlog
from stepwatch.app import create_app
from tests.test_ingest import ORIGIN, session_event, stored, visit

BROWSER_HASH = hashlib.sha256(b"salt:1234567").hexdigest()  # what a tracker sends for a customer


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site) -> Any:
    return await aiohttp_client(create_app(settings))


async def post(api: Any, body: dict[str, Any] | bytes, headers: dict[str, str] | None = None) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await api.post("/v1/events", data=io.BytesIO(data),
                              headers={"Content-Type": "text/plain", **(headers or {})})
    await api.server.app[keys.WRITER].ship()
    return response


# -- a body that arrives in pieces ------------------------------------------------------------------


async def send_in_pieces(api: Any, head: dict[str, str], pieces: list[bytes], *, pause: float = 0.3) -> bytes:
    """POST /v1/events on a raw socket: the head, then each piece in its own write after a pause;
    returns the answer's status line and head as soon as they arrive (whether or not all was sent)."""
    reader, writer = await asyncio.open_connection(api.server.host, api.server.port)
    try:
        lines = ["POST /v1/events HTTP/1.1", f"Host: {api.server.host}", "Content-Type: text/plain",
                 *(f"{k}: {v}" for k, v in head.items()), "", ""]
        writer.write("\r\n".join(lines).encode())
        answer = asyncio.create_task(reader.readuntil(b"\r\n\r\n"))
        for piece in pieces:
            await writer.drain()
            done, _ = await asyncio.wait([answer], timeout=pause)
            if done:
                break  # answered before the whole body was sent
            writer.write(piece)
        return await asyncio.wait_for(answer, 10)
    finally:
        writer.close()


def chunked(*parts: bytes) -> list[bytes]:
    return [b"%x\r\n%b\r\n" % (len(p), p) for p in parts] + [b"0\r\n\r\n"]


def status_of(head: bytes) -> int:
    return int(head.split(b" ", 2)[1])


async def test_a_body_sent_in_two_writes_with_a_content_length_is_stored(
        api: Any, site: sites.Site, client: storage.Client) -> None:
    body = json.dumps({"site": site.key, "events": [visit(step="offer"), visit(step="contract")]}).encode()
    head = await send_in_pieces(api, {"Content-Length": str(len(body))}, [body[:40], body[40:]])
    assert status_of(head) == 200, head
    await api.server.app[keys.WRITER].ship()
    assert sorted(r["step"] for r in stored(client)) == ["contract", "offer"]


async def test_a_chunked_body_sent_in_pieces_is_stored(api: Any, site: sites.Site, client: storage.Client) -> None:
    body = json.dumps({"site": site.key, "events": [visit(), visit(), session_event()]}).encode()
    head = await send_in_pieces(api, {"Transfer-Encoding": "chunked"}, chunked(body[:100], body[100:200], body[200:]))
    assert status_of(head) == 200, head
    await api.server.app[keys.WRITER].ship()
    assert len(stored(client)) == 2


async def test_a_chunked_body_over_the_limit_is_413_before_it_ends(
        aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site) -> None:
    small = settings.model_copy(update={"max_body_bytes": 4096})
    api = await aiohttp_client(create_app(small))
    body = json.dumps({"site": site.key, "events": [visit(manager="m" * 100) for _ in range(40)]}).encode()
    assert len(body) > 3 * 2000
    # The last chunk and the end are never sent: the answer comes once 4096 bytes are passed.
    pieces = chunked(body[:2000], body[2000:4000], body[4000:6000], body[6000:])[:3]
    head = await send_in_pieces(api, {"Transfer-Encoding": "chunked"}, pieces + [b""] * 3)
    assert status_of(head) == 413, head
    assert stored(client) == []


async def test_a_body_the_content_encoding_does_not_fit_is_400(api: Any, site: sites.Site) -> None:
    response = await post(api, {"site": site.key, "events": [visit()]}, {"Content-Encoding": "gzip"})
    assert response.status == 400
    assert "body cannot be read" in (await response.json())["error"]


# -- signed identity in other digits ----------------------------------------------------------------


SIGNATURE = "0" * 64
ODD_TOKENS = {
    "arabic-indic digits": "١٧٦٧٢٢٥٦٠٠٠." + SIGNATURE,
    "fullwidth digits": "１７６７２２５６００００." + SIGNATURE,
    "superscript digits": "²³." + SIGNATURE,
    "non-ascii signature": "9999999999." + "é" * 64,
    "expiry of 400 digits": "9" * 400 + "." + SIGNATURE,
}


@pytest.mark.parametrize("name", sorted(ODD_TOKENS))
def test_an_identity_token_in_other_digits_is_malformed(name: str) -> None:
    with pytest.raises(IdentityRejected, match="malformed"):
        verify("sk_secret", "manager-42", ODD_TOKENS[name], now=1_700_000_000)


@pytest.mark.parametrize("name", sorted(ODD_TOKENS))
async def test_an_identity_token_in_other_digits_is_401(
        aiohttp_client: Any, settings: Settings, client: storage.Client, signed_site: sites.Site, name: str) -> None:
    api = await aiohttp_client(create_app(settings))
    response = await post(api, {"site": signed_site.key, "identity": ODD_TOKENS[name], "events": [visit()]})
    assert response.status == 401
    assert "malformed" in (await response.json())["error"]
    assert stored(client) == []


def test_a_valid_token_still_verifies() -> None:
    verify("sk_secret", "manager-42", sign("sk_secret", "manager-42", 1_700_000_600), now=1_700_000_000)


# -- X-Forwarded-For -----------------------------------------------------------------------------------


def client_of(remote: str, forwarded: str, **settings: Any) -> str:
    return forwarded_client(remote, forwarded, Settings(**settings))


def test_forwarded_for_is_ignored_unless_a_proxy_is_trusted() -> None:
    assert client_of("198.51.100.9", "203.0.113.7") == "198.51.100.9"


def test_with_trust_on_and_no_proxy_list_the_right_most_entry_is_the_client() -> None:
    # The one proxy appended the address it saw; what the client wrote stands left of it.
    assert client_of("10.0.0.1", "6.6.6.6, 203.0.113.7", trust_forwarded_for=True) == "203.0.113.7"


def test_the_chain_is_read_from_the_right_past_the_trusted_proxies() -> None:
    chain = "6.6.6.6, 203.0.113.7, 10.0.0.2, 10.0.0.3"
    assert client_of("10.0.0.1", chain, trusted_proxies="10.0.0.0/8") == "203.0.113.7"
    assert client_of("10.0.0.1", chain, trusted_proxies="10.0.0.1, 10.0.0.2,10.0.0.3") == "203.0.113.7"
    # every entry a proxy: the left-most one is nearest the client
    assert client_of("10.0.0.1", "10.0.0.5, 10.0.0.2", trusted_proxies="10.0.0.0/8") == "10.0.0.5"


def test_a_peer_outside_the_trusted_proxies_is_the_client_whatever_it_sends() -> None:
    assert client_of("198.51.100.9", "10.0.0.2", trusted_proxies="10.0.0.0/8") == "198.51.100.9"
    assert client_of("198.51.100.9", "203.0.113.7", trusted_proxies="10.0.0.0/8",
                     trust_forwarded_for=True) == "198.51.100.9"


@pytest.mark.parametrize(("chain", "expected"), [
    ("6.6.6.6, not-an-address, 10.0.0.2", "10.0.0.2"),  # the walk ends: left of it is not the proxies'
    ("6.6.6.6, , 10.0.0.2", "10.0.0.2"),
    ("garbage", "10.0.0.1"),
    ("", "10.0.0.1"),
    ("203.0.113.7:5555, 10.0.0.2", "203.0.113.7"),
    ("[2001:db8::1]:443, 10.0.0.2", "2001:db8::1"),
    ("2001:db8::1, 10.0.0.2", "2001:db8::1"),
    ("1" * 5000, "10.0.0.1"),
    ("[::1, ]:, ::ffff:zz, 300.1.1.1, 10.0.0.2", "10.0.0.2"),
])
def test_malformed_entries_never_pass_for_a_client(chain: str, expected: str) -> None:
    assert client_of("10.0.0.1", chain, trusted_proxies="10.0.0.0/8") == expected


async def test_a_spoofed_left_most_entry_does_not_escape_the_per_address_limit(
        aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site) -> None:
    limited = settings.model_copy(update={"rate_limit_address": 1.0, "trust_forwarded_for": True})
    api = await aiohttp_client(create_app(limited))
    statuses = []
    for n in range(4):  # a new made-up address each time, before what the proxy appended
        response = await post(api, {"site": site.key, "events": [visit()]},
                              {"X-Forwarded-For": f"192.0.2.{n}, 198.51.100.9"})
        statuses.append(response.status)
    assert statuses[:2] == [200, 200] and statuses[2:] == [429, 429]


async def test_behind_trusted_proxies_the_client_behind_them_is_limited(
        aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site) -> None:
    limited = settings.model_copy(update={"rate_limit_address": 1.0, "trusted_proxies": "127.0.0.1, 10.0.0.0/8"})
    api = await aiohttp_client(create_app(limited))

    async def status(forwarded: str) -> int:
        response = await post(api, {"site": site.key, "events": [visit()]}, {"X-Forwarded-For": forwarded})
        return response.status

    assert [await status(f"192.0.2.{n}, 198.51.100.9, 10.1.1.1") for n in range(3)] == [200, 200, 429]
    assert await status("198.51.100.10, 10.1.1.1") == 200  # another client behind the same proxies


# -- the address's limit before the site's ---------------------------------------------------------


async def test_one_address_flooding_does_not_use_up_its_sites_limit(
        aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site) -> None:
    limited = settings.model_copy(update={"rate_limit_address": 1.0, "rate_limit_site": 2.0,
                                          "trusted_proxies": "127.0.0.1"})
    api = await aiohttp_client(create_app(limited))
    body = json.dumps({"site": site.key, "events": [visit()]}).encode()

    async def status(address: str) -> int:
        response = await api.post("/v1/events", data=body,
                                  headers={"Content-Type": "text/plain", "X-Forwarded-For": address})
        return response.status

    flood = [await status("198.51.100.1") for _ in range(10)]
    assert flood[:2] == [200, 200] and set(flood[2:]) == {429}
    assert await status("198.51.100.2") == 200


# -- CORS and Origin: null ------------------------------------------------------------------------


async def test_origin_null_is_never_echoed(api: Any, site: sites.Site, client: storage.Client) -> None:
    response = await post(api, {"site": site.key, "events": [visit()]}, {"Origin": "null"})
    assert response.status == 403
    assert "Access-Control-Allow-Origin" not in response.headers
    preflight = await api.options("/v1/events", headers={"Origin": "null", "Access-Control-Request-Method": "POST"})
    assert preflight.status == 403 and "Access-Control-Allow-Origin" not in preflight.headers
    processes.load(client, processes.from_definition({"process": "sales", "steps": [{"key": "offer"}]}, site.name),
                   actor="test")
    await api.server.app[keys.SITES].refresh()
    config = await api.get(f"/v1/config/{site.key}", headers={"Origin": "null"})
    assert config.status == 200 and "Access-Control-Allow-Origin" not in config.headers
    allowed = await api.get(f"/v1/config/{site.key}", headers={"Origin": ORIGIN})
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN


# -- hostile headers and paths: 4xx, never 5xx ------------------------------------------------------


@pytest.mark.parametrize("origin", ["http://[::1", "https://[zz]:80", "https://crm.example.com:99999",
                                    "https://" + "a" * 4000 + ".com", "é://x", "null"])
async def test_odd_origins_are_refused_not_500(api: Any, site: sites.Site, origin: str) -> None:
    response = await post(api, {"site": site.key, "events": [visit()]}, {"Origin": origin})
    assert response.status == 403
    preflight = await api.options("/v1/events", headers={"Origin": origin})
    assert preflight.status == 403
    config = await api.get(f"/v1/config/{site.key}", headers={"Origin": origin})
    assert config.status == 404  # no process loaded: no config, and no 500 either


@pytest.mark.parametrize("path", ["/v1/config/" + "k" * 4000, "/v1/config/%00", "/v1/config/%FF%FE",
                                  "/v1/config/..%2F..%2Fetc", "/v1/config/%F0%9F%98%80", "/v1/config/a%2Fb",
                                  "/v1/config/x?%FF=%FF"])
async def test_odd_config_keys_are_404(api: Any, path: str) -> None:
    response = await api.get(path, headers={"If-None-Match": 'W/"x", *'})
    assert response.status == 404
    assert (await response.json())["error"]


@pytest.mark.parametrize("body", [
    b'{"site":"k","events":[' + b"[" * 50_000 + b"]" * 50_000 + b"]}",
    b'{"site":"k","events":[{"type":"visit","manager":"\\ud800"}]}',
    b'\xef\xbb\xbf{"site":"k","events":[]}',
    b'{"site":"k","events":[{"type":"visit","seq":1e999}]}',
    b'{"site":"k","events":[{"type":"visit","seq":' + b"9" * 5000 + b"}]}",
    b"",
])
async def test_hostile_bodies_are_4xx(api: Any, body: bytes) -> None:
    response = await post(api, body)
    assert 400 <= response.status < 500


# -- customer pseudonyms ------------------------------------------------------------------------------


def keyed(site: sites.Site, value: str) -> str:
    return hmac.new(site.pseudonym_key.encode(), value.encode(), hashlib.sha256).hexdigest()[:32]


def customers(client: storage.Client, site: str = "crm") -> set[str]:
    rows = client.query("SELECT customer FROM visits WHERE site = {s:String} UNION ALL "
                        "SELECT customer FROM session_events WHERE site = {s:String}", parameters={"s": site})
    return {row[0] for row in rows.result_rows}


async def test_the_stored_customer_is_the_hmac_of_the_trackers_hash_with_the_sites_key(
        api: Any, site: sites.Site, client: storage.Client) -> None:
    events = [visit(customer=BROWSER_HASH), visit(customer=BROWSER_HASH), session_event(customer=BROWSER_HASH)]
    assert (await post(api, {"site": site.key, "events": events})).status == 200
    # and later, through the slow path (a batch with an invalid event): the same value
    later = [visit(customer=BROWSER_HASH), visit(seq=-1), session_event(customer=BROWSER_HASH, action="end")]
    assert (await api.post("/v1/events", data=json.dumps({"site": site.key, "events": later}),
                           headers={"Content-Type": "text/plain"})).status == 200
    await api.server.app[keys.WRITER].ship()
    assert len(site.pseudonym_key) == 64
    assert customers(client) == {keyed(site, BROWSER_HASH)}
    assert BROWSER_HASH not in customers(client)


async def test_no_customer_stays_empty(api: Any, site: sites.Site, client: storage.Client) -> None:
    plain = visit()
    del plain["customer"]
    events = [visit(customer=""), plain, session_event(customer="")]
    assert (await post(api, {"site": site.key, "events": events})).status == 200
    assert customers(client) == {""}


async def test_two_sites_store_different_pseudonyms_for_one_customer(
        api: Any, site: sites.Site, client: storage.Client) -> None:
    other = sites.add_site(client, "shop", ["https://crm.example.com"], actor="test")
    await api.server.app[keys.SITES].refresh()
    for each in (site, other):
        assert (await post(api, {"site": each.key, "events": [visit(customer=BROWSER_HASH)]})).status == 200
    assert customers(client, "crm") == {keyed(site, BROWSER_HASH)}
    assert customers(client, "shop") == {keyed(other, BROWSER_HASH)}
    assert site.pseudonym_key != other.pseudonym_key


async def test_the_pseudonym_key_is_never_served(api: Any, site: sites.Site, client: storage.Client) -> None:
    processes.load(client, processes.from_definition({"process": "sales", "steps": [{"key": "offer"}]}, site.name),
                   actor="test")
    await api.server.app[keys.SITES].refresh()
    response = await api.get(f"/v1/config/{site.key}")
    assert response.status == 200
    text = await response.text()
    assert site.pseudonym_key not in text and "pseudonym" not in text
    assert site.salt in text  # the salt is public: hence the key


async def test_a_site_whose_key_is_not_loaded_yet_is_503_not_stored_in_clear(
        api: Any, site: sites.Site, client: storage.Client) -> None:
    directory = api.server.app[keys.SITES]
    directory._set([sites.Site(**{**site.__dict__, "pseudonym_key": ""})])  # a snapshot from before the key
    response = await post(api, {"site": site.key, "events": [visit(customer=BROWSER_HASH)]})
    assert response.status == 503 and response.headers["Retry-After"]
    assert stored(client) == []


def test_sites_made_before_the_key_get_one_of_their_own(settings: Settings) -> None:
    client = storage.connect(settings)
    try:
        client.command(migrations._LEDGER)
        for migration in migrations.discover():
            if migration.version < 16:
                for statement in migration.statements():
                    client.command(statement)
                client.insert("schema_migrations", [[migration.version, migration.name, migration.checksum]],
                              column_names=["version", "name", "checksum"])
        for name in ("old", "older"):
            client.command("INSERT INTO sites (name, key, secret, salt, origins, require_identity, enabled, version) "
                           "VALUES ({n:String}, {n:String}, 's', 'salt', [], false, true, 1)", parameters={"n": name})
        assert [m.version for m in migrations.apply_pending(client)][0] == 16
        first = {s.name: s.pseudonym_key for s in sites.list_sites(client)}
        assert all(len(key) == 64 for key in first.values()) and first["old"] != first["older"]
        for statement in next(m for m in migrations.discover() if m.version == 16).statements():
            client.command(statement)  # run again: keeps the keys
        again = {s.name: s.pseudonym_key for s in sites.list_sites(client)}
        assert again == first
    finally:
        client.command(f"DROP DATABASE IF EXISTS {settings.database} SYNC")
        client.close()


FIXTURES = Path(__file__).resolve().parent / "fixtures" / "eventlog"


def test_imported_cases_are_stored_as_pseudonyms_like_tracked_customers(
        client: storage.Client, settings: Settings, site: sites.Site, tmp_path: Path) -> None:
    other = sites.add_site(client, "shop", ["https://crm.example.com"], actor="test")
    log = tmp_path / "log.csv"
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 7200))
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600))
    log.write_text("case,activity,resource,start,complete\n"
                   f"1234567,Call,anna,{stamp},{later}\n"
                   f"1234567,Offer,anna,{later},{later}\n")
    for each in (site, other):
        summary = eventlog.import_log(client, settings, log, eventlog.ImportOptions(site=each.name))
        assert summary.visits == 2
    expected = keyed(site, sites.tracker_hash(site.salt, "1234567"))
    assert customers(client, "crm") == {expected}
    assert customers(client, "shop") == {keyed(other, sites.tracker_hash(other.salt, "1234567"))}
    assert expected != keyed(other, sites.tracker_hash(other.salt, "1234567"))
    assert eventlog.customer_ref(site, "1234567") == expected
    assert "1234567" not in customers(client, "crm")


async def test_an_imported_case_links_with_the_trackers_events_for_that_customer(
        api: Any, site: sites.Site, client: storage.Client) -> None:
    browser = hashlib.sha256(f"{site.salt}:C-17".encode()).hexdigest()  # what track.js sends for "C-17"
    assert (await post(api, {"site": site.key, "events": [visit(customer=browser)]})).status == 200
    assert customers(client) == {eventlog.customer_ref(site, "C-17")}


def test_pseudonyms_are_stable_and_remembered() -> None:
    pseudonyms = sites.Pseudonyms("k" * 64)
    first = pseudonyms(BROWSER_HASH)
    assert first == hmac.new(b"k" * 64, BROWSER_HASH.encode(), hashlib.sha256).hexdigest()[:32]
    assert pseudonyms(BROWSER_HASH) == first == sites.Pseudonyms("k" * 64)(BROWSER_HASH)
    assert sites.Pseudonyms("j" * 64)(BROWSER_HASH) != first
    assert pseudonyms("") == ""
    with pytest.raises(ValueError):
        sites.Pseudonyms("")


def test_session_linking_survives_pseudonyms(client: storage.Client, site: sites.Site) -> None:
    """Two sessions of one customer share their stored customer, so they still link."""
    from collector.events import check_events, parse_batch

    events = [session_event(session_id=f"s-{n}", customer=BROWSER_HASH, event_id=str(uuid.uuid4())) for n in range(2)]
    checked = check_events(parse_batch(json.dumps({"site": site.key, "events": events}).encode()),
                           site=site.name, settings=Settings(), pseudonyms=sites.Pseudonyms(site.pseudonym_key))
    assert len({json.loads(row)["customer"] for row in checked.sessions}) == 1
