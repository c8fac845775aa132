"""Every GET page of the demo, for every role, in English and in Russian, read as a person reads it.

The visible text of `main` (Playwright's inner_text: no attributes, no JSON) must have no catalog key,
no ISO date or timestamp, no UUID, no Python value, no count disagreeing with its noun ("1 drawdowns",
"5 просадка") and, in Russian, no English catalog text. A screenshot of every Russian page is kept in
test-artifacts/screenshots/words-ru-<role>-<page>.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from babel import Locale

from dashboards.i18n import CATALOG_DIR, catalog

ROLES = ("admin", "director", "trainer", "manager")
LANGUAGES = ("en", "ru")
# page name -> (listing to find it on or the path itself, link pattern for pages with an id)
PAGES: dict[str, tuple[tuple[str, ...], str | None]] = {
    "overview": (("/overview",), None),
    "drawdowns": (("/drawdowns",), None),
    "drawdown": (("/drawdowns",), r"^/drawdowns/[^/?#]+$"),
    "managers": (("/managers",), None),
    # a director reaches managers from the overview, a trainer from a step's table, a manager from /me
    "manager": (("/managers", "/overview", "@step", "/me"), r"^/managers/[^/?#]+$"),
    "me": (("/me",), None),
    "steps": (("/steps",), None),
    "step": (("/steps",), r"^/steps/[^/?#]+$"),
    "process": (("/process",), None),
    "process_tester": (("/process?test=/clients/4711/offerz",), None),  # the URL tester's answer
    "audit": (("/audit",), None),
    "coaching": (("/coaching",), None),
    "assignment": (("/coaching", "/me"), r"^/coaching/assignments/[^/?#]+$"),
    "catalog": (("/coaching/catalog",), None),
    "effectiveness": (("/coaching/effectiveness",), None),
    "new_assignment": (("/coaching/new",), None),
    "flow": (("/flow",), None),
    "extension": (("/extension",), None),
    "extension_setup": (("/extension/setup",), None),
}

ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
ISO_DATE = re.compile(r"(?<![\d-])\d{4}-\d{2}-\d{2}(?![\d-])")
UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE)
PYTHON = re.compile(r"\b(?:True|False|None)\b|[{}]|\[\s*['\"\d{\]]|\[\w+\]")
STEMS = "|".join(sorted({p.stem for p in CATALOG_DIR.glob("*.toml")} | {k.split(".")[0] for k in catalog()}))
KEY = re.compile(rf"\b(?:{STEMS})\.[a-z0-9_]+(?:\.[a-z0-9_]+)*\b")
NUMBER = r"(?<![\d.,])(?<!\d[\u00a0\u202f ])(\d{1,3}(?:[\u00a0\u202f ]\d{3})*|\d+)"
EN_NOUNS = ("session", "manager", "step", "version", "drawdown", "flag", "assignment", "day", "week", "person",
            "note", "question", "teammate", "hour", "minute", "team", "course", "visit")
EN_ONE_PLURAL = re.compile(rf"{NUMBER} ({'|'.join(n + 's' for n in EN_NOUNS)}|people)\b")
EN_MANY_SINGULAR = re.compile(rf"{NUMBER} ({'|'.join(EN_NOUNS)})\b(?!-)")
# Russian nouns by (one, few, many) form: 1 шаг, 2 шага, 5 шагов.
RU_FORMS = [
    ("просадка", "просадки", "просадок"), ("менеджер", "менеджера", "менеджеров"), ("шаг", "шага", "шагов"),
    ("сессия", "сессии", "сессий"), ("версия", "версии", "версий"), ("назначение", "назначения", "назначений"),
    ("задание", "задания", "заданий"),
    ("флаг", "флага", "флагов"), ("день", "дня", "дней"), ("неделя", "недели", "недель"),
    ("заметка", "заметки", "заметок"), ("вопрос", "вопроса", "вопросов"), ("коллега", "коллеги", "коллег"),
    ("человек", "человека", "человек"), ("команда", "команды", "команд"), ("курс", "курса", "курсов"),
    ("минута", "минуты", "минут"), ("час", "часа", "часов"), ("запись", "записи", "записей"),
]
RU_WORD = {form: forms for forms in RU_FORMS for form in forms}
# A count governed by another word takes the genitive ("из 4 недель", "распределение 42 сессий",
# "из 1 шага"), so 2-4 with the many form and 1 with the few form are right in some sentences; the
# pairs below are wrong in every sentence ("1 просадок", "5 просадка", "5 шага", "3 шаг").
RU_WRONG = {("one", "many"), ("many", "one"), ("many", "few"), ("few", "one"), ("other", "one")}
RU_COUNT = re.compile(rf"{NUMBER} ({'|'.join(sorted(RU_WORD, key=len, reverse=True))})(?![а-яё])")
RU = Locale.parse("ru")


def _literal_fragments(text: str) -> list[str]:
    return [part.strip(" .,:;()–—") for part in re.split(r"\{\w+\}", text)]


# English words of the catalog that a Russian page must not show: literal runs longer than 12 characters
# of entries whose Russian text differs (a product name or "CSV" reads the same in both).
ENGLISH_ONLY = sorted({frag for entry in catalog().values() if entry["en"] != entry["ru"]
                       for frag in _literal_fragments(entry["en"])
                       if len(frag) > 12 and frag not in entry["ru"] and re.search(r"[a-z]{3}", frag)},
                      key=len, reverse=True)


def problems(text: str, language: str) -> list[str]:
    """What a reader should not see in the visible text of a page."""
    found: list[str] = []
    found += [f"catalog key {m}" for m in KEY.findall(text)]
    found += [f"ISO timestamp {m}" for m in ISO_TIME.findall(text)]
    found += [f"ISO date {m}" for m in ISO_DATE.findall(text) if not ISO_TIME.search(text)]
    found += [f"UUID {m}" for m in UUID.findall(text)]
    found += [f"Python value {m.group(0)!r} in …{text[max(0, m.start() - 30):m.end() + 30]!r}…"
              for m in PYTHON.finditer(text)]
    spaced, tight = re.findall(r"\d[\u00a0\u202f ]%", text), re.findall(r"\d%", text)
    if spaced and tight:  # "9%" next to "-30,8 %": one percent style per language, the Translator's
        found.append(f"percent written two ways: {tight[0]!r} and {spaced[0]!r}")
    if language == "en":
        found += [f"count and noun disagree: {m.group(0)!r}" for m in EN_ONE_PLURAL.finditer(text)
                  if _integer(m.group(1)) == 1]
        found += [f"count and noun disagree: {m.group(0)!r}" for m in EN_MANY_SINGULAR.finditer(text)
                  if _integer(m.group(1)) != 1]
    else:
        for m in RU_COUNT.finditer(text):
            n, word = _integer(m.group(1)), m.group(2)
            one, few, many = RU_WORD[word]
            category = RU.plural_form(n)
            form = "one" if word == one else "few" if word == few else "many"
            wanted = {"one": one, "few": few}.get(category, many)
            if word != wanted and (category, form) in RU_WRONG and word != "человек":  # 1 and 5 человек alike
                found.append(f"count and noun disagree: {m.group(0)!r} (wants {wanted!r})")
        found += [f"English text in Russian: {frag!r}" for frag in ENGLISH_ONLY if frag in text]
    return found


def _integer(digits: str) -> int:
    return int(re.sub(r"\D", "", digits))


def test_the_sweep_sees_what_a_reader_should_not() -> None:
    """The checks themselves, on text written to fail each of them (and on text that must pass)."""
    assert problems("Open drawdowns: 3. 1 version, 5 versions, 1.5 days, 12 managers", "en") == []
    assert problems("1 версия, 3 версии, 5 версий, 11 версий, 21 версия, 1 250 сессий, 2 человека", "ru") == []
    bad_en = problems("overview.title 2026-12-04T10:00 on 2026-12-04 by 3f2b6c1e-8a7d-4c1b-9e2f-0a1b2c3d4e5f "
                      "None ['a'] {n} 1 drawdowns 3 version", "en")
    assert [p.split(" ")[0] for p in bad_en].count("count") == 2
    for word in ("catalog key", "ISO timestamp", "UUID", "Python value"):
        assert any(p.startswith(word) for p in bad_en), (word, bad_en)
    bad_ru = problems("1 просадок, 5 просадка, 22 шаг, 9% и -30,8 %", "ru")
    assert problems("медленнее 4 из 12 коллег, в 3 из последних 4 недель, распределение 42 сессий", "ru") == []
    assert len(bad_ru) == 4 and bad_ru[0].startswith("percent written two ways"), bad_ru
    english = ENGLISH_ONLY[0]
    assert problems(f"Страница: {english}", "ru") == [f"English text in Russian: {english!r}"] or \
        any(p.startswith("English text") for p in problems(f"Страница: {english}", "ru"))


class Session:
    """One signed-in browser context per role, switched between languages with the page's own picker."""

    def __init__(self, visit: Any):
        self.visit, self.page = visit, visit.page
        self.language = "en"
        self.urls: dict[str, str | None] = {}

    def set_language(self, language: str) -> None:
        if self.language == language:
            return
        with self.page.expect_navigation():
            self.page.select_option("#language-picker", language)
        self.page.wait_for_function(f"document.documentElement.lang === '{language}'")
        self.language = language

    def url_of(self, name: str) -> str | None:
        """The page's path for this role, None when the role cannot open it or it has no instance.
        A listing that fails (500) is an error of that page: raised as ServerError."""
        if name not in self.urls:
            listings, pattern = PAGES[name]
            found: str | None = None
            for listing in listings:
                if listing.startswith("@"):  # the page found for another name, e.g. a step's managers
                    listing = self.url_of(listing[1:]) or ""
                    if not listing:
                        continue
                response = self.page.goto(self.visit.base + listing)
                assert response is not None
                if response.status >= 500:
                    raise ServerError(f"{listing}: {response.status}")
                if response.status != 200:
                    continue
                if pattern is None:
                    found = listing
                    break
                hrefs = self.page.eval_on_selector_all("main a[href]", "els => els.map(e => e.getAttribute('href'))")
                links = [h for h in hrefs if h and "format=" not in h]
                found = next((h for h in links if re.match(pattern, urlsplit(h).path)), None)
                if found:
                    break
            self.urls[name] = found  # not kept after a ServerError: each language reports it
        return self.urls[name]


class ServerError(Exception):
    pass


@pytest.fixture(scope="module")
def sessions(browser: Any, demo: Any, artifacts: Any) -> Iterator[dict[str, Session]]:
    from tests.browser_dashboards.conftest import Visit

    server, accounts = demo
    opened: dict[str, Session] = {}
    for role in ROLES:
        v = Visit(browser, server.url, artifacts)
        v.login(*accounts[role])
        v.role = role
        opened[role] = Session(v)
    yield opened
    for s in opened.values():  # the language is the account's: the package's other tests read English
        if s.language != "en":
            s.page.goto(s.visit.base + "/coaching")  # a page every role opens, with the picker
            s.language = s.page.evaluate("document.documentElement.lang")
            s.set_language("en")
        s.visit.close()


@pytest.mark.parametrize(("language", "role", "name"),
                         [(lang, role, name) for lang in LANGUAGES for role in ROLES for name in PAGES])
def test_every_page_reads_as_words_of_its_language(sessions: dict[str, Session], language: str, role: str,
                                                   name: str) -> None:
    session = sessions[role]
    url = session.url_of(name)
    if url is None:
        pytest.skip(f"{role} has no {name} page in the demo")
    session.set_language(language)
    response = session.page.goto(session.visit.base + url)
    assert response is not None
    assert response.status == 200, f"{role} {url}: {response.status}"
    assert session.page.evaluate("document.documentElement.lang") == language
    # What a reader reads; code (a URL pattern such as /clients/{customer}) is shown as written.
    text = session.page.locator("main").evaluate(
        "m => { const c = m.cloneNode(true); c.querySelectorAll('code, pre, kbd, samp').forEach(e => e.remove());"
        " document.body.appendChild(c); const t = c.innerText; c.remove(); return t; }")
    if language == "ru":
        session.visit.shot(f"words-ru-{role}-{name}")
    found = problems(text, language)
    assert not found, f"{role} {url} ({language}): {found}"
