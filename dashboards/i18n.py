"""Every word the pages show, in English and Russian, from one catalog: dashboards/messages/.

The catalog is one file per page (overview.toml, ...) plus common.toml; a key starts with its
file's name ("overview.title"), and every key has a text per language; `{name}` placeholders are
filled by keyword. tests/test_dashboards_i18n.py checks both languages and every key in use.
Numbers, dates and durations are formatted for the language with Babel (CLDR data).
"""

from __future__ import annotations

import math
import tomllib
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any

from babel import Locale
from babel import dates as babel_dates
from babel import numbers as babel_numbers

LANGUAGES = ("en", "ru")
CATALOG_DIR = Path(__file__).with_name("messages")


@cache
def catalog() -> dict[str, dict[str, str]]:
    merged: dict[str, dict[str, str]] = {}
    for path in sorted(CATALOG_DIR.glob("*.toml")):
        with path.open("rb") as fh:
            entries = tomllib.load(fh)
        clash = merged.keys() & entries.keys()
        if clash:
            raise ValueError(f"{path.name} repeats message keys: {', '.join(sorted(clash))}")
        merged.update(entries)
    return merged


@cache
def _locale(language: str) -> Locale:
    return Locale.parse(language)


@cache
def _pattern(pattern: str) -> babel_numbers.NumberPattern:
    return babel_numbers.parse_pattern(pattern)  # a page formats thousands of numbers with a handful of patterns


class Translator:
    """`_("key", n=3)` and the formatters of one language, handed to every template."""

    def __init__(self, language: str):
        self.language = language if language in LANGUAGES else "en"
        self._locale = _locale(self.language)  # Babel parses a locale name on every call otherwise

    def __call__(self, key: str, **values: Any) -> str:
        entry = catalog().get(key)
        if entry is None:
            raise KeyError(f"message {key!r} is missing from dashboards/messages/")
        text = entry.get(self.language) or entry["en"]
        return text.format(**values) if values else text

    def num(self, value: float | int | None, digits: int = 0) -> str:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "–"
        pattern = "#,##0" + ("." + "0" * digits if digits else "")
        return _pattern(pattern).apply(value, self._locale)

    def pct(self, share: float | None, digits: int = 0) -> str:
        if share is None:
            return "–"
        pattern = "#,##0" + ("." + "0" * digits if digits else "") + "%"
        return _pattern(pattern).apply(share, self._locale)

    def minutes(self, ms: float | None) -> str:
        """A step time: '4.2 min' / '4,2 мин'; seconds below a minute."""
        if ms is None or (isinstance(ms, float) and not math.isfinite(ms)):
            return "–"
        if abs(ms) < 60_000:
            return self("unit.s", n=self.num(ms / 1000, 0))
        return self("unit.min", n=self.num(ms / 60_000, 1))

    def hours(self, seconds: float | None) -> str:
        if seconds is None:
            return "–"
        if seconds < 2 * 86400:
            return self("unit.h", n=self.num(seconds / 3600, 1))
        return self("unit.d", n=self.num(seconds / 86400, 1))

    def date(self, value: date | datetime | None) -> str:
        if value is None:
            return "–"
        return babel_dates.format_date(value, format="medium", locale=self._locale)

    def datetime(self, value: datetime | None) -> str:
        if value is None:
            return "–"
        return babel_dates.format_datetime(value, format="short", tzinfo=babel_dates.UTC, locale=self._locale) + " UTC"
