"""The overview's layout as a director sees it in Chromium, on the demo: the headline is the sum over the
drawdowns listed, main tables read in the page's own scroll with sticky headers, the heatmap's teams
fold without a script, captions are small beside large figures, and no director page scrolls sideways
on a 390 px phone."""

from __future__ import annotations

from typing import Any

import pytest


def test_headline_equals_the_drawdowns_listed_and_reads_first(visit: Any) -> None:
    v = visit("director")
    v.page.goto(v.base + "/overview")
    v.page.wait_for_load_state()
    headline = v.page.request.get(v.base + "/api/v1/overview").json()["headline"]
    listed = v.page.request.get(v.base + "/api/v1/drawdowns").json()["flags"]
    lost = sum(f["minutes_lost_per_week"] for f in listed if f["kind"] != "fast")
    assert headline["hours_lost_per_week"] == pytest.approx(lost / 60, abs=0.01)
    assert headline["hours_lost_per_week_previous"] is not None  # the demo keeps a run a week earlier
    big = v.page.locator(".headline .big")
    assert big.inner_text().replace("\u00a0", " ") == f"{headline['hours_lost_per_week']:.1f} h"
    # The headline comes before every table, the key figures' captions are small beside their figures.
    assert big.bounding_box()["y"] < v.page.locator("table").first.bounding_box()["y"]
    sizes = v.page.evaluate("""() => { const dl = document.querySelector('.headline .kpis');
        const px = (el) => parseFloat(getComputedStyle(el).fontSize);
        const big = document.querySelector('.headline .big');
        return [px(dl.querySelector('dt')), px(dl.querySelector('dd')), px(big)]; }""")
    assert sizes[0] < 16 and sizes[1] >= 1.5 * sizes[0] and sizes[2] >= 2 * sizes[0], sizes
    v.shot("overview-director-1440")
    assert not v.errors, v.errors


def test_tables_scroll_with_the_page_and_their_headers_stick(visit: Any) -> None:
    v = visit("director")
    v.page.goto(v.base + "/overview")
    v.page.wait_for_load_state()
    boxed = v.page.evaluate("""() => [...document.querySelectorAll('.table-scroll')].map((el) => {
        const s = getComputedStyle(el); return [s.overflowY, s.maxHeight]; })""")
    assert boxed and all(o == "visible" and m == "none" for o, m in boxed), boxed
    v.page.evaluate("window.scrollTo(0, document.querySelector('table.heat').getBoundingClientRect().top"
                    " + window.scrollY + 200)")
    top = v.page.locator("table.heat").first.locator("thead th").nth(1).bounding_box()["y"]
    assert top == pytest.approx(0, abs=2), top  # the step names stay in sight while the page scrolls
    assert not v.errors, v.errors


def test_team_groups_fold_without_a_script(browser: Any, demo: Any) -> None:
    server, accounts = demo
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    try:
        page.goto(server.url.rstrip("/") + "/login")
        name, password = accounts["director"]
        page.get_by_label("User name").fill(name)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.goto(server.url.rstrip("/") + "/overview")
        groups = page.locator("details.team-group")
        assert groups.count() == 4
        first = groups.first.locator("table.heat")
        assert first.is_visible()
        groups.first.locator("summary").click()
        assert not first.is_visible() and groups.nth(1).locator("table.heat").is_visible()
    finally:
        context.close()


def _director_pages(v: Any) -> list[str]:
    v.page.goto(v.base + "/overview")
    v.page.wait_for_load_state()
    flag = v.page.locator("table.ranking tbody th a").first.get_attribute("href")
    manager = v.page.locator("table.heat tbody th a").first.get_attribute("href")
    step = v.page.locator("table.heat thead th a").first.get_attribute("href")
    return ["/overview", "/overview?team=west", "/drawdowns", flag, manager, step, "/coaching"]


@pytest.mark.parametrize("language", ["en", "ru"])
def test_no_director_page_scrolls_sideways_on_a_phone(visit: Any, language: str) -> None:
    v = visit("director")
    paths = _director_pages(v)
    if language == "ru":
        with v.page.expect_navigation():
            v.page.locator("#language-picker").select_option("ru")
    v.page.set_viewport_size({"width": 390, "height": 844})
    wide = {}
    for path in paths:
        v.page.goto(v.base + path)
        v.page.wait_for_load_state()
        width = v.page.evaluate("document.documentElement.scrollWidth")
        if path.startswith("/overview"):
            v.shot(f"overview-director-390-{language}" + ("-west" if "team" in path else ""))
        if width > 390:
            wide[path] = width
    assert not wide, f"pages wider than a 390 px phone: {wide}"
    assert not v.errors, v.errors


# Each step column's words, and the widths of every team's columns, on the page as shown.
_HEATMAP_COLUMNS = """() => [...document.querySelectorAll('table.heat')].map(table => {
    const cells = [...table.querySelectorAll('thead th')];
    const cut = cells.slice(1).filter(th => {
        const style = getComputedStyle(th);
        const measure = document.createElement('canvas').getContext('2d');
        measure.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
        const room = th.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
        return th.textContent.trim().split(/\\s+/).some(word => measure.measureText(word).width > room);
    }).map(th => th.textContent.trim());
    return {widths: cells.map(th => Math.round(th.getBoundingClientRect().width)), cut};
})"""


@pytest.mark.parametrize("language", ["en", "ru"])
def test_the_heatmaps_teams_line_up_and_keep_step_words_whole_on_a_phone(visit: Any, language: str) -> None:
    """On a 390 px phone the heatmap's tables scroll sideways in their boxes: every team's columns are
    as wide as the others' (a long name does not widen one team's first column), and no word of a step's
    title is wider than its column (Chromium has no hyphenation dictionary and cut "потребностей")."""
    v = visit("admin")
    if language == "ru":
        with v.page.expect_navigation():
            v.page.locator("#language-picker").select_option("ru")
    v.page.set_viewport_size({"width": 390, "height": 844})
    v.page.goto(v.base + "/overview")
    v.page.wait_for_load_state()
    tables = v.page.evaluate(_HEATMAP_COLUMNS)
    assert len(tables) >= 2
    assert all(t["widths"] == tables[0]["widths"] for t in tables), [t["widths"] for t in tables]
    assert not [t["cut"] for t in tables if t["cut"]]
    assert v.page.evaluate("document.documentElement.scrollWidth") == 390
    assert not v.errors, v.errors


_NAME_WORDS = """() => [...document.querySelectorAll('table.heat tbody th[scope=row] .person')].map((name) => {
    const cell = name.closest('th'), style = getComputedStyle(cell);
    const room = cell.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const probe = document.createElement('span');
    probe.style.cssText = 'position:absolute;white-space:nowrap;font:' + getComputedStyle(name).font;
    document.body.append(probe);
    const widest = Math.max(...name.textContent.split(/\\s+|(?<=-)/).map((w) => {
        probe.textContent = w; return probe.getBoundingClientRect().width; }));
    probe.remove();
    return [name.textContent, Math.round(widest), Math.round(room)]; })"""


def test_a_managers_name_breaks_only_between_words_on_a_wide_screen(visit: Any) -> None:
    """At 1440 px every part of a manager's name fits the heatmap's first column: a long double name
    breaks at its hyphen ("Константинопольская-" / "Воскресенская"), never inside a word."""
    v = visit("director")
    v.page.set_viewport_size({"width": 1440, "height": 900})
    v.page.goto(v.base + "/overview")
    v.page.wait_for_load_state()
    names = v.page.evaluate(_NAME_WORDS)
    assert any("Константинопольская" in n for n, _, _ in names)  # the demo's longest name is there
    assert not [(n, w, room) for n, w, room in names if w > room]
    assert not v.errors, v.errors
