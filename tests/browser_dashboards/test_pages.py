"""Every page of the demo renders in Chromium with no console error, for every role; screenshots."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

MAX_PAGES = 40  # per role: every nav page plus a sample of the pages they link to


LINKS = "els => els.map(e => e.getAttribute('href'))"


def crawl(visit: Any, role: str) -> list[str]:
    """Follow same-site links breadth-first from the role's start page (no actions, no exports)."""
    page = visit.page
    seen: list[str] = []
    queue = [urlsplit(page.url).path]
    per_prefix: dict[str, int] = {}
    while queue and len(seen) < MAX_PAGES:
        target = queue.pop(0)
        if target in seen:
            continue
        response = page.goto(visit.base + target)
        assert response is not None and response.status == 200, f"{role} {target}: {response and response.status}"
        assert not visit.errors, f"{role} {target}: {visit.errors}"
        assert page.locator("h1").count() >= 1, f"{role} {target} has no heading"
        seen.append(target)
        visit.shot(f"{role}-{urlsplit(target).path.strip('/').replace('/', '_') or 'home'}")
        for href in page.eval_on_selector_all("main a[href], header a[href]", LINKS):
            parts = urlsplit(href)
            if (parts.netloc or not parts.path.startswith("/") or "format=" in parts.query
                    or parts.path.startswith(("/api/", "/static/"))):
                continue
            prefix = "/".join(parts.path.split("/")[:2])
            link = parts.path + ("?" + parts.query if parts.query else "")
            if per_prefix.get(prefix, 0) >= 4 or link in seen or link in queue:
                continue  # a few managers / steps / flags of each kind are enough
            per_prefix[prefix] = per_prefix.get(prefix, 0) + 1
            queue.append(link)
    return seen


@pytest.mark.parametrize("role", ["admin", "director", "trainer", "manager"])
def test_every_page_renders_without_console_errors(visit: Any, role: str) -> None:
    seen = crawl(visit(role), role)
    assert seen, role
