"""Every text box of more than one line has its label above it, on a wide screen and on a phone: a
label beside a tall box sits at its bottom edge, where an admin copying the tracker's code reads it
as a caption of whatever follows."""

from __future__ import annotations

from typing import Any

import pytest

PAGES = ("/process", "/extension")  # the pages with text areas (the tracker's code, the extension's setup)


@pytest.mark.parametrize("width", [1440, 390])
def test_a_text_areas_label_sits_above_it(visit: Any, width: int) -> None:
    v = visit("admin")
    v.page.set_viewport_size({"width": width, "height": 900})
    seen = 0
    for path in PAGES:
        v.page.goto(v.base + path)
        v.page.wait_for_load_state()
        placed = v.page.evaluate("""() => [...document.querySelectorAll('textarea')].map((area) => {
            const label = document.querySelector(`label[for="${area.id}"]`);
            const a = area.getBoundingClientRect(), l = label ? label.getBoundingClientRect() : null;
            return [area.id, l && l.bottom, a.top]; })""")
        for name, label_bottom, area_top in placed:
            seen += 1
            assert label_bottom is not None and label_bottom <= area_top + 1, (path, name, label_bottom, area_top)
    assert seen >= 2  # the tracker's code and the extension's setup link at least
    assert not v.errors, v.errors
