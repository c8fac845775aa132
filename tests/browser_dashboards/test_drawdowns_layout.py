"""The drawdowns list as a director sees it in Chromium, on the demo: on a 1440 px desktop it fits the
window in English and in Russian (no sideways scrollbar, every column in sight) with each status pill on
one line; on a 390 px phone the page does not scroll sideways, the table scrolls in its own box."""

from __future__ import annotations

from typing import Any

import pytest

PILLS_ON_ONE_LINE = """() => [...document.querySelectorAll('table.drawdowns-list .status')].map((el) => {
    const lines = el.getClientRects().length, style = getComputedStyle(el);
    return [el.textContent, lines, el.getBoundingClientRect().height / parseFloat(style.lineHeight || 16)]; })"""


def read_in(v: Any, language: str) -> None:
    if v.page.evaluate("document.documentElement.lang") != language:
        with v.page.expect_navigation():
            v.page.select_option("#language-picker", language)
        v.page.wait_for_function(f"document.documentElement.lang === '{language}'")


@pytest.mark.parametrize("language", ["en", "ru"])
def test_the_list_fits_a_desktop_and_scrolls_in_its_box_on_a_phone(visit: Any, language: str) -> None:
    v = visit("director")
    v.page.set_viewport_size({"width": 1440, "height": 900})
    v.page.goto(v.base + "/drawdowns")
    read_in(v, language)
    try:
        v.page.goto(v.base + "/drawdowns")
        v.page.wait_for_load_state()
        assert v.page.locator("table.drawdowns-list tbody tr").count() >= 5  # the demo's drawdowns
        width = v.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 1440, width
        right = v.page.evaluate("document.querySelector('table.drawdowns-list').getBoundingClientRect().right")
        assert right <= 1440 - 8, right  # the last column does not touch the window's edge
        pills = v.page.evaluate(PILLS_ON_ONE_LINE)
        assert pills and all(lines == 1 and height < 1.6 for _, lines, height in pills), pills
        v.shot(f"drawdowns-director-1440-{language}")
        v.page.set_viewport_size({"width": 390, "height": 844})
        v.page.goto(v.base + "/drawdowns")
        assert v.page.evaluate("document.documentElement.scrollWidth") <= 390
        box = v.page.evaluate("""() => { const b = document.querySelector('.table-scroll');
            return [getComputedStyle(b).overflowX, b.scrollWidth > b.clientWidth]; }""")
        assert box == ["auto", True], box
        v.shot(f"drawdowns-director-390-{language}")
    finally:
        read_in(v, "en")
    assert not v.errors, v.errors
