"""The drawdowns list as a director sees it in Chromium, on the demo: on a 1440 px desktop it fits the
window in English and in Russian (no sideways scrollbar, every column in sight) with each status pill on
one line; on a 390 px phone each drawdown, and each coaching assignment on the board, is a card with
every figure in sight under its column's name, as are What works' rankings: nothing scrolls sideways."""

from __future__ import annotations

from typing import Any

import pytest

PILLS_ON_ONE_LINE = """() => [...document.querySelectorAll('table.drawdowns-list .status')].map((el) => {
    const lines = el.getClientRects().length, style = getComputedStyle(el);
    return [el.textContent, lines, el.getBoundingClientRect().height / parseFloat(style.lineHeight || 16)]; })"""


# each row of a phone's card list: its right edge, and how many of its cells carry their column's name
CARDS = """() => [...document.querySelectorAll('table.cards-on-phone tbody tr')].map((row) => [
    Math.max(...[...row.querySelectorAll('td, td *')].map((el) => el.getBoundingClientRect().right)),
    [...row.querySelectorAll('td[data-label]')].filter((td) => getComputedStyle(td, '::before').content.length > 2)
        .length])"""


def read_in(v: Any, language: str) -> None:
    if v.page.evaluate("document.documentElement.lang") != language:
        with v.page.expect_navigation():
            v.page.select_option("#language-picker", language)
        v.page.wait_for_function(f"document.documentElement.lang === '{language}'")


@pytest.mark.parametrize("language", ["en", "ru"])
def test_the_list_fits_a_desktop_and_reads_as_cards_on_a_phone(visit: Any, language: str) -> None:
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
        for path in ("/drawdowns", "/coaching"):
            v.page.goto(v.base + path)
            assert v.page.evaluate("document.documentElement.scrollWidth") <= 390, path
            cards = v.page.evaluate(CARDS)
            assert len(cards) >= 5 and all(right <= 390 - 8 for right, _ in cards), (path, cards)
            assert all(labels >= 4 for _, labels in cards), (path, cards)  # each figure named, as the header did
            v.shot(f"{path.strip('/')}-director-390-{language}")
        v.page.goto(v.base + "/coaching/effectiveness")  # what works: its rankings are cards too
        assert v.page.evaluate("document.documentElement.scrollWidth") <= 390
        ranked = [c for c in v.page.evaluate(CARDS) if c[1]]  # a step's heading row names no figure
        assert ranked and all(right <= 390 - 8 and labels >= 3 for right, labels in ranked), ranked
    finally:
        read_in(v, "en")
    assert not v.errors, v.errors
