"""Click-throughs a director and a trainer make every day, in Chromium on the demo."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any


def test_overview_to_a_drawdown_to_its_manager_and_acknowledge(visit: Any) -> None:
    v = visit("director")
    page = v.page
    page.get_by_role("link", name="Overview").first.click()
    page.wait_for_load_state()
    v.shot("click-1-overview")
    costliest = page.locator("tr", has=page.locator("span.status", has_text="open"))
    assert costliest.count() > 0, "the demo should have open drawdowns on the overview"
    costliest.first.locator("a").first.click()
    page.wait_for_load_state()
    assert "/drawdowns/" in page.url
    flag_url = page.url
    v.shot("click-2-drawdown")
    manager = page.locator("dl.facts a[href^='/managers/']").first
    name = manager.locator(".person, .person-id").first.inner_text()  # the name, or the id when none is known
    manager.click()
    page.wait_for_load_state()
    assert name in page.locator("h1").inner_text()
    assert page.locator("svg.chart").count() > 0  # bullet, distribution and weekly charts
    v.shot("click-3-manager")
    page.goto(flag_url)
    page.locator("details.other-actions summary").click()  # the secondary moves are folded away
    page.get_by_role("button", name="Acknowledge").click()
    page.wait_for_load_state()
    assert page.locator("span.status").first.inner_text().strip().lower() == "acknowledged"
    assert page.locator("p.notice.ok").count() == 1
    v.shot("click-4-acknowledged")
    assert not v.errors, v.errors


def test_flag_to_assignment_to_schedule_to_done_and_an_evaluation(visit: Any) -> None:
    director = visit("director")
    page = director.page
    page.goto(director.base + "/drawdowns?status=open&kind=slow")
    rows = page.locator("table tbody tr", has=page.locator("a[href^='/drawdowns/']"))
    assert rows.count() > 0
    rows.first.locator("a[href^='/drawdowns/']").first.click()
    page.wait_for_load_state()
    page.get_by_role("link", name="Assign coaching").click()
    page.wait_for_load_state()
    director.shot("coach-1-assign-form")
    page.get_by_label("Mentor meeting").check()
    page.locator("#f-mentor").select_option(index=1)
    page.get_by_role("button", name="Assign").click()
    page.wait_for_load_state()
    assert "/coaching/assignments/" in page.url, page.locator("main").inner_text()[:1000]
    assignment_url = page.url
    director.shot("coach-2-assigned")

    trainer = visit("trainer")
    page = trainer.page
    page.goto(assignment_url)
    soon = datetime.now(UTC) + timedelta(seconds=4)
    page.locator("#meeting_at").fill(soon.strftime("%Y-%m-%dT%H:%M:%S"))
    page.get_by_role("button", name="Schedule").click()
    page.wait_for_load_state()
    assert "scheduled" in page.locator("dl.facts").inner_text()
    trainer.shot("coach-3-scheduled")
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 1)
    page.reload()
    page.get_by_role("button", name="Mark done").click()
    page.wait_for_load_state()
    assert "done" in page.locator("dl.facts").inner_text()
    history = page.locator("ol.history").inner_text()
    assert "assigned" in history and "scheduled" in history and "done" in history
    trainer.shot("coach-4-done")

    # An assignment of the demo that was done weeks ago has its evaluation: verdict, figures, chart.
    page = director.page
    page.goto(director.base + "/coaching?state=evaluated")
    page.locator("table a[href^='/coaching/assignments/']").first.click()
    page.wait_for_load_state()
    verdict = page.locator("article.evaluation h3").first.inner_text()
    assert any(word in verdict for word in ("improved", "no change", "worse", "not enough data")), verdict
    assert page.locator("svg.before-after:visible").count() == 1  # the wide chart, or the phone's narrow one
    director.shot("coach-5-evaluation")
    assert not director.errors and not trainer.errors, director.errors + trainer.errors
