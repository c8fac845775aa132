"""The extension in Debian's Chromium on a CRM page with no snippet: what the collector stores is what the
tracker measured, only on the configured origin, for the manager the configuration names.

Each test plays a manager in the fake CRM with Playwright's paused fake clock (tests/browser/helpers.Clock):
the tracker the extension injects runs in the page's main world, so the clock drives it as it drives the
snippet's.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from collector.identity import sign
from dashboards.pages.extension import extension_id
from tests.browser.helpers import Clock, SiteKeys, tracker_ready
from tests.browser.servers import CRM_DIR
from tests.browser.test_discovery import config_of, wait_for
from tests.browser.test_tracker import assert_times, by_step, finals, set_hidden, work
from tests.browser_extension.conftest import PASSWORD, REPO, SIGNIN_MANAGER, Browser, PlainCrm, Stepwatch, launch

STEPS = ["identification", "needs", "products", "offer", "contract", "payment", "closing"]
NOTES = "Client Ivan Petrov, +7 916 555-01-02, wants a discount"  # typed into the CRM's offer page
IDLE_MS = 30_000  # sales.toml runs on the collector's defaults
POLICY_DIR = Path("/etc/chromium/policies/managed")


def config_for(stepwatch: Stepwatch, crm: PlainCrm, identity: dict[str, str], site: str = "crm") -> dict[str, Any]:
    return {"collector": stepwatch.collector.proxy.url, "site": stepwatch.collector.sites[site].key,
            "origins": [crm.url], "identity": identity, "stepwatch": stepwatch.url,
            "titles": {s: s.title() for s in STEPS}}


def open_crm(page: Any, url: str) -> Clock:
    # Keyboard input goes to the focused page: the options page the test configured through was last.
    page.bring_to_front()
    clock = Clock(page)
    page.goto(url)
    tracker_ready(page)
    return clock


def next_page(page: Any) -> None:
    page.click("#next")
    tracker_ready(page)


def tab_id(browser: Browser, url: str) -> int:
    """The browser's id of the tab showing `url` (the extension may see the URLs of its allowed origins)."""
    return int(browser.worker.evaluate("url => chrome.tabs.query({url}).then(tabs => tabs[0].id)", url))


def popup(browser: Browser, page: Any) -> dict[str, str]:
    """The popup for `page`'s tab, opened as a page; what it says."""
    shown = browser.extension_page(f"popup.html?tab={tab_id(browser, page.url)}")
    try:
        shown.wait_for_selector("#my-figures")
        return shown.evaluate("""() => Object.fromEntries(
            ['badge', 'step', 'state', 'who', 'discovery', 'my-figures', 'scope']
            .map(id => [id, document.getElementById(id)]).filter(([, e]) => e)
            .map(([id, e]) => [id, id == 'my-figures' ? e.href : (e.className + '|' + e.textContent)]))""")
    finally:
        shown.close()


# ---------------------------------------------------------------------------------------------
# Time accounting, on a page with no snippet


def test_the_stub_is_told_from_the_tracker_before_anything_is_queued(browser, crm, stepwatch, page, manager):
    """Until the tracker has its config, `stepwatch` is the queueing stub, with its queue, even when
    nothing was queued yet (no identity shows): what tracker_ready waits on. A walk timed on a page
    whose tracker had not started yet lost its first seconds to no visit."""
    state = browser.configure(config_for(stepwatch, crm, {"variable": "window.crm.nobody"}))  # never set
    assert state["source"] == "link" and state["allowed"] == [crm.url]
    held: list[Any] = []
    page.route("**/v1/config/**", lambda route: held.append(route))  # the tracker's config, answered when the test says
    page.bring_to_front()
    for _ in range(3):  # (the extension may still be registering its script for the new configuration)
        page.goto(crm.url + "/clients/C-1002/identification")
        deadline = time.monotonic() + 5
        while not held and time.monotonic() < deadline:
            page.wait_for_timeout(25)
        if held:
            break
    assert held, "the tracker never asked for its config"
    assert page.evaluate("typeof stepwatch == 'function' && Array.isArray(stepwatch.q) && stepwatch.q.length == 0")
    with pytest.raises(AssertionError, match="the tracker did not start"):
        tracker_ready(page, timeout=0.5)
    held[0].continue_()
    tracker_ready(page)
    assert page.evaluate("!('q' in stepwatch)")
    # The CRM names its manager, and the page is left: its visit is this test's, not a later page's manager's.
    page.evaluate("manager => { window.crm = {nobody: manager} }", manager)
    page.wait_for_timeout(1500)  # (the extension reads the variable every second)
    page.goto(crm.url + "/")
    stepwatch.collector.wait_for_visits(manager, finals("identification"))
    # Beaconed events stay queued until a later page's send is confirmed, and go out as whoever that
    # page names (docs/tracker.md, Delivery): the next test's manager must not get this one's visit.
    page.evaluate("localStorage.clear()")


def test_scripted_walk_stores_active_idle_and_hidden_time_per_step(browser, crm, stepwatch, page, manager):
    state = browser.configure(config_for(stepwatch, crm, {"element": "#crm-user"}))
    assert state["source"] == "link" and state["allowed"] == [crm.url]
    crm.state.manager = manager
    clock = open_crm(page, crm.url + "/clients/C-1001/identification")
    assert page.evaluate("document.querySelectorAll('script').length") == 0  # the CRM's page has no script at all
    # what carried the site key to the tracker is gone, and document.currentScript is the browser's again
    assert page.evaluate("Object.getOwnPropertyDescriptor(document, 'currentScript') === undefined")
    work(page, clock, 20_000)  # identification: 20 s busy
    next_page(page)
    clock.run(70_000)  # needs: nobody touches anything for 70 s
    next_page(page)
    work(page, clock, 10_000)  # products: 10 s busy, 20 s in another tab, 5 s busy
    set_hidden(page, True)
    clock.run(20_000)
    set_hidden(page, False)
    work(page, clock, 5_000)
    next_page(page)
    page.click("#notes")  # offer: what the manager types is never read (at the visit's first moment:
    page.keyboard.type(NOTES)  # the paused clock makes it no time)
    assert page.input_value("#notes") == NOTES
    work(page, clock, 40_000, every=10_000)  # typing now and then for 40 s, then 45 s idle
    clock.run(45_000)
    next_page(page)
    # The tracker reports a visit once its session is worked out (the customer's hash, a promise):
    # give it that moment before leaving, as any person takes, or the visit of 0 ms is not reported.
    page.wait_for_timeout(300)
    page.goto(crm.url + "/")  # leaves the CRM's pages: the contract visit ends at once
    clock.settle()

    visits = stepwatch.collector.wait_for_visits(manager, finals(*STEPS[:5]))
    steps = by_step(visits)
    assert_times(steps["identification"], active=20_000)
    assert_times(steps["needs"], active=IDLE_MS, idle=70_000 - IDLE_MS)
    assert_times(steps["products"], active=15_000, hidden=20_000)
    assert_times(steps["offer"], active=40_000 + IDLE_MS, idle=45_000 - IDLE_MS)
    assert_times(steps["contract"], active=0)
    assert all(v["path"] == f"/clients/:customer/{v['step']}" for v in visits)
    assert all(v["manager"] == manager for v in visits)
    # the extension's tracker talks to the collector's extension base only (its config never names
    # the discovery module, so the page imports nothing from the collector); content.js reads the
    # site's own config, to know whether step discovery is on
    asked = [r for r in stepwatch.collector.proxy.requests if " /v1/" in r]
    assert "POST /v1/extension/v1/events" in asked, asked
    assert all(r.split()[1].startswith(("/v1/extension/v1/", "/v1/config/")) for r in asked), asked
    assert not [r for r in stepwatch.collector.proxy.requests if "/discovery.js" in r]
    # no page content: neither what was typed nor the page's title or text
    sent = [b.body for b in stepwatch.collector.proxy.batches if manager in b.body]
    assert sent and not [b for b in sent if NOTES in b or "Fake CRM" in b or "Prepare the offer" in b]


def test_a_page_of_another_origin_sends_nothing(browser, crm, stepwatch, page, manager):
    browser.configure(config_for(stepwatch, crm, {"element": "#crm-user"}))
    registered = browser.worker.evaluate("chrome.scripting.getRegisteredContentScripts()")
    assert [s["matches"] for s in registered] == [[crm.url + "/*"]]  # the content script runs nowhere else
    # the host permissions it holds: the CRM's origin, and stepwatch's for signing in; nothing wider
    granted = browser.worker.evaluate("chrome.permissions.getAll()")
    assert sorted(granted["origins"]) == sorted([crm.url + "/*", stepwatch.url + "/*"]), granted
    # and were a page elsewhere to ask the service worker, it would get nothing (the second lock)
    for origin, frame in ((crm.other_origin, 0), (crm.url, 3)):
        sender = {"tab": {"id": 1}, "origin": origin, "frameId": frame}
        for kind in ("config", "inject", "identity"):
            assert browser.worker.evaluate("([m, s]) => answer(m, s)", [{"type": kind}, sender]) is None
    crm.state.manager = manager
    clock = Clock(page)
    page.goto(crm.other_origin + "/clients/C-1002/offer")  # the same CRM page at http://localhost:port
    page.wait_for_timeout(1500)  # (on the configured origin the tracker starts well within this)
    work(page, clock, 20_000)
    clock.settle()
    assert page.evaluate("typeof stepwatch") == "undefined"
    assert page.evaluate("document.querySelector('[data-stepwatch-extension]')") is None
    page.goto(crm.other_origin + "/")
    clock.settle(1.0)
    assert not [b for b in stepwatch.collector.proxy.batches if manager in b.body or "C-1002" in b.body]
    assert stepwatch.collector.visits(manager) == []


# ---------------------------------------------------------------------------------------------
# Step discovery on the pages the extension measures


def test_while_discovery_is_on_an_unmatched_page_is_counted_by_its_cleaned_path_only(playwright, extension_dir, crm,
                                                                                      stepwatch, manager, tmp_path):
    collector = stepwatch.collector
    assert collector.cli is not None
    shown = json.loads(collector.cli("sites", "add", "finder", "--origin", crm.url, "--json"))
    collector.sites["finder"] = SiteKeys(shown["name"], shown["key"], shown["secret"])
    collector.cli("process", "load", str(CRM_DIR / "sales.toml"), "--site", "finder")
    collector.cli("process", "discovery", "finder", "--on", "--days", "2", "--reason", "extension test")
    wait_for(lambda: "d" in config_of(collector, shown["key"]), "discovery in the config (refreshed every 5 s)")
    # A browser of its own: the site's config is cached for 5 minutes, and other tests' pages read them.
    browser = launch(playwright, extension_dir, tmp_path / "profile")
    crm.state.manager = manager
    report_page = crm.url + "/reports/20240517?customer=Ivan"

    def visit_a_report(site: str) -> dict[str, str]:
        browser.configure(config_for(stepwatch, crm, {"element": "#crm-user"}, site=site))
        key = collector.sites[site].key
        page = browser.context.new_page()
        page.goto(report_page)
        tracker_ready(page)
        wait_for(lambda: f"GET /v1/config/{key}" in collector.proxy.requests, "content.js reading the config")
        page.wait_for_timeout(500)  # (the config's answer, then the first look at the page)
        shown = popup(browser, page)
        page.goto(crm.url + "/clients/C-8001/offer")  # a step: the report page's count goes on pagehide
        tracker_ready(page)
        page.close()
        return shown

    try:
        off = visit_a_report("crm")  # discovery is off for this site: nothing is counted
        assert off["step"].endswith("|This page is not a step") and "discovery" not in off
        on = visit_a_report("finder")
        # the popup tells the person what is counted on this page, and what is not
        assert on["discovery"].endswith("|Step discovery is on: this page's address is counted without its ids, "
                                        "and nothing else — not your name, not your time.")
        report = wait_for(lambda: [r for r in collector.proxy.reports if shown["key"] in r], "a discovery report")
    finally:
        browser.context.close()
        collector.cli("process", "discovery", "finder", "--off")
    assert [json.loads(r) for r in report] == [{"site": shown["key"], "counts": {"/reports/:id": 1}}]
    assert not [r for r in collector.proxy.reports if collector.sites["crm"].key in r]
    assert not [r for r in collector.proxy.requests if "/discovery.js" in r]  # no code loaded from the collector
    stored = ("SELECT pattern, toUInt32(sum(views)) AS views FROM discovered_paths WHERE site = 'finder' "
              "GROUP BY pattern")
    assert wait_for(lambda: stepwatch.sql(stored), "the stored count") == [{"pattern": "/reports/:id", "views": 1}]


# ---------------------------------------------------------------------------------------------
# Who is measured


def test_identity_by_a_javascript_value_of_the_page(browser, crm, stepwatch, page, manager):
    browser.configure(config_for(stepwatch, crm, {"variable": "window.crm.user.id"}))
    crm.state.manager, crm.state.variable = None, manager
    clock = open_crm(page, crm.url + "/clients/C-2001/offer")
    work(page, clock, 6_000)
    page.goto(crm.url + "/")
    clock.settle()
    visits = stepwatch.collector.wait_for_visits(manager, finals("offer"))
    assert visits[0]["active_ms"] == 6_000


def test_without_an_identity_nothing_is_sent(browser, crm, stepwatch, page, manager):
    browser.configure(config_for(stepwatch, crm, {"element": "#crm-user"}))
    crm.state.manager = None  # the page names nobody
    clock = open_crm(page, crm.url + "/clients/C-2002/offer")
    work(page, clock, 20_000)
    clock.settle()
    assert not [b for b in stepwatch.collector.proxy.batches if "C-2002" in b.body]


def sign_in(browser: Browser, stepwatch: Stepwatch, name: str) -> None:
    browser.context.clear_cookies()
    login = browser.context.new_page()
    login.goto(stepwatch.url + "/login")
    login.fill("input[name=name]", name)
    login.fill("input[name=password]", PASSWORD)
    login.click("button[type=submit]")
    login.wait_for_load_state()
    login.close()


def sign_out(browser: Browser, stepwatch: Stepwatch) -> None:
    browser.context.clear_cookies()
    browser.worker.evaluate("chrome.storage.local.remove('identity')")


def test_identity_by_signing_in_to_stepwatch(browser, crm, stepwatch, page):
    sign_out(browser, stepwatch)
    browser.configure(config_for(stepwatch, crm, {"signin": stepwatch.url}, site="signed"))
    crm.state.manager = "someone-the-page-names"  # not read: the identity comes from stepwatch
    clock = open_crm(page, crm.url + "/clients/C-3001/offer")
    shown = popup(browser, page)
    assert "Sign in to stepwatch so that this time is counted as yours" in shown["who"]
    work(page, clock, 10_000)
    clock.settle()
    assert not [b for b in stepwatch.collector.proxy.batches if "C-3001" in b.body]  # nothing before signing in

    sign_in(browser, stepwatch, "mia")
    before = len(stepwatch.collector.visits(SIGNIN_MANAGER))
    clock = open_crm(page, crm.url + "/clients/C-3002/needs")
    work(page, clock, 7_000)
    page.goto(crm.url + "/")
    clock.settle()
    visits = stepwatch.collector.wait_for_visits(SIGNIN_MANAGER, lambda vs: len(vs) > before and vs[-1]["final"])
    assert visits[-1]["step"] == "needs" and visits[-1]["active_ms"] == 7_000
    batches = [b for b in stepwatch.collector.proxy.batches if SIGNIN_MANAGER in b.body]
    assert batches and all(b.status == 200 and json.loads(b.body)["identity"] for b in batches)


def test_a_token_due_for_renewal_is_renewed(browser, crm, stepwatch):
    browser.configure(config_for(stepwatch, crm, {"signin": stepwatch.url}, site="signed"))
    sign_in(browser, stepwatch, "mia")
    first = browser.worker.evaluate("ready.then(r => identity(r.config, true))")
    assert first["manager"] == SIGNIN_MANAGER and first["expires_at"] > time.time() + 3600
    alarm = browser.worker.evaluate("chrome.alarms.get('stepwatch-renew-identity')")
    assert abs(alarm["scheduledTime"] / 1000 - first["renew_after"]) < 5  # renewal is scheduled before expiry
    # as if renew_after had passed: the next ask gets a new token, not the stored one
    time.sleep(1.1)  # (expiry is in whole seconds)
    browser.worker.evaluate("t => chrome.storage.local.set({identity: {...t, renew_after: 0}})", first)
    renewed = browser.worker.evaluate("ready.then(r => identity(r.config, false))")
    assert renewed["expires_at"] > first["expires_at"] and renewed["token"] != first["token"]


def start_with_a_short_lived_token(browser: Browser, stepwatch: Stepwatch, renew_in: int,
                                   expires_in: int) -> dict[str, Any]:
    """Store, as the service worker's, a token due for renewal and expiring within seconds: stepwatch's own
    (its tokens live 12 hours) signed again with the site's secret for a short life, as if the page had
    been open for most of a day. The token as stored."""
    issued = browser.worker.evaluate("ready.then(r => identity(r.config, true))")
    expires = int(time.time()) + expires_in
    short = {**issued, "token": sign(stepwatch.collector.sites["signed"].secret, SIGNIN_MANAGER, expires),
             "expires_at": expires, "renew_after": expires - expires_in + renew_in}
    browser.worker.evaluate("t => chrome.storage.local.set({identity: t})", short)
    return dict(short)


def signed_in_on_needs(browser: Browser, crm: PlainCrm, stepwatch: Stepwatch, page: Any, client: str, *, renew_in: int,
                      expires_in: int, work_ms: int) -> tuple[dict[str, Any], float, Any]:
    """Mia signed in from the extension with a short-lived token (start_with_a_short_lived_token), a CRM
    page opened on the client's needs step and worked on: (the token, when the page opened, its clock)."""
    browser.configure(config_for(stepwatch, crm, {"signin": stepwatch.url}, site="signed"))
    sign_in(browser, stepwatch, "mia")
    short = start_with_a_short_lived_token(browser, stepwatch, renew_in=renew_in, expires_in=expires_in)
    opened = time.time()
    clock = open_crm(page, crm.url + f"/clients/{client}/needs")
    work(page, clock, work_ms)
    clock.settle()
    return short, opened, clock


def test_an_open_page_takes_the_renewed_token_and_what_it_sends_after_the_old_one_expired_is_stored(
        browser, crm, stepwatch, page):
    short, opened, clock = signed_in_on_needs(browser, crm, stepwatch, page, "C-3101", renew_in=5, expires_in=15,
                                              work_ms=6_000)
    first = [b for b in stepwatch.collector.proxy.batches if b.at > opened and SIGNIN_MANAGER in b.body]
    assert first and {json.loads(b.body)["identity"] for b in first} == {short["token"]}

    page.wait_for_timeout((short["expires_at"] + 1 - time.time()) * 1000)  # the page stays open past its expiry
    work(page, clock, 4_000)  # still on needs, then two more steps in the same page (the CRM's own routing)
    page.evaluate("history.pushState({}, '', '/clients/C-3101/products')")
    work(page, clock, 5_000)
    page.evaluate("history.pushState({}, '', '/clients/C-3101/offer')")
    work(page, clock, 7_000)
    page.wait_for_timeout(300)  # (the visit's session worked out, as in the scripted walk)
    page.goto(crm.url + "/")
    clock.settle()

    renewed = browser.worker.evaluate("chrome.storage.local.get('identity')")["identity"]
    assert renewed["expires_at"] > short["expires_at"] + 3600
    batches = [b for b in stepwatch.collector.proxy.batches if b.at > opened and SIGNIN_MANAGER in b.body]
    assert [b.status for b in batches if b.status != 200] == [], stepwatch.collector.proxy_log()
    late = [b for b in batches if b.at > short["expires_at"]]
    assert late and {json.loads(b.body)["identity"] for b in late} == {renewed["token"]}
    ours = {e["visit_id"] for b in batches for e in b.events if e["type"] == "visit"}
    visits = stepwatch.collector.wait_for_visits(
        SIGNIN_MANAGER, lambda vs: finals("needs", "products", "offer")([v for v in vs if v["visit_id"] in ours]))
    steps = by_step([v for v in visits if v["visit_id"] in ours and v["final"]])
    assert steps["products"]["active_ms"] == 5_000 and steps["offer"]["active_ms"] == 7_000
    assert all(v["manager"] == SIGNIN_MANAGER for v in steps.values())


def test_an_open_page_whose_token_expires_unrenewed_keeps_its_visits_until_the_manager_signs_in_again(
        browser, crm, stepwatch, page):
    short, opened, clock = signed_in_on_needs(browser, crm, stepwatch, page, "C-3201", renew_in=3, expires_in=10,
                                              work_ms=3_000)
    browser.context.clear_cookies()  # stepwatch's login ended: no renewal
    page.wait_for_timeout((short["expires_at"] + 6 - time.time()) * 1000)  # (the page looks every 5 s)
    work(page, clock, 4_000)
    page.evaluate("history.pushState({}, '', '/clients/C-3201/products')")
    work(page, clock, 5_000)
    page.wait_for_timeout(300)
    clock.settle()
    # nothing was sent with the expired token, to be refused: the visits wait in the page's queue
    assert not [b for b in stepwatch.collector.proxy.batches if b.at > short["expires_at"] and
                SIGNIN_MANAGER in b.body], stepwatch.collector.proxy_log()
    queued = json.loads(page.evaluate("key => localStorage[key]", stepwatch.collector.sites["signed"].key))["q"]
    assert {e.get("step") for e in queued} >= {"needs", "products"}, queued

    sign_in(browser, stepwatch, "mia")
    clock = open_crm(page, crm.url + "/clients/C-3201/offer")  # the next page gets a new token at once
    clock.settle()
    batches = [b for b in stepwatch.collector.proxy.batches if b.at > opened and SIGNIN_MANAGER in b.body]
    assert [b.status for b in batches if b.status != 200] == [], stepwatch.collector.proxy_log()
    ours = {e["visit_id"] for b in batches for e in b.events if e["type"] == "visit"}
    visits = stepwatch.collector.wait_for_visits(
        SIGNIN_MANAGER, lambda vs: finals("needs", "products")([v for v in vs if v["visit_id"] in ours]))
    steps = by_step([v for v in visits if v["visit_id"] in ours and v["final"]])
    assert steps["needs"]["active_ms"] == 3_000 + 2_100 + 4_000  # (2.1 s: the settle that sent the first batch)
    assert steps["products"]["active_ms"] >= 5_000
    assert all(v["manager"] == SIGNIN_MANAGER for v in steps.values())


def test_a_director_signed_in_gets_no_identity(browser, crm, stepwatch, page):
    sign_out(browser, stepwatch)
    browser.configure(config_for(stepwatch, crm, {"signin": stepwatch.url}, site="signed"))
    sign_in(browser, stepwatch, "dan")
    answer = browser.worker.evaluate("ready.then(r => identity(r.config, true))")
    assert answer == {"signedOut": True, "refused": True}


def test_a_forged_identity_is_refused_and_nothing_stored(browser, crm, stepwatch, page, manager):
    browser.configure(config_for(stepwatch, crm, {"signin": stepwatch.url}, site="signed"))
    sign_in(browser, stepwatch, "mia")
    clock = open_crm(page, crm.url + "/clients/C-4001/offer")
    # A script of the page claims another manager with the signed-in manager's token, then with a made-up one
    token = browser.worker.evaluate("ready.then(r => identity(r.config, false)).then(t => t.token)")
    page.evaluate("([who, token]) => stepwatch('identify', who, token)", [manager, token])
    work(page, clock, 20_000)
    for _ in range(3):
        clock.settle(0.2)
    page.evaluate("([who, token]) => stepwatch('identify', who, token)", [manager, "9999999999." + "a" * 64])
    work(page, clock, 20_000)
    for _ in range(3):
        clock.settle(0.2)
    batches = [b for b in stepwatch.collector.proxy.batches if manager in b.body]
    assert len(batches) >= 2 and all(b.status == 401 for b in batches), stepwatch.collector.proxy_log()
    assert stepwatch.collector.visits(manager) == []


# ---------------------------------------------------------------------------------------------
# The popup


def test_the_popup_says_what_is_measured_for_whom_and_links_to_my_figures(browser, crm, stepwatch, page, manager):
    browser.configure(config_for(stepwatch, crm, {"element": "#crm-user"}))
    crm.state.manager = manager
    open_crm(page, crm.url + "/clients/C-5001/offer")
    page.mouse.move(5, 5)
    shown = popup(browser, page)
    assert shown["badge"] == "badge on|Measuring"
    assert shown["step"].endswith("|Offer")  # the step's title, not its key
    assert shown["state"].startswith("state active|Active")
    assert shown["who"] == f"|Counted for {manager}"
    assert shown["my-figures"] == stepwatch.url + "/me"
    assert "127.0.0.1" in shown["scope"]

    other = browser.context.new_page()
    other.goto(crm.other_origin + "/clients/C-5001/offer")
    shown_elsewhere = browser.extension_page("popup.html?tab=999999")  # a tab with no content script
    shown_elsewhere.wait_for_selector("#my-figures")
    assert shown_elsewhere.text_content("#badge") == "Not measuring"
    shown_elsewhere.close()
    other.close()


# ---------------------------------------------------------------------------------------------
# Configured by enterprise policy


def can_write_policy() -> bool:
    """Whether Chromium's policy folder can be made and written here (root, in a test container)."""
    existing = next(p for p in (POLICY_DIR, *POLICY_DIR.parents) if p.exists())
    return os.access(existing, os.W_OK)


@pytest.mark.skipif(not can_write_policy(), reason="cannot write Chromium's policy folder (needs root): "
                    "tests/browser_extension/test_config.py covers the managed-storage path under node")
def test_a_policy_configures_the_extension_and_wins_over_a_pasted_link(playwright, extension_dir, crm, stepwatch,
                                                                        manager, tmp_path):
    assert extension_id() == "obddabkphdgkajckdcodfmgipglegech"  # from the manifest key: the same everywhere
    config = config_for(stepwatch, crm, {"element": "#crm-user"})
    made = [p for p in (*reversed(POLICY_DIR.parents[:3]), POLICY_DIR) if not p.exists()]  # to remove after
    POLICY_DIR.mkdir(parents=True, exist_ok=True)
    policy = POLICY_DIR / f"stepwatch-test-{os.getpid()}.json"
    policy.write_text(json.dumps({"3rdparty": {"extensions": {extension_id(): config}}}))
    try:
        browser = launch(playwright, extension_dir, tmp_path / "profile")
        try:
            assert browser.id == extension_id()  # the id the /extension page writes the policy for
            deadline = time.monotonic() + 10
            while browser.state()["source"] != "policy" and time.monotonic() < deadline:
                time.sleep(0.2)
            assert browser.state()["config"]["site"] == config["site"]
            # a link pasted afterwards does not replace what the administrator set
            options = browser.extension_page("options.html")
            assert options.is_disabled("#link") and "policy" in options.text_content("#source")
            options.close()
            other = {**config, "site": stepwatch.collector.sites["signed"].key}
            browser.worker.evaluate("c => chrome.storage.local.set({pasted: c})", other)
            browser.worker.evaluate("refresh()")
            state = browser.state()
            assert state["source"] == "policy" and state["config"]["site"] == config["site"]

            crm.state.manager = manager
            page = browser.context.new_page()
            clock = open_crm(page, crm.url + "/clients/C-6001/offer")
            work(page, clock, 4_000)
            page.goto(crm.url + "/")
            clock.settle()
            visits = stepwatch.collector.wait_for_visits(manager, finals("offer"))
            assert visits[0]["active_ms"] == 4_000
        finally:
            browser.context.close()
    finally:
        policy.unlink()
        for folder in reversed(made):
            folder.rmdir()  # (only what the test made, and only if it is empty again)


# ---------------------------------------------------------------------------------------------
# The popup and the settings page in each language, photographed


@pytest.mark.parametrize("language", ["en", "ru"])
def test_the_popup_and_settings_speak_the_browser_s_language(playwright, extension_dir, crm, stepwatch, manager,
                                                             language, tmp_path):
    browser = launch(playwright, extension_dir, tmp_path / "profile", (f"--lang={language}",),
                     env={"LANGUAGE": language, "LANG": f"{language}_{language.upper()}.UTF-8"})
    artifacts = Path(os.environ.get("STEPWATCH_ARTIFACTS", REPO / "test-artifacts")) / "screenshots"
    artifacts.mkdir(parents=True, exist_ok=True)
    try:
        config = config_for(stepwatch, crm, {"element": "#crm-user"})
        config["titles"]["offer"] = {"en": "Offer", "ru": "Предложение"}[language]
        browser.configure(config)
        crm.state.manager = manager
        page = browser.context.new_page()
        clock = open_crm(page, crm.url + "/clients/C-7001/offer")
        work(page, clock, 3_000)
        page.wait_for_timeout(2_500)  # the popup's own counter runs on real time
        shown = browser.extension_page(f"popup.html?tab={tab_id(browser, page.url)}")
        shown.set_viewport_size({"width": 390, "height": 520})
        shown.wait_for_selector("#my-figures")
        text = shown.inner_text("body")
        words = {"en": ["Measuring", "Step on screen", "Offer", "Active", "My figures", "Counted for"],
                 "ru": ["Идёт замер", "Шаг на экране", "Предложение", "Активно", "Мои показатели", "Засчитывается"]}
        assert all(w in text for w in words[language]), text
        assert re.search(r"\d[\u00a0 ]" + {"en": "s", "ru": "с"}[language] + r"\b", text), text  # units in its words
        shown.screenshot(path=str(artifacts / f"extension-popup-{language}.png"))
        shown.close()
        options = browser.extension_page("options.html")
        options.set_viewport_size({"width": 390, "height": 900})
        options.wait_for_selector("#source")
        source = {"en": "Set from a setup link", "ru": "Задано ссылкой настройки"}[language]
        assert source in options.inner_text("#now")
        options.screenshot(path=str(artifacts / f"extension-options-{language}.png"), full_page=True)
        options.close()
    finally:
        browser.context.close()
