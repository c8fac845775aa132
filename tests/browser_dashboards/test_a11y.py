"""Every page of the demo, for every role, read by axe-core (no serious or critical violation: contrast,
names, labels, landmarks, scroll boxes reachable by keyboard), with charts that have a text equivalent;
and on a 390 px phone, in English and Russian, no page scrolls sideways as a whole while a wide table
scrolls inside its box with its first column kept in view.

axe-core is the npm package installed by `npm ci` in tracker_js/; it is injected with
`page.add_script_tag`, which the dashboards' Content-Security-Policy (script-src 'self') would refuse, so
these contexts bypass the CSP (tests/browser_dashboards/test_pages.py checks pages under the real one).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.browser_dashboards.conftest import REPO

AXE = REPO / "tracker_js" / "node_modules" / "axe-core" / "axe.min.js"
ROLES = ["admin", "director", "trainer", "manager"]
MAX_PAGES = 24  # per role: every nav page and a few of each kind of page they link to
PER_KIND = 3
BLOCKING = ("serious", "critical")

LINKS = "els => els.map(e => e.getAttribute('href'))"
OPEN_DETAILS = "() => document.querySelectorAll('details').forEach(d => { d.open = true; })"
AXE_RUN = """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
  .filter(v => v.impact === 'serious' || v.impact === 'critical')
  .map(v => v.id + ' (' + v.impact + '): ' + v.help + '\\n      '
       + v.nodes.slice(0, 4).map(n => n.target.join(' ') + '  ' + n.html.slice(0, 140)).join('\\n      '))"""
# A chart is read by a screen reader through its <title>/<desc> or aria-label, or through a table or a
# written summary beside it (a figure's table, a <details> with the data, a figcaption).
CHARTS_WITHOUT_TEXT = """() => [...document.querySelectorAll('svg.chart')].filter(svg => {
  const named = svg.querySelector(':scope > title, :scope > desc');
  if (named && (named.textContent || '').trim()) return false;
  if (svg.getAttribute('aria-label') || svg.getAttribute('aria-labelledby')) return false;
  const holder = svg.closest('figure, section, .chart-scroll, .evidence-chart') || svg.parentElement;
  return !(holder && holder.querySelector('table, figcaption, .chart-data, .chart-summary'));
}).map(svg => svg.outerHTML.slice(0, 120))"""
PAGE_OVERFLOW = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
# For every table box that scrolls sideways: scroll it, and report a first-column cell that moved with the
# rest, is not sticky, or lets the scrolled text show through (a transparent background).
STICKY_FIRST_COLUMN = """() => [...document.querySelectorAll('.table-scroll')]
  .filter(box => box.scrollWidth > box.clientWidth + 1 && box.offsetParent !== null)
  .map(box => {
    const cell = [...box.querySelectorAll('tbody tr > :first-child')].find(c => c.colSpan === 1);  // not "no data"
    if (!cell || getComputedStyle(cell).display !== 'table-cell') return null;
    const before = cell.getBoundingClientRect().left - box.getBoundingClientRect().left;
    box.scrollLeft = 120;
    const after = cell.getBoundingClientRect().left - box.getBoundingClientRect().left;
    const style = getComputedStyle(cell);
    box.scrollLeft = 0;
    const ok = style.position === 'sticky' && Math.abs(after - before) < 2
      && style.backgroundColor !== 'rgba(0, 0, 0, 0)' && style.backgroundColor !== 'transparent';
    return ok ? null
      : `${box.className}: position ${style.position}, moved ${before}->${after}, background ${style.backgroundColor}`;
  }).filter(Boolean)"""


@pytest.fixture(scope="module")
def axe_path() -> Path:
    if not AXE.exists():
        pytest.skip(f"{AXE} is missing: run `npm ci` in tracker_js/ (axe-core is one of its devDependencies)")
    return AXE


@pytest.fixture(scope="module")
def signed_in(browser: Any, demo: Any) -> Iterator[dict[str, Any]]:
    """One signed-in page per role for the module (signing in four times, not once per check)."""
    server, accounts = demo
    contexts, pages = [], {}
    for role in ROLES:
        context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-US", bypass_csp=True)
        page = context.new_page()
        page.goto(server.url.rstrip("/") + "/login")
        page.fill("input[name=name]", accounts[role][0])
        page.fill("input[name=password]", accounts[role][1])
        page.click("button[type=submit]")
        page.wait_for_load_state()
        assert "/login" not in page.url, role
        contexts.append(context)
        pages[role] = page
    yield pages
    for context in contexts:
        context.close()


def crawl(page: Any, base: str) -> Iterator[str]:
    """Each page the role reaches from its start page by links (breadth first, a few of each kind)."""
    seen: list[str] = []
    queue = [urlsplit(page.url).path]
    per_kind: dict[str, int] = {}
    while queue and len(seen) < MAX_PAGES:
        target = queue.pop(0)
        response = page.goto(base + target)
        assert response is not None and response.status == 200, f"{target}: {response and response.status}"
        seen.append(target)
        yield target
        for href in page.eval_on_selector_all("main a[href], header a[href]", LINKS):
            parts = urlsplit(href)
            if (parts.netloc or not parts.path.startswith("/") or "format=" in parts.query
                    or parts.path.startswith(("/api/", "/static/", "/export"))):
                continue
            kind = "/".join(parts.path.split("/")[:3 if parts.path.count("/") > 2 else 2])
            link = parts.path + ("?" + parts.query if parts.query else "")
            if (per_kind.get(kind, 0) >= PER_KIND
                    or any(urlsplit(known).path == parts.path for known in seen + queue)):
                continue  # one query of each path, a few managers / drawdowns / assignments of each kind
            per_kind[kind] = per_kind.get(kind, 0) + 1
            queue.append(link)


def shot_name(role: str, target: str, suffix: str) -> str:
    return f"a11y-{role}-{urlsplit(target).path.strip('/').replace('/', '_') or 'home'}-{suffix}.png"


@pytest.mark.parametrize("role", ROLES)
def test_axe_finds_no_serious_violation_and_charts_have_text(
        signed_in: dict[str, Any], demo: Any, axe_path: Path, artifacts: Path, role: str) -> None:
    page, base = signed_in[role], demo[0].url.rstrip("/")
    page.set_viewport_size({"width": 1440, "height": 900})
    problems: list[str] = []
    visited = []
    for target in crawl(page, base):
        visited.append(target)
        page.evaluate(OPEN_DETAILS)  # what is folded away is read too
        page.add_script_tag(path=str(axe_path))
        problems += [f"{target}: {v}" for v in page.evaluate(AXE_RUN)]
        problems += [f"{target}: chart without a text equivalent: {svg}" for svg in page.evaluate(CHARTS_WITHOUT_TEXT)]
    assert len(visited) >= 3, visited
    assert not problems, f"{role}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("language", ["en", "ru"])
@pytest.mark.parametrize("role", ROLES)
def test_phone_pages_do_not_scroll_sideways_and_tables_keep_their_first_column(
        signed_in: dict[str, Any], demo: Any, artifacts: Path, role: str, language: str) -> None:
    page, base = signed_in[role], demo[0].url.rstrip("/")
    page.set_viewport_size({"width": 390, "height": 844})
    if language != "en":
        set_language(page, base, language)
    try:
        problems: list[str] = []
        for target in crawl(page, base):
            overflow = page.evaluate(PAGE_OVERFLOW)
            if overflow > 0:
                problems.append(f"{target}: the page scrolls sideways by {overflow}px")
            problems += [f"{target}: {p}" for p in page.evaluate(STICKY_FIRST_COLUMN)]
            page.screenshot(path=str(artifacts / shot_name(role, target, f"390-{language}")), full_page=True)
        assert not problems, f"{role} ({language}):\n  " + "\n  ".join(problems)
    finally:
        if language != "en":
            set_language(page, base, "en")
        page.set_viewport_size({"width": 1440, "height": 900})


def set_language(page: Any, base: str, language: str) -> None:
    """The account's language, by its picker (the setting is the user's, so the test sets it back)."""
    page.goto(base + "/")
    page.select_option("#language-picker", language)
    page.wait_for_load_state("networkidle")
    assert page.locator("html").get_attribute("lang") == language
