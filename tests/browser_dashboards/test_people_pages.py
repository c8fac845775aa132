"""The people stepwatch measures and the trainers who coach them, in Chromium on the demo: My figures says
what is measured and who sees it and fits a phone; coaching assigned to the manager is acknowledged and
asked about by the manager and read by the trainer. My figures, the board and an assignment are
photographed at 1440 and 390 px (test-artifacts/screenshots/people-*)."""

from __future__ import annotations

from typing import Any


def _both_widths(v: Any, name: str) -> None:
    for width in (1440, 390):
        v.page.set_viewport_size({"width": width, "height": 900})
        v.page.wait_for_timeout(50)
        v.shot(f"people-{name}-{width}")
        scroll = v.page.evaluate("document.documentElement.scrollWidth")
        assert scroll <= width, f"{name} is {scroll} px wide on a {width} px screen"
    v.page.set_viewport_size({"width": 1440, "height": 900})


def test_a_manager_reads_what_is_measured_and_follows_their_coaching(visit: Any) -> None:
    manager = visit("manager")
    page = manager.page
    page.goto(manager.base + "/me")
    page.wait_for_load_state()
    me = page.request.get(manager.base + "/api/v1/me").json()
    facts = me["transparency"]
    assert facts["retention_days"] > 0 and facts["seen_by"]["directors"], facts
    how = page.locator("section.how")
    assert "never" in how.inner_text().lower() and how.locator("a[href^='/api/v1/me/export']").count() == 1
    assert page.locator("#attention-heading").count() == 1  # what needs attention, or the all-clear, first
    _both_widths(manager, "1-my-figures")

    # The director assigns a mentor meeting to this manager on a step of the process.
    director = visit("director")
    step = me["steps"][0]["step"]
    director.page.goto(director.base + f"/coaching/new?manager={me['manager']}&step={step}")
    director.page.wait_for_load_state()
    assert director.page.locator("input[name=kind]").count() == 2, director.page.locator("main").inner_text()[:800]
    director.page.locator("input[name=kind][value=mentor_meeting]").check()
    mentors = director.page.locator("#f-mentor option")
    assert mentors.count() > 1, "the demo's mentor should coach every step"
    if not director.page.locator("#f-mentor").input_value():
        director.page.locator("#f-mentor").select_option(index=1)
    director.page.get_by_role("button", name="Assign").click()
    director.page.wait_for_load_state()
    assert "/coaching/assignments/" in director.page.url, director.page.locator("main").inner_text()[:800]
    assignment = director.page.url.removeprefix(director.base)

    # The manager acknowledges it and asks a question, on the assignment's own page.
    page.goto(manager.base + assignment)
    page.wait_for_load_state()
    page.get_by_role("button", name="I have read it and will do it").click()
    page.wait_for_load_state()
    assert "acknowledged by the manager" in page.locator("main").inner_text()
    page.locator("textarea[name=text]").first.fill("Can we meet on Thursday morning?")
    page.locator("textarea[name=text]").first.locator("xpath=ancestor::form").locator("button").click()
    page.wait_for_load_state()
    assert "Can we meet on Thursday morning?" in page.locator("main").inner_text()
    _both_widths(manager, "2-assignment-manager")

    # The trainer sees the acknowledgement and the question on the board and the assignment.
    trainer = visit("trainer")
    trainer.page.goto(trainer.base + "/coaching")
    trainer.page.wait_for_load_state()
    board = trainer.page.locator("main").inner_text()
    assert "acknowledged by the manager" in board and "unanswered" in board
    _both_widths(trainer, "3-board-trainer")
    trainer.page.goto(trainer.base + assignment)
    trainer.page.wait_for_load_state()
    assert "Can we meet on Thursday morning?" in trainer.page.locator("main").inner_text()
    _both_widths(trainer, "4-assignment-trainer")
    for v in (manager, director, trainer):
        assert not v.errors, v.errors
