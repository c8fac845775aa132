"""A director's morning by keyboard alone (Tab, Enter, Space, arrows in a picker): sign in, the
overview, one drawdown, coaching assigned for it, sign out; every element that takes the focus on the way
shows it (an outline or a box shadow), and the skip link leads past the header to the page's content."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

# What the browser shows of the focus: our :focus-visible outline, or a box shadow where a style has one.
FOCUS = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const style = getComputedStyle(el);
  const outline = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0;
  const visible = outline || (style.boxShadow && style.boxShadow !== 'none');
  return {visible, tag: el.tagName.toLowerCase(), name: el.getAttribute('name') || '', type: el.type || '',
          href: el.getAttribute('href') || '', text: (el.innerText || el.value || '').trim().slice(0, 60),
          id: el.id || '', main: !!el.closest('main')};
}"""
MAX_TABS = 400


class Keyboard:
    """Moves the focus with the keyboard only and records each focused element that showed no focus."""

    def __init__(self, page: Any):
        self.page, self.unseen_focus = page, []

    def focused(self) -> dict | None:
        return self.page.evaluate(FOCUS)

    def press(self, key: str) -> dict | None:
        self.page.keyboard.press(key)
        now = self.focused()
        if now and not now["visible"]:
            self.unseen_focus.append(f"{self.page.url}: {now}")
        return now

    def tab_to(self, wanted: Any, what: str) -> dict:
        for _ in range(MAX_TABS):
            now = self.press("Tab")
            if now and wanted(now):
                return now
        raise AssertionError(f"{what}: not reached by Tab on {self.page.url}")


def test_sign_in_overview_drawdown_assign_coaching_sign_out_by_keyboard(
        browser: Any, demo: Any, artifacts: Path) -> None:
    server, accounts = demo
    name, password = accounts["director"]
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-US")
    try:
        page = context.new_page()
        keys = Keyboard(page)
        page.goto(server.url.rstrip("/") + "/login")

        keys.tab_to(lambda f: f["name"] == "name", "the user name")
        page.keyboard.type(name)
        keys.tab_to(lambda f: f["name"] == "password", "the password")
        page.keyboard.type(password)
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert urlpath(page) in ("/", "/overview"), page.url

        # The skip link is the first stop and puts the focus on the content.
        first = keys.press("Tab")
        assert first and first["href"] == "#main", first
        keys.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main"

        # A drawdown of the overview with no coaching under way yet, opened from its link, and its one thing
        # to do: assign coaching (back to the overview where coaching is already under way).
        drawdown = re.compile(r"^/drawdowns/[0-9a-f-]{36}")
        tried: set[str] = set()
        for _ in range(8):
            link = keys.tab_to(lambda f: f["main"] and bool(drawdown.match(f["href"])) and f["href"] not in tried,
                               "a drawdown on the overview")
            tried.add(link["href"])
            with page.expect_navigation():
                page.keyboard.press("Enter")
            assert drawdown.match(urlpath(page)), page.url
            if page.locator("main a[href*='/coaching/new']").count():
                break
            page.go_back()  # the browser's Back: Alt+Left to a person, unbound in headless Chromium
        page.screenshot(path=str(artifacts / "keyboard-drawdown.png"))
        keys.tab_to(lambda f: "/coaching/new" in f["href"], "the drawdown's assign coaching link")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert urlpath(page) == "/coaching/new", page.url
        kind = keys.tab_to(lambda f: f["name"] == "kind", "the kind of coaching")
        if kind["type"] == "radio" and not page.evaluate("document.activeElement.checked"):
            keys.press("Space")
        if page.evaluate("document.activeElement.value") != "mentor_meeting":
            keys.press("ArrowUp")  # the meeting is the first choice of the group
        assert page.evaluate("document.activeElement.value") == "mentor_meeting"
        keys.tab_to(lambda f: f["name"] == "mentor", "the mentor")
        if not page.evaluate("document.activeElement.value"):
            keys.press("ArrowDown")  # the first mentor of the list
        assert page.evaluate("document.activeElement.value")
        keys.tab_to(lambda f: f["tag"] == "button" and f["main"], "the assign button")
        page.screenshot(path=str(artifacts / "keyboard-assign-form.png"), full_page=True)
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert re.match(r"^/coaching/assignments/[0-9a-f-]{36}$", urlpath(page)), (page.url, page.content()[:3000])

        # Sign out: the header's button, reached from the top of the new page.
        keys.tab_to(lambda f: f["tag"] == "button" and not f["main"] and f["text"] == "Sign out", "sign out")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert urlpath(page) == "/login", page.url
        assert not keys.unseen_focus, "focus not visible on:\n  " + "\n  ".join(keys.unseen_focus)
    finally:
        context.close()


def urlpath(page: Any) -> str:
    return re.sub(r"^https?://[^/]+", "", page.url).split("?")[0]
