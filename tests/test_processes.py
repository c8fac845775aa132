"""Process definitions: TOML in, versions in ClickHouse, the tracker's config out."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from collector import keys
from kernel import processes, sites, storage
from kernel.errors import InvalidInput
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.helpers import run_cli

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "sales_desk.toml"


def test_the_example_parses_into_the_seven_sales_steps() -> None:
    process = processes.parse(EXAMPLE.read_text(), "crm")
    assert [s.key for s in process.steps] == [
        "identification", "needs", "products", "offer", "contract", "payment", "closing",
    ]
    assert process.step("offer").title == "Offer"
    assert process.tracker.idle_ms == 30_000


BAD = {
    "not toml": ("process = ", "not valid TOML"),
    "no process key": ('[[steps]]\nkey = "a"', "`process`"),
    "no steps": ('process = "p"', "at least one [[steps]]"),
    "duplicate step": ('process = "p"\n[[steps]]\nkey = "a"\n[[steps]]\nkey = "a"', "appears twice"),
    "bad step key": ('process = "p"\n[[steps]]\nkey = "a b"', "`key`"),
    "relative pattern": ('process = "p"\n[[steps]]\nkey = "a"\npatterns = ["clients"]', "starting with /"),
    "bad segment": ('process = "p"\n[[steps]]\nkey = "a"\npatterns = ["/a/{Bad Name}"]', "segment"),
    "double slash": ('process = "p"\n[[steps]]\nkey = "a"\npatterns = ["/clients//x"]', "empty segment"),
    "repeated name": ('process = "p"\n[[steps]]\nkey = "a"\npatterns = ["/{x}/{x}"]', "twice"),
    "unknown key": ('process = "p"\ncolour = 1\n[[steps]]\nkey = "a"', "unknown keys"),
    "idle too short": ('process = "p"\n[tracker]\nidle_ms = 5\n[[steps]]\nkey = "a"', "idle_ms"),
    "attributes not a table": ('process = "p"\nattributes = 3\n[[steps]]\nkey = "a"', "[attributes] must be a table"),
    "attribute name uppercase": ('process = "p"\n[attributes]\nSegment = ["vip"]\n[[steps]]\nkey = "a"',
                                 "'Segment': a name must be"),
    "attribute value free text": ('process = "p"\n[attributes]\nsegment = ["Very important"]\n[[steps]]\nkey = "a"',
                                  "segment: value 'Very important'"),
    "attribute without values": ('process = "p"\n[attributes]\nsegment = []\n[[steps]]\nkey = "a"',
                                 "segment: must be a non-empty list"),
    "attribute value twice": ('process = "p"\n[attributes]\nsegment = ["a", "a"]\n[[steps]]\nkey = "a"',
                              "segment: a value appears twice"),
    "five attributes": ('process = "p"\n[attributes]\n' + "".join(f'a{i} = ["x"]\n' for i in range(5))
                        + '[[steps]]\nkey = "a"', "at most 4 attributes"),
    "21 values": ('process = "p"\n[attributes]\nsegment = [' + ", ".join(f'"v{i}"' for i in range(21))
                  + ']\n[[steps]]\nkey = "a"', "segment: at most 20 values"),
    "title of an undeclared attribute": ('process = "p"\n[attribute_titles]\nsegment = "Segment"\n[[steps]]\nkey = "a"',
                                         "[attribute_titles] segment: not a declared attribute"),
    "title of an undeclared value": ('process = "p"\n[attributes]\nsegment = ["vip"]\n[value_titles.segment]\n'
                                     'gold = "Gold"\n[[steps]]\nkey = "a"', "gold: not a declared value of segment"),
}


WITH_ATTRIBUTES = """
process = "p"
[attributes]
segment = ["vip", "regular"]
channel = ["phone", "email", "chat"]
[attribute_titles]
segment = "Client segment"
[value_titles.segment]
vip = "VIP"
[[steps]]
key = "a"
"""


def test_declared_attributes_are_parsed_titled_and_round_trip() -> None:
    process = processes.parse(WITH_ATTRIBUTES, "crm")
    assert process.attributes == {"segment": ("vip", "regular"), "channel": ("phone", "email", "chat")}
    assert list(process.attributes) == ["channel", "segment"]  # in name order, as stored
    assert (process.attribute_title("segment"), process.attribute_title("channel")) == ("Client segment", "channel")
    assert (process.value_title("segment", "vip"), process.value_title("segment", "regular")) == ("VIP", "regular")
    assert processes.parse(process.to_toml(), "crm") == process
    assert processes.from_definition(json.loads(json.dumps(process.definition())), "crm") == process
    # a definition without attributes is versioned exactly as before they existed
    assert "attributes" not in processes.parse(EXAMPLE.read_text(), "crm").definition()


def test_a_session_s_attributes_are_checked_against_the_declaration() -> None:
    process = processes.parse(WITH_ATTRIBUTES, "crm")
    assert process.attribute_problem({}) is None
    assert process.attribute_problem({"segment": "vip", "channel": "chat"}) is None
    assert process.attribute_problem({"region": "north"}) == \
        "attributes.region: not declared by the process (declared: channel, segment)"
    assert processes.attribute_problem({}, {"region": "north"}) == \
        "attributes.region: not declared by the process (it declares none)"
    assert process.attribute_problem({"segment": "gold"}) == "attributes.segment: the value is not one of vip, regular"
    assert process.attribute_problem({"segment": 1}) == "attributes.segment: the value is not one of vip, regular"
    assert process.attribute_problem(["vip"]) is not None


def test_a_declared_attribute_makes_a_new_version(client: storage.Client, site: sites.Site) -> None:
    first, _ = processes.load(client, processes.parse(EXAMPLE.read_text(), "crm"), actor="ann")
    text = EXAMPLE.read_text() + '\n[attributes]\nsegment = ["vip", "regular"]\n'
    second, changed = processes.load(client, processes.parse(text, "crm"), actor="ann")
    assert changed and second.version == first.version + 1
    assert processes.latest(client, "crm").attributes == {"segment": ("vip", "regular")}  # type: ignore[union-attr]


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_definition_is_refused_with_the_reason(case: str) -> None:
    text, reason = BAD[case]
    with pytest.raises(InvalidInput, match=reason.replace("[", r"\[").replace("]", r"\]")):
        processes.parse(text, "crm")


def test_loading_versions_only_real_changes_and_audits(client: storage.Client, site: sites.Site) -> None:
    first, changed = processes.load(client, processes.parse(EXAMPLE.read_text(), "crm"), actor="ann", reason="v1")
    assert (first.version, changed) == (1, True)
    again, changed = processes.load(client, processes.parse(EXAMPLE.read_text(), "crm"), actor="ann")
    assert (again.version, changed) == (1, False)
    edited = EXAMPLE.read_text().replace('title = "Offer"', 'title = "Commercial offer"')
    second, changed = processes.load(client, processes.parse(edited, "crm"), actor="bob", reason="rename")
    assert (second.version, changed) == (2, True)
    assert processes.latest(client, "crm") == second
    assert [h["version"] for h in processes.history(client, "crm")] == [2, 1]
    actions = storage.query_rows(client, "SELECT actor, action, reason FROM audit_log WHERE action = 'process.load' "
                                          "ORDER BY at")
    assert actions == [{"actor": "ann", "action": "process.load", "reason": "v1"},
                       {"actor": "bob", "action": "process.load", "reason": "rename"}]


@pytest.mark.slow
def test_show_prints_back_what_was_loaded(tmp_path: Path) -> None:
    env = {"STEPWATCH_DATA_DIR": str(tmp_path / "data")}
    assert run_cli("sites", "add", "crm", "--origin", "https://crm.example.com", env=env)[0] == 0
    code, out, err = run_cli("process", "load", str(EXAMPLE), "--site", "crm", "--reason", "pilot", env=env)
    assert code == 0, err
    assert "7 steps, loaded as version 1" in out
    code, out, _ = run_cli("process", "load", str(EXAMPLE), "--site", "crm", env=env)
    assert "unchanged (version 1)" in out
    code, shown, _ = run_cli("process", "show", "crm", env=env)
    assert code == 0
    assert processes.parse(shown, "crm").definition() == processes.parse(EXAMPLE.read_text(), "crm").definition()
    code, out, _ = run_cli("process", "show", "crm", "--json", env=env)
    assert json.loads(out)["steps"][3]["key"] == "offer"

    bad = tmp_path / "bad.toml"
    bad.write_text('process = "p"\n[[steps]]\nkey = "a"\npatterns = ["nope"]')
    code, _, err = run_cli("process", "load", str(bad), "--site", "crm", env=env)
    assert code == 1 and "starting with /" in err and "Traceback" not in err
    code, _, err = run_cli("process", "load", str(EXAMPLE), "--site", "ghost", env=env)
    assert code == 1 and "no site named" in err
    code, _, err = run_cli("process", "load", str(tmp_path / "missing.toml"), "--site", "crm", env=env)
    assert code == 1 and "cannot read" in err


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site) -> Any:
    processes.load(client, processes.parse(EXAMPLE.read_text(), site.name), actor="test")
    return await aiohttp_client(create_app(settings))


async def test_config_endpoint_serves_the_steps_with_etag_and_cors(api: Any, site: sites.Site) -> None:
    response = await api.get(f"/v1/config/{site.key}", headers={"Origin": "https://crm.example.com"})
    assert response.status == 200
    config = await response.json()
    assert config["site"] == site.key and config["salt"] == site.salt and config["version"] == 1
    assert config["require_identity"] is False
    assert (config["idle_ms"], config["checkpoint_ms"], config["session_timeout_ms"]) == (30000, 15000, 1800000)
    first = {"key": "identification", "patterns": ["/clients/{customer}", "/clients/{customer}/identification"]}
    assert config["steps"][0] == first
    assert "secret" not in json.dumps(config) and site.secret not in json.dumps(config)
    assert response.headers["Access-Control-Allow-Origin"] == "https://crm.example.com"
    assert "max-age" in response.headers["Cache-Control"]
    etag = response.headers["ETag"]
    cached = await api.get(f"/v1/config/{site.key}", headers={"If-None-Match": etag})
    assert cached.status == 304


async def test_config_for_another_origin_has_no_cors_header(api: Any, site: sites.Site) -> None:
    response = await api.get(f"/v1/config/{site.key}", headers={"Origin": "https://evil.example.org"})
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_config_follows_a_new_version(api: Any, site: sites.Site, client: storage.Client) -> None:
    before = await api.get(f"/v1/config/{site.key}")
    edited = EXAMPLE.read_text().replace('"/clients/{customer}/payment"', '"/clients/{customer}/pay"')
    processes.load(client, processes.parse(edited, site.name), actor="test")
    await api.server.app[keys.SITES].refresh()
    after = await api.get(f"/v1/config/{site.key}")
    assert (await after.json())["version"] == 2
    assert after.headers["ETag"] != before.headers["ETag"]


async def test_config_of_an_unknown_or_disabled_site_is_404(api: Any, site: sites.Site, client: storage.Client) -> None:
    assert (await api.get("/v1/config/pk_nope")).status == 404
    sites.set_enabled(client, site.name, False, actor="test")
    await api.server.app[keys.SITES].refresh()
    assert (await api.get(f"/v1/config/{site.key}")).status == 404


async def test_tracker_script_is_served_gzipped_small_and_cached(api: Any) -> None:
    response = await api.get("/tracker.js", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert response.status == 200
    body = await response.read()
    assert response.headers["Content-Encoding"] == "gzip"
    assert len(body) <= 2048
    assert gzip.decompress(body).startswith(b"!function")
    assert "javascript" in response.headers["Content-Type"]
    assert "max-age" in response.headers["Cache-Control"]
    again = await api.get("/tracker.js", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status == 304
