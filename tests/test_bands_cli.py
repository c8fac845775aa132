"""Bands from the command line: set (consistency enforced, audited), list, suggest and apply."""

from __future__ import annotations

import json

import pytest

from stepwatch.cli import CliError, parse_duration
from tests.helpers import run_cli


@pytest.mark.parametrize(("text", "ms"), [("90", 90_000), ("90s", 90_000), ("4m", 240_000), ("4m30s", 270_000),
                                          ("1500ms", 1_500), ("1h", 3_600_000), ("2.5", 2_500),
                                          ("4 min", 240_000), ("2,5", 2_500), ("1m 30s", 90_000)])
def test_durations(text: str, ms: int) -> None:
    """The CLI reads durations as the band editor does (kernel.durations): one reader for both."""
    from dashboards.pages.step import parse_duration as editor_reads

    assert parse_duration(text) == ms == editor_reads(text, "min")


@pytest.mark.parametrize("text", ["", "4 minutes", "m4", "-3", "4x"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(CliError):
        parse_duration(text)


# One xdist worker runs this module: its module-scoped data is built once.
pytestmark = pytest.mark.xdist_group("test_bands_cli")


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = {"STEPWATCH_DATA_DIR": str(tmp_path_factory.mktemp("bands") / "data")}
    code, _, err = run_cli("demo", "--no-serve", "--managers", "12", "--days", "28", env=env)
    assert code == 0, err
    return env


@pytest.mark.slow
def test_set_checks_consistency_and_audits(demo_env: dict[str, str]) -> None:
    env = demo_env
    code, _, err = run_cli("bands", "set", "demo", "offer", "--min", "5m", "--reference", "4m", "--max", "6m",
                           "--reason", "x", env=env)
    assert code == 1 and "min must be at most reference" in err
    code, _, err = run_cli("bands", "set", "demo", "offer", "--min", "0", "--reference", "4m", "--max", "6m",
                           "--reason", "x", env=env)
    assert code == 1 and "more than 0" in err
    code, _, err = run_cli("bands", "set", "demo", "nope", "--min", "1", "--reference", "2", "--max", "3",
                           "--reason", "x", env=env)
    assert code == 1 and "no step 'nope'" in err
    code, _, err = run_cli("bands", "set", "demo", "offer", "--min", "1m", "--reference", "4m", "--max", "6m",
                           "--reason", " ", env=env)
    assert code == 1 and "reason" in err
    code, out, err = run_cli("bands", "set", "demo", "offer", "--min", "1m", "--reference", "4m", "--max", "6m",
                             "--reason", "agreed with sales", "--from", "2026-01-05", env=env)
    assert code == 0, err
    code, out, err = run_cli("bands", "set", "demo", "offer", "--min", "1m", "--reference", "3m", "--max", "5m",
                             "--reason", "north is faster", "--team", "north", env=env)
    assert code == 0, err
    code, out, _ = run_cli("bands", "list", "demo", "--step", "offer", "--json", env=env)
    listed = [b for b in json.loads(out) if b["set_by"].startswith("cli:")]  # the demo set its own first
    assert [(b["team"], b["reference_ms"], b["reason"]) for b in listed] == [
        ("", 240_000, "agreed with sales"), ("north", 180_000, "north is faster")]
    code, out, _ = run_cli("sql", "SELECT actor, object, reason, details FROM audit_log "
                           "WHERE action = 'band.set' AND actor LIKE 'cli:%' ORDER BY at", "--format", "json", env=env)
    audited = json.loads(out)
    assert audited[0]["actor"].startswith("cli:") and audited[0]["object"] == "demo/offer"
    assert json.loads(audited[1]["details"])["after"]["reference_ms"] == 180_000


@pytest.mark.slow
def test_a_band_for_one_kind_of_client(demo_env: dict[str, str]) -> None:
    """--stratum sets a band for the sessions of one declared attribute value; anything else is refused
    naming the field, before anything is written; the list shows each band's kind."""
    env = demo_env
    band = ("--min", "2m", "--reference", "6m", "--max", "9m", "--reason", "VIP clients need longer")
    for stratum, said in [("segment=gold", "stratum: 'gold' is not a declared value of segment (declared: vip, "
                                           "regular)"),
                          ("region=north", "stratum: 'region' is not a session attribute the process declares "
                                           "(declared: channel, segment)"),
                          ("vip", "stratum: write it as attribute=value")]:
        code, _, err = run_cli("bands", "set", "demo", "products", *band, "--stratum", stratum, env=env)
        assert code == 1 and said in err, err
    code, out, err = run_cli("bands", "set", "demo", "products", *band, "--stratum", "segment=vip", "--team", "north",
                             "--from", "2026-01-05", env=env)
    assert code == 0, err
    assert out == ("band of products for team north, segment=vip clients from 2026-01-05: "
                   "min 2m00s, reference 6m00s, max 9m00s\n")
    code, out, _ = run_cli("bands", "list", "demo", "--step", "products", "--json", env=env)
    listed = [(b["team"], b["stratum"], b["reference_ms"]) for b in json.loads(out) if b["set_by"].startswith("cli:")]
    assert listed == [("north", "segment=vip", 360_000)]  # the refused ones left nothing behind
    code, out, _ = run_cli("bands", "list", "demo", "--step", "products", env=env)
    lines = out.splitlines()
    assert lines[0].split("\t")[:3] == ["step", "team", "clients"]
    assert any(line.startswith("products\tnorth\tsegment=vip\t2026-01-05\t2m00s\t6m00s\t9m00s") for line in lines)
    assert any(line.startswith("products\t(all)\t(all)\t") for line in lines)  # the demo's band for every kind
    code, out, _ = run_cli("sql", "SELECT details FROM audit_log WHERE action = 'band.set' AND object = "
                           "'demo/products/north'", "--format", "json", env=env)
    assert json.loads(json.loads(out)[0]["details"])["stratum"] == "segment=vip"


@pytest.mark.slow
def test_suggest_shows_a_table_then_applies(demo_env: dict[str, str]) -> None:
    code, out, err = run_cli("bands", "suggest", "demo", "--json", env=demo_env)
    assert code == 0, err
    suggested = {row["step"]: row for row in json.loads(out)["steps"]}
    offer = suggested["offer"]
    assert offer["min_ms"] < offer["reference_ms"] < offer["max_ms"]
    assert 150_000 < offer["reference_ms"] < 330_000  # the demo's offer step takes about 4 minutes
    code, out, _ = run_cli("bands", "suggest", "demo", env=demo_env)
    assert "offer" in out and "reference 95% CI" in out
    code, _, err = run_cli("bands", "suggest", "demo", "--apply", env=demo_env)
    assert code == 1 and "--reason" in err
    code, out, err = run_cli("bands", "suggest", "demo", "--apply", "--reason", "first bands", env=demo_env)
    assert code == 0 and "applied 7 bands" in out, err
