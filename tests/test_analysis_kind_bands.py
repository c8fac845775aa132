"""Bands per kind of client: stored with their kind, refused for a kind the process does not declare,
and read by the analysis as how long that kind should take, so a manager slow only on VIP clients is
judged against the VIP band rather than against a colleague's VIP sessions."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from analysis.bands import Band, BandVersion
from analysis.stats import Window
from analysis.strata import bands_of_strata
from kernel import band_versions, processes, sites, storage, teams
from kernel.errors import InvalidInput
from kernel.settings import Settings
from stepwatch import analysis_run
from tests.test_analysis_run import TODAY, visit
from tests.test_processes import EXAMPLE

DECLARED = EXAMPLE.read_text() + '\n[attributes]\nsegment = ["vip", "regular"]\nchannel = ["phone", "chat"]\n'
STEP_BAND = (100_000, 200_000, 400_000)  # every kind of client
VIP_BAND = (200_000, 480_000, 900_000)  # VIP clients should take 8 minutes, 2.4 times as long


def test_a_stratum_key_takes_the_band_of_its_first_declared_attribute_that_has_one() -> None:
    vip, phone = Band(1, 2, 3), Band(4, 5, 6)
    found = bands_of_strata(["vip|phone", "regular|phone", "vip|", "|chat", ""], ["segment", "channel"],
                            {"segment=vip": vip, "channel=phone": phone, "region=north": Band(7, 8, 9)})
    assert found == {"vip|phone": vip, "regular|phone": phone, "vip|": vip}
    assert bands_of_strata(["vip"], ["segment"], {}) == {}


def test_a_kind_band_of_the_team_comes_before_the_default_one() -> None:
    day = TODAY - timedelta(days=10)
    kinds = {"segment=vip": [BandVersion(day, None, Band(1, 5, 9)), BandVersion(day, "north", Band(1, 4, 9)),
                             BandVersion(TODAY + timedelta(days=1), "north", Band(1, 3, 9))]}  # not yet in force
    keys = np.array(["vip", "regular"], dtype=object)
    declared = {"segment": ("vip", "regular")}
    assert analysis_run.kind_bands_in_force(kinds, TODAY, "north", keys, declared) == {"vip": Band(1, 4, 9)}
    assert analysis_run.kind_bands_in_force(kinds, TODAY, "south", keys, declared) == {"vip": Band(1, 5, 9)}
    assert analysis_run.kind_bands_in_force({}, TODAY, "north", keys, declared) is None


def test_a_band_for_a_kind_is_stored_apart_and_refused_for_an_undeclared_kind(client: storage.Client,
                                                                            site: sites.Site) -> None:
    processes.load(client, processes.parse(EXAMPLE.read_text(), site.name), actor="test")
    day = TODAY - timedelta(days=3)
    with pytest.raises(InvalidInput, match="stratum: 'segment' is not a session attribute the process declares"):
        band_versions.add_version(client, site.name, "offer", "", *VIP_BAND, day, actor="t", reason="r",
                                  stratum="segment=vip")
    processes.load(client, processes.parse(DECLARED, site.name), actor="test")
    with pytest.raises(InvalidInput, match=r"stratum: 'gold' is not a declared value of segment \(declared: vip, "):
        band_versions.add_version(client, site.name, "offer", "", *VIP_BAND, day, actor="t", reason="r",
                                  stratum="segment=gold")
    with pytest.raises(InvalidInput, match="attribute=value"):
        band_versions.add_version(client, site.name, "offer", "", *VIP_BAND, day, actor="t", reason="r",
                                  stratum="vip")
    band_versions.add_version(client, site.name, "offer", "", *STEP_BAND, day, actor="t", reason="every kind")
    band_versions.add_version(client, site.name, "offer", "", *VIP_BAND, day, actor="t", reason="vip",
                              stratum=" segment=vip ")
    band_versions.add_version(client, site.name, "offer", "", 200_000, 500_000, 900_000, day, actor="t",
                              reason="vip again", stratum="segment=vip")
    # a reader that knows nothing of kinds sees the band for every kind only
    assert [v.reason for v in band_versions.versions(client, site.name, "offer")] == ["every kind"]
    assert [(v.reason, v.stratum) for v in band_versions.versions(client, site.name, "offer",
                                                                  stratum="segment=vip")] == [
        ("vip", "segment=vip"), ("vip again", "segment=vip")]
    assert len(band_versions.versions(client, site.name, stratum=None)) == 3
    entries = client.query("SELECT details FROM audit_log WHERE action = 'band.set' ORDER BY at").result_rows
    details = [json.loads(d) for d, in entries]
    assert "stratum" not in details[0] and details[1]["stratum"] == "segment=vip"
    # the VIP band's change is told against the VIP band before it, not the band for every kind
    assert details[1]["before"] is None
    assert details[2]["before"]["reference_ms"] == VIP_BAND[1] and details[2]["after"]["reference_ms"] == 500_000


def _vip_site(client: storage.Client, site: sites.Site, settings: Settings) -> None:
    """North on the offer step for 28 days: five managers who serve regular clients only (200 s), and two
    who serve 60% VIP clients: m-vip-ok in the VIP band's 480 s, m-vip-slow in 1,200 s; both 200 s on
    regular ones. Each session's segment is on its start event."""
    from collector.events import check_events, parse_batch

    teams.add_team(client, site.name, "north", actor="test")
    regular = [f"m-{i}" for i in range(5)]
    vip_time = {"m-vip-ok": 480_000, "m-vip-slow": 1_200_000}
    teams.assign(client, site.name, "north", [*regular, *vip_time], actor="test")
    processes.load(client, processes.parse(DECLARED, site.name), actor="test")
    band_versions.add_version(client, site.name, "offer", "", *STEP_BAND, TODAY - timedelta(days=60),
                              actor="test", reason="test")
    rng = np.random.default_rng(11)
    visits, starts = [], []
    for manager in [*regular, *vip_time]:
        for d in range(28):
            day = TODAY - timedelta(days=d)
            for k in range(3):
                vip = manager in vip_time and bool(rng.random() < 0.6)
                session = f"{manager}-{d}-{k}"
                typical = vip_time[manager] if vip else 200_000
                visits.append(visit(manager, session, "offer", day, round(typical * float(np.exp(rng.normal(0, 0.1))))))
                at = datetime(day.year, day.month, day.day, 9, tzinfo=UTC)
                starts.append([site.name, str(uuid.uuid4()), session, "start", manager, "c", "sales", at, "",
                               {"segment": "vip" if vip else "regular"}, "t"])
    checked = check_events(parse_batch(json.dumps({"site": "k", "events": visits}).encode()), site=site.name,
                           settings=settings)
    storage.insert_visits(client, b"\n".join(checked.visits))
    client.insert("session_events", starts, column_names=["site", "event_id", "session_id", "action", "manager",
                                                          "customer", "process", "at", "outcome", "attributes",
                                                          "tracker"])


def test_a_manager_slow_only_on_vip_clients_is_judged_against_the_vip_band(
        client: storage.Client, site: sites.Site, settings: Settings) -> None:
    _vip_site(client, site, settings)
    window = Window(TODAY - timedelta(days=13), TODAY)

    def rows() -> dict[str, dict]:
        run = analysis_run.run_site(client, site.name, settings, window)
        return {r["manager"]: r for r in analysis_run.stats_rows(client, run) if r["step"] == "offer"}

    # Without a VIP band each one's VIP factor comes from the other's VIP sessions: m-vip-ok's from the slow
    # colleague's (1,200 s against 200 s: 6), which makes their own in-band VIP work look too fast.
    before = rows()
    ok_vip = next(s for s in before["m-vip-ok"]["case_mix"]["strata"] if s["attributes"] == {"segment": "vip"})
    assert ok_vip["factor"] == pytest.approx(6, rel=0.15)
    assert before["m-vip-ok"]["status"] == "fast"

    band_versions.add_version(client, site.name, "offer", "", *VIP_BAND, TODAY - timedelta(days=60),
                              actor="test", reason="VIP clients take longer", stratum="segment=vip")
    after = rows()
    for manager in ("m-vip-ok", "m-vip-slow"):
        vip = next(s for s in after[manager]["case_mix"]["strata"] if s["attributes"] == {"segment": "vip"})
        assert vip["factor"] == pytest.approx(VIP_BAND[1] / STEP_BAND[1])  # the VIP band's, not the data's
    assert after["m-vip-ok"]["status"] == "ok"
    slow = after["m-vip-slow"]
    assert slow["status"] == "slow"  # 1,200 s against the VIP band's 480 s: 500 s in the step's terms
    assert slow["case_mix"]["adjusted_median_ms"] == pytest.approx(1_200_000 / 2.4, rel=0.1)
    # time lost counted against the band of each session's kind: VIP sessions above 480 s, not above 200 s
    assert 0 < slow["minutes_lost_per_week"] < slow["case_mix"]["minutes_above_reference_per_week"] / 2
    assert all(after[m]["status"] == "ok" for m in (f"m-{i}" for i in range(5)))

    # a kind the process stops declaring matches nothing: no session has another kind, nothing is adjusted
    processes.load(client, processes.parse(EXAMPLE.read_text() + '\n[attributes]\nchannel = ["phone"]\n',
                                           site.name), actor="test")
    assert rows()["m-vip-slow"]["case_mix"] is None
