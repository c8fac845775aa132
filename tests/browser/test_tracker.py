"""The tracker in a real browser against the collector: what ClickHouse stores is what the script did.

Each test plays a manager in the fake CRM (tests/fixtures/crm) with Playwright's paused fake
clock, so a stay of minutes takes milliseconds and its length is known exactly.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
from collections.abc import Callable
from typing import Any

from tests.browser.helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    Clock,
    Collector,
    expect_events,
    kill_browser,
    page_errors,
    tracker_ready,
)
from tests.browser.servers import sign

STEPS = ["identification", "needs", "products", "offer", "contract", "payment", "closing"]
IDLE_MS = 30_000  # sales.toml runs on the collector's defaults
TIMEOUT_MS = 30 * 60_000


def close_to(actual: int, expected: int) -> bool:
    """Stored time matches the script: within 1 % or 250 ms."""
    return abs(actual - expected) <= max(250, expected / 100)


def assert_times(visit: dict[str, Any], active: int, idle: int = 0, hidden: int = 0) -> None:
    got = (visit["active_ms"], visit["idle_ms"], visit["hidden_ms"])
    assert all(close_to(g, e) for g, e in zip(got, (active, idle, hidden), strict=True)), (
        f"{visit['step']}: stored active/idle/hidden {got}, script says {(active, idle, hidden)}"
    )


def by_step(visits: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    steps = [v["step"] for v in visits]
    assert len(steps) == len(set(steps)), f"a step was stored twice: {steps}"
    return {v["step"]: v for v in visits}


def finals(*steps: str) -> Any:
    """Condition for Collector.wait_for_visits: these steps stored with their final report."""
    return lambda visits: all(any(v["step"] == s and v["final"] for v in visits) for s in steps)


def set_hidden(page: Any, hidden: bool) -> None:
    """Switch the tab away or back. Headless Chromium keeps every page visible (bringing another
    page to the front changes nothing), so the page is told, as a browser would tell it."""
    page.evaluate(
        """hidden => {
            Object.defineProperty(document, 'hidden', {configurable: true, get: () => hidden})
            Object.defineProperty(document, 'visibilityState', {configurable: true,
                get: () => hidden ? 'hidden' : 'visible'})
            document.dispatchEvent(new Event('visibilitychange', {bubbles: true}))  // as the browser fires it
        }""",
        hidden,
    )


def work(page: Any, clock: Clock, ms: int, every: int = 5_000) -> None:
    """Busy for `ms`: input every `every` ms (mouse and keyboard in turn), the last one at the end."""
    done = 0
    while done < ms:
        step = min(every, ms - done)
        clock.run(step)
        done += step
        if done // every % 2:
            page.mouse.move(100 + done % 300, 200)
        else:
            page.keyboard.press("Shift")


def customer_hash(collector: Collector, site: str, customer: str) -> str:
    with urllib.request.urlopen(f"{collector.proxy.url}/v1/config/{collector.sites[site].key}") as response:
        salt = json.loads(response.read())["salt"]
    return hashlib.sha256(f"{salt}:{customer}".encode()).hexdigest()


def open_crm(page: Any, crm: Any, path: str) -> Clock:
    clock = Clock(page)
    page.goto(crm.url + path)
    tracker_ready(page)
    return clock


def next_page(page: Any) -> None:
    page.click("#next")
    tracker_ready(page)


# ---------------------------------------------------------------------------------------------
# Time accounting


def test_scripted_walk_stores_active_idle_and_hidden_time_per_step(page, crm_as, collector, manager):
    crm = crm_as()
    clock = open_crm(page, crm, "/clients/C-1001/identification")
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
    work(page, clock, 40_000, every=10_000)  # offer: typing now and then for 40 s, then 45 s idle
    clock.run(45_000)
    next_page(page)
    page.goto(crm.url + "/")  # leaves the CRM: the contract visit ends at once
    clock.settle()

    visits = collector.wait_for_visits(manager, finals(*STEPS[:5]))
    steps = by_step(visits)
    assert_times(steps["identification"], active=20_000)
    assert_times(steps["needs"], active=IDLE_MS, idle=70_000 - IDLE_MS)
    assert_times(steps["products"], active=15_000, hidden=20_000)
    assert_times(steps["offer"], active=40_000 + IDLE_MS, idle=45_000 - IDLE_MS)
    assert_times(steps["contract"], active=0)
    assert all(v["path"] == f"/clients/:customer/{v['step']}" for v in visits)
    assert all(v["process"] == "sales" for v in visits)


def test_checkpoints_report_an_open_visit_every_15_seconds(page, crm_as, collector, manager):
    crm = crm_as()
    clock = open_crm(page, crm, "/clients/C-1002/offer")

    def stay(ms: int) -> Callable[[], None]:
        def run() -> None:
            work(page, clock, ms)
            clock.settle()
        return run

    # Each checkpoint is awaited before the clock moves on: on a busy machine two checkpoints queued
    # before one flush leave only the later (the collector keeps the highest seq anyway).
    expect_events(collector, stay(16_000), expected=[{"type": "visit", "step": "offer", "seq": 0}],
                  refuted=[{"type": "visit", "final": True}], pump=clock.settle)
    sent = expect_events(collector, stay(15_000), expected=[{"type": "visit", "step": "offer", "seq": 1}],
                         refuted=[{"type": "visit", "final": True}], pump=clock.settle)
    second = next(e for e in sent if e.get("seq") == 1)
    assert close_to(second["active_ms"], 30_000)
    visits = collector.wait_for_visits(manager, lambda vs: any(v["seq"] >= 1 for v in vs))
    assert visits[0]["final"] is False


# ---------------------------------------------------------------------------------------------
# Which step is on screen


def test_spa_route_changes_start_new_visits(page, crm_as, collector, manager):
    crm = crm_as()
    clock = open_crm(page, crm, "/app/clients/C-2001/identification")
    work(page, clock, 10_000)
    page.click("a[href$='/needs']")  # pushState
    work(page, clock, 12_000)
    page.evaluate("crm.replace('/app/clients/C-2001/products')")  # replaceState
    work(page, clock, 14_000)
    page.go_back()  # popstate: back to identification
    work(page, clock, 6_000)
    page.evaluate("crm.go('/app/clients/C-2001/offer')")
    page.goto(crm.url + "/")
    clock.settle()

    visits = collector.wait_for_visits(manager, lambda vs: sum(v["final"] for v in vs) >= 5)
    assert [v["step"] for v in visits] == ["identification", "needs", "products", "identification", "offer"]
    assert [v["active_ms"] for v in visits[:4]] == [10_000, 12_000, 14_000, 6_000]
    assert len({v["session_id"] for v in visits}) == 1, "one customer, one session"
    assert all(v["path"] == f"/app/clients/:customer/{v['step']}" for v in visits)


def test_explicit_step_calls_override_the_url(page, crm_as, collector, manager):
    crm = crm_as()
    clock = open_crm(page, crm, "/app/clients/C-2002/identification")
    work(page, clock, 5_000)
    page.evaluate("stepwatch('step', 'payment')")
    work(page, clock, 8_000)
    page.evaluate("crm.go('/app/clients/C-2002/needs')")  # the CRM named the step: the URL no longer does
    work(page, clock, 4_000)
    page.evaluate("stepwatch('step', 'closing')")
    work(page, clock, 3_000)
    page.goto(crm.url + "/")
    clock.settle()

    visits = collector.wait_for_visits(manager, finals("identification", "payment", "closing"))
    assert [(v["step"], v["active_ms"]) for v in visits] == [
        ("identification", 5_000),
        ("payment", 12_000),
        ("closing", 3_000),
    ]


def test_body_attribute_names_the_step_on_hash_routes(page, crm_as, collector, manager):
    crm = crm_as()
    clock = open_crm(page, crm, "/hash/#/clients/C-2003/needs")
    work(page, clock, 7_000)
    page.evaluate("location.hash = '#/clients/C-2003/offer'")
    work(page, clock, 9_000)
    page.evaluate("location.hash = '#/clients'")  # no step on screen: not tracked
    clock.run(20_000)
    page.evaluate("location.hash = '#/clients/C-2003/contract'")
    work(page, clock, 2_000)
    page.goto(crm.url + "/")
    clock.settle()

    visits = collector.wait_for_visits(manager, finals("needs", "offer", "contract"))
    assert [(v["step"], v["active_ms"], v["path"]) for v in visits] == [
        ("needs", 7_000, "/hash/"),
        ("offer", 9_000, "/hash/"),
        ("contract", 2_000, "/hash/"),
    ]


def test_a_page_back_from_the_bfcache_starts_a_new_visit(playwright, crm_as, collector, manager):
    crm = crm_as()
    # Playwright turns the back/forward cache off by default.
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS, ignore_default_args=["--disable-back-forward-cache"]
    )
    try:
        page = browser.new_page()
        clock = open_crm(page, crm, "/clients/C-2004/offer")
        page.evaluate("window.beforeLeaving = true")
        work(page, clock, 3_000)
        page.goto(crm.url + "/")
        clock.run(5_000)
        page.go_back(wait_until="commit")  # a restored page fires no load event
        page.wait_for_function("window.beforeLeaving === true")  # the same page, not a new load
        work(page, clock, 4_000)
        page.goto(crm.url + "/")
        clock.settle()
    finally:
        browser.close()
    visits = collector.wait_for_visits(manager, lambda vs: sum(v["final"] for v in vs) >= 2)
    assert [(v["step"], v["active_ms"]) for v in visits] == [("offer", 3_000), ("offer", 4_000)]


# ---------------------------------------------------------------------------------------------
# Sessions


def test_customer_in_the_url_starts_and_ends_sessions(page, crm_as, collector, manager):
    crm = crm_as()
    clock = open_crm(page, crm, "/app/clients/C-3001/identification")
    work(page, clock, 5_000)
    page.evaluate("crm.go('/app/clients/C-3001/needs')")
    work(page, clock, 5_000)
    page.evaluate("crm.go('/app/clients/C-3002/identification')")  # the next client
    work(page, clock, 5_000)
    clock.run(TIMEOUT_MS + 60_000)  # away for more than the session timeout
    page.mouse.move(10, 10)  # back: same client on screen, a new session
    work(page, clock, 5_000)
    page.goto(crm.url + "/")
    clock.settle()

    visits = collector.wait_for_visits(manager, lambda vs: sum(v["final"] for v in vs) >= 4)
    first, second, third, fourth = visits
    c1, c2 = customer_hash(collector, "crm", "C-3001"), customer_hash(collector, "crm", "C-3002")
    sent = {e["visit_id"]: e.get("customer") for e in collector.proxy.events() if e.get("type") == "visit"}
    assert [sent[v["visit_id"]] for v in visits] == [c1, c1, c2, c2]
    # What is stored is the collector's keyed pseudonym of each hash: one per customer.
    assert first["customer"] == second["customer"] != third["customer"] == fourth["customer"]
    assert first["session_id"] == second["session_id"] != third["session_id"] != fourth["session_id"]
    # The timed-out visit ends when the session does: session_timeout_ms after the last input.
    assert_times(third, active=5_000 + IDLE_MS, idle=TIMEOUT_MS - IDLE_MS)


def test_declared_sessions_carry_the_customer_and_outcome(page, crm_as, collector, manager):
    crm = crm_as(extra="stepwatch('session', 'start', {customer: 'C-3003'})")  # queued before load
    clock = Clock(page)

    def serve_one_client() -> None:
        page.goto(crm.url + "/hash/#/clients/x/needs")
        tracker_ready(page)
        work(page, clock, 6_000)
        page.evaluate("stepwatch('session', 'end', {outcome: 'sale'})")
        work(page, clock, 2_000)
        clock.settle()

    expected_customer = customer_hash(collector, "crm", "C-3003")
    sent = expect_events(
        collector,
        serve_one_client,
        expected=[
            {"type": "session", "action": "start", "customer": expected_customer},
            {"type": "session", "action": "end", "customer": expected_customer, "outcome": "sale"},
            {"type": "visit", "step": "needs", "final": True, "customer": expected_customer},
        ],
        pump=clock.settle,
    )
    start = next(e for e in sent if e.get("action") == "start")
    visits = collector.wait_for_visits(manager, finals("needs"))
    declared = [v for v in visits if v["session_id"] == start["session_id"]]
    assert [(v["step"], v["active_ms"]) for v in declared] == [("needs", 6_000)]
    assert not any(v["customer"] == "C-3003" for v in visits)


def test_a_declared_session_carries_only_the_declared_attributes(page, crm_as, collector, manager):
    # sales.toml declares segment (vip, regular) and channel (phone, email, chat): the rest is dropped.
    crm = crm_as(extra="stepwatch('session', 'start', {customer: 'C-3010', attributes: "
                       "{segment: 'vip', channel: 'fax', region: 'north', constructor: 'x', __proto__: {}}})")
    clock = Clock(page)

    def serve_one_client() -> None:
        page.goto(crm.url + "/hash/#/clients/x/needs")
        tracker_ready(page)
        work(page, clock, 3_000)
        page.evaluate("stepwatch('session', 'end', {outcome: 'sale'})")
        work(page, clock, 1_000)
        clock.settle()

    sent = expect_events(
        collector,
        serve_one_client,
        expected=[{"type": "session", "action": "start", "attributes": {"segment": "vip"}},
                  {"type": "session", "action": "end", "outcome": "sale", "attributes": {"segment": "vip"}}],
        pump=clock.settle,
    )
    assert all(e.get("attributes") in (None, {"segment": "vip"}) for e in sent)
    with_attributes = [b for b in collector.proxy.batches if '"attributes"' in b.body]
    assert with_attributes and all(b.status == 200 for b in with_attributes)


def test_a_declared_end_on_the_customers_page_starts_no_new_session(page, crm_as, collector, manager):
    crm = crm_as()
    clock = open_crm(page, crm, "/app/clients/C-3004/closing")

    def close_the_deal() -> None:
        work(page, clock, 4_000)
        page.evaluate("stepwatch('session', 'end', {outcome: 'sale'})")
        work(page, clock, 50_000)  # still on the customer's page, idle gaps and all
        page.evaluate("crm.go('/app/clients/C-3005/identification')")  # the next customer
        work(page, clock, 1_000)
        clock.settle()

    c4, c5 = customer_hash(collector, "crm", "C-3004"), customer_hash(collector, "crm", "C-3005")
    sent = expect_events(
        collector,
        close_the_deal,
        expected=[
            {"type": "session", "action": "end", "customer": c4, "outcome": "sale"},
            {"type": "session", "action": "start", "customer": c5},
        ],
        pump=clock.settle,
    )
    end = next(i for i, e in enumerate(sent) if e.get("action") == "end")
    starts = [e["customer"] for e in sent[end:] if e.get("action") == "start"]
    assert starts == [c5], "no second session for the customer whose deal was closed"


# ---------------------------------------------------------------------------------------------
# Delivery


def test_offline_then_online_loses_and_doubles_nothing(page, context, crm_as, collector, manager):
    crm = crm_as()
    clock = open_crm(page, crm, "/app/clients/C-4001/identification")
    work(page, clock, 20_000)
    context.set_offline(True)
    page.evaluate("crm.go('/app/clients/C-4001/needs')")
    work(page, clock, 40_000)  # two checkpoints and a final report fail to leave
    page.evaluate("crm.go('/app/clients/C-4001/products')")
    work(page, clock, 5_000)
    clock.settle()
    context.set_offline(False)
    clock.run(300_000)  # the longest backoff
    page.evaluate("crm.go('/app/clients/C-4001/offer')")
    clock.settle()

    visits = collector.wait_for_visits(manager, finals("identification", "needs", "products"), pump=clock.settle)
    steps = by_step([v for v in visits if v["final"]])
    assert steps["needs"]["active_ms"] == 40_000
    assert len({v["visit_id"] for v in visits}) == len(visits)


def test_collector_errors_are_retried_until_accepted(page, crm_as, collector, manager):
    crm = crm_as()
    collector.proxy.fail(2, 503)
    clock = open_crm(page, crm, "/app/clients/C-4002/offer")
    work(page, clock, 5_000)
    page.evaluate("crm.go('/app/clients/C-4002/contract')")
    # backoff: 0.5-1 s, then 1-2 s, ...: settle() moves 2.1 s at a time
    visits = collector.wait_for_visits(manager, finals("offer"), pump=clock.settle)
    assert by_step(visits)["offer"]["active_ms"] == 5_000
    statuses = [b.status for b in collector.proxy.batches if manager in b.body]
    assert statuses[:2] == [503, 503] and 200 in statuses


def test_reload_with_a_pending_queue_sends_it_once(page, crm_as, collector, manager):
    crm = crm_as()
    collector.proxy.fail(1000, 503)  # the collector is down
    clock = open_crm(page, crm, "/clients/C-4003/offer")
    work(page, clock, 8_000)
    next_page(page)
    work(page, clock, 4_000)
    clock.settle()
    pending = page.evaluate("Object.values(localStorage).map(v => JSON.parse(v).q.length)")
    assert max(pending) >= 1, "the failed events wait in localStorage"
    collector.proxy.faults.clear()  # the collector is back
    page.reload()
    tracker_ready(page)
    clock.settle()
    page.goto(crm.url + "/")
    clock.settle()

    visits = collector.wait_for_visits(manager, lambda vs: sum(v["final"] for v in vs) >= 3)
    # (each settle() lets 2.1 s of fake time pass on the page it runs on)
    assert [(v["step"], v["active_ms"]) for v in visits] == [("offer", 8_000), ("contract", 6_100), ("contract", 2_100)]


def test_closing_the_tab_delivers_the_final_report(page, crm_as, collector, manager):
    crm = crm_as()
    clock = open_crm(page, crm, "/clients/C-5001/payment")
    work(page, clock, 9_000)
    page.close()  # pagehide: the beacon goes out
    visits = collector.wait_for_visits(manager, finals("payment"))
    assert visits[0]["active_ms"] == 9_000


def test_a_crashed_browser_keeps_the_last_checkpoint(playwright, tmp_path, crm_as, collector, manager):
    crm = crm_as()
    profile = tmp_path / "profile"
    context = playwright.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        page = context.pages[0] if context.pages else context.new_page()
        clock = open_crm(page, crm, "/clients/C-5002/payment")
        work(page, clock, 20_000)  # a checkpoint at 15 s
        clock.settle()
        collector.wait_for_visits(manager, lambda vs: len(vs) == 1)
        work(page, clock, 5_000)  # more time, before the next checkpoint: only a final report would tell
        kill_browser(profile)
    finally:
        try:
            context.close()
        except Exception:  # already dead: that was the point
            pass
    visits = collector.wait_for_visits(manager, lambda vs: len(vs) == 1)
    assert visits[0]["final"] is False
    assert_times(visits[0], active=15_000)


# ---------------------------------------------------------------------------------------------
# Identity


def test_signed_identity_is_accepted(page, crm_as, collector, manager):
    crm = crm_as(site="signed", token=sign(collector.sites["signed"].secret, manager))
    clock = open_crm(page, crm, "/clients/C-6001/offer")
    work(page, clock, 3_000)
    page.goto(crm.url + "/")
    clock.settle()
    visits = collector.wait_for_visits(manager, finals("offer"))
    assert visits[0]["active_ms"] == 3_000


def test_forged_identity_is_rejected_and_not_retried(page, crm_as, collector, manager):
    crm = crm_as(site="signed", token=sign("not-the-secret", manager))
    clock = open_crm(page, crm, "/clients/C-6002/offer")
    work(page, clock, 40_000)  # a session start and two checkpoints
    for _ in range(5):
        clock.settle(0.2)
    batches = [b for b in collector.proxy.batches if manager in b.body]
    assert len(batches) >= 3 and all(b.status == 401 for b in batches)
    sent = [(e.get("event_id") or e["visit_id"], e.get("seq")) for b in batches for e in b.events]
    assert len(sent) == len(set(sent)), "a refused event was sent again"
    assert collector.visits(manager) == []


def test_events_wait_for_identify(page, crm_as, collector, manager):
    crm = crm_as(manager_id=None)
    clock = open_crm(page, crm, "/app/clients/C-6003/offer")
    work(page, clock, 20_000)
    clock.settle()
    assert not [b for b in collector.proxy.batches if "C-6003" in b.body or manager in b.body]
    page.evaluate(f"stepwatch('identify', {json.dumps(manager)})")
    clock.settle()
    visits = collector.wait_for_visits(manager, lambda vs: len(vs) == 1)
    assert visits[0]["manager"] == manager


def test_a_visit_stays_with_the_manager_who_made_it(page, crm_as, collector, manager):
    """A computer two managers share: the CRM's next page names another manager. The first one's
    last visit, beaconed when its page went and queued until a send is confirmed, goes out again
    from that page, and is still the first manager's."""
    other = f"{manager}-next"
    crm = crm_as()
    clock = open_crm(page, crm, "/clients/C-6020/offer")
    work(page, clock, 10_000)
    crm_as(manager_id=other)
    next_page(page)  # the contract page, signed in as the other manager
    work(page, clock, 10_000)
    clock.settle()
    page.goto(crm.url + "/")
    clock.settle()
    assert [v["step"] for v in collector.wait_for_visits(manager, finals("offer"))] == ["offer"]
    assert [v["step"] for v in collector.wait_for_visits(other, finals("contract"))] == ["contract"]
    sent = [e for e in collector.proxy.events() if e.get("step") == "offer" and e.get("final")
            and e["manager"] in (manager, other)]
    assert len(sent) >= 2, "the offer visit's final report was not sent again by the next page"
    assert {e["manager"] for e in sent} == {manager}


# ---------------------------------------------------------------------------------------------
# Privacy and the host page

PRIVATE = [
    "Sekretov",
    "sekretov@example.com",
    "555-12-34",
    "4510 987654",
    "hunter2",
    "Olga",
    "C-SECRET-77",
    "ssn",
    "123-45-6789",
    "frag-passport",
    "Identification of",
]


def test_nothing_private_leaves_the_page(page, crm_as, collector, manager):
    crm = crm_as()
    clock = open_crm(page, crm, "/form/clients/C-SECRET-77/identification?ssn=123-45-6789#frag-passport")
    page.fill("input[name=name]", "Ivan Sekretov Jr")
    page.fill("input[name=password]", "hunter2-again")
    work(page, clock, 16_000)
    page.goto(crm.url + "/clients/C-SECRET-77/needs?ssn=123-45-6789")
    tracker_ready(page)
    work(page, clock, 1_000)
    page.close()

    visits = collector.wait_for_visits(manager, finals("identification", "needs"))
    assert [v["path"] for v in visits] == ["/form/clients/:customer/identification", "/clients/:customer/needs"]
    bodies = [b for b in collector.proxy.bodies() if manager in b]
    assert bodies
    leaked = [word for word in PRIVATE for body in bodies if word.lower() in body.lower()]
    assert not leaked, f"private data left the page: {sorted(set(leaked))}"


def test_no_global_but_stepwatch(page, crm_as):
    crm = crm_as()
    page.add_init_script("window.globalsBefore = Object.getOwnPropertyNames(window)")
    open_crm(page, crm, "/clients/C-7000/offer")
    added = page.evaluate("Object.getOwnPropertyNames(window).filter(n => !globalsBefore.includes(n))")
    added = [name for name in added if not name.startswith("__pw")]  # Playwright's fake clock
    assert sorted(added) == ["globalsBefore", "stepwatch"]
    assert page.evaluate("document.cookie") == ""


def test_ids_in_unmatched_paths_are_replaced(page, crm_as, collector, manager):
    crm = crm_as()
    clock = open_crm(page, crm, "/app/orders/12345/items/ivan@example.com/a1b2c3d4e5/summary")
    page.evaluate("document.body.setAttribute('data-stepwatch-step', 'products')")
    work(page, clock, 2_000)
    page.goto(crm.url + "/")
    clock.settle()
    visits = collector.wait_for_visits(manager, finals("products"))
    assert visits[0]["path"] == "/app/orders/:id/items/:id/:id/summary"


def test_a_host_page_that_throws_keeps_the_tracker_working(page, crm_as, collector, manager):
    crm = crm_as()
    clock = open_crm(page, crm, "/throws/clients/C-7001/offer")
    page.click("#broken")
    work(page, clock, 4_000)
    page.goto(crm.url + "/")
    clock.settle()
    visits = collector.wait_for_visits(manager, finals("offer"))
    assert visits[0]["active_ms"] == 4_000
    errors = page_errors(page)
    assert any("fake CRM" in e for e in errors), "the fixture's own errors should show"
    assert all("fake CRM" in e for e in errors), f"the tracker threw into the page: {errors}"


def test_a_strict_csp_page_is_tracked_without_violations(page, crm_as, collector, manager):
    crm = crm_as()
    clock = open_crm(page, crm, "/csp/clients/C-7002/offer")
    work(page, clock, 6_000)
    violations = page.evaluate("window.cspViolations")
    page.goto(crm.url + "/")
    clock.settle()
    assert violations == []
    visits = collector.wait_for_visits(manager, finals("offer"))
    assert visits[0]["active_ms"] == 6_000
    assert page_errors(page) == []
