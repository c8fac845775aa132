"""Managers by name on a phone: the demo's names (one very long) widen no page beyond 390 px."""

from __future__ import annotations

from typing import Any

import pytest

LONG = "Александра Константинопольская-Воскресенская"  # the demo's m-011


@pytest.mark.parametrize("path", ["/overview", "/drawdowns", "/coaching", "/managers", "/managers/m-011"])
def test_named_pages_fit_a_phone(visit: Any, path: str) -> None:
    v = visit("admin")
    v.page.set_viewport_size({"width": 390, "height": 844})
    v.page.goto(v.base + path)
    v.page.wait_for_load_state()
    assert LONG in v.page.content()
    widths = v.page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    v.shot("phone-names" + path.replace("/", "_"))
    assert widths[0] <= widths[1], f"{path} is {widths[0]} px wide on a {widths[1]} px screen"
    assert not v.errors, v.errors


def test_what_works_names_courses_by_title(visit: Any) -> None:
    v = visit("admin")
    v.page.goto(v.base + "/coaching/effectiveness")
    v.page.wait_for_load_state()
    cells = v.page.locator("tbody td:nth-child(2)").all_inner_texts()
    assert "Договор, оплата и завершение" in cells and "dogovor-oplata-i-zavershenie" not in cells, cells
