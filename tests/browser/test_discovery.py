"""Step discovery in a real browser: with a site's discovery on, the tracker imports the discovery
module from the collector, which reports the cleaned path of a page no step matches and a count, and
nothing else; the collector stores the count per pattern and day. With discovery off nothing loads."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.browser.helpers import SiteKeys, tracker_ready
from tests.browser.servers import CRM_DIR


def wait_for(condition: Any, what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def config_of(collector: Any, key: str) -> dict[str, Any]:
    """The site's tracker config; {} until the collector's next refresh knows the site (404)."""
    try:
        with urllib.request.urlopen(f"{collector.proxy.url}/v1/config/{key}") as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError:
        return {}


def test_an_unmatched_page_is_counted_by_its_cleaned_path_only(browser: Any, crm_as: Any, collector: Any) -> None:
    if collector.cli is None:
        pytest.skip("needs the real collector (not STEPWATCH_TEST_COLLECTOR=stub)")
    crm = crm_as()
    shown = json.loads(collector.cli("sites", "add", "finder", "--origin", crm.url, "--json"))
    collector.sites["finder"] = SiteKeys(shown["name"], shown["key"], shown["secret"])
    collector.cli("process", "load", str(CRM_DIR / "sales.toml"), "--site", "finder")
    crm_as(site="finder")
    key = shown["key"]
    wait_for(lambda: "steps" in config_of(collector, key), "the site's config")

    # Off: the tracker does not load the module. (In a browser of its own: the config is cached for
    # 5 minutes, so a browser that read it before discovery was switched on starts counting that late.)
    before = browser.new_context()
    try:
        off = before.new_page()
        off.goto(crm.url + "/app/reports/20240517")
        tracker_ready(off)
        off.wait_for_timeout(300)
    finally:
        before.close()
    assert not any("/discovery.js" in r for r in collector.proxy.requests)

    collector.cli("process", "discovery", "finder", "--on", "--days", "2", "--reason", "browser test")
    wait_for(lambda: "d" in config_of(collector, key), "discovery in the config (refreshed every 5 s)")
    # a browser of its own again: no queue of earlier tests' events to beacon beside the report
    after = browser.new_context()
    try:
        on = after.new_page()
        on.goto(crm.url + "/app/reports/20240517?customer=Ivan#notes")
        tracker_ready(on)

        # the module counts the page once its own fetch of the config is answered (from the browser's
        # cache, so the page's resource timings say when, not the collector's requests)
        wait_for(lambda: on.evaluate("""() => {
            const seen = performance.getEntriesByType('resource');
            const module = seen.find(e => e.name.includes('/discovery.js'));
            return !!module && seen.some(e => e.name.includes('/v1/config/') && e.startTime > module.startTime
                                              && e.responseEnd > 0);
        }"""), "the module and its config")
        on.wait_for_timeout(300)
        on.goto(crm.url + "/clients/4711/needs")  # a step: counted by nobody; the page before reports on pagehide
        report = wait_for(lambda: collector.proxy.reports, "a discovery report", timeout=60)[0]  # a loaded machine
    finally:
        after.close()
    assert json.loads(report) == {"site": key, "counts": {"/app/reports/:id": 1}}

    def stored() -> list[dict[str, Any]]:
        return list(json.loads(collector.cli(
            "sql", "SELECT pattern, toUInt32(sum(views)) AS views FROM discovered_paths WHERE site = 'finder' "
                   "GROUP BY pattern", "--format", "json")))

    assert wait_for(stored, "the stored count") == [{"pattern": "/app/reports/:id", "views": 1}]
