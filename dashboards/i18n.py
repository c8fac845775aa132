"""Every word the pages show, in English and Russian, from one catalog: dashboards/messages/.

The catalog is one file per page (overview.toml, ...) plus common.toml; a key starts with its
file's name ("overview.title"), and every key has a text per language; `{name}` placeholders are
filled by keyword. tests/test_dashboards_i18n.py checks both languages and every key in use.
Numbers, dates and durations are formatted for the language with Babel (CLDR data).

A phrase about a count ("3 steps", "3 шага") is never "{n} steps" in one entry: the languages put
a different word after 1, 2-4 and 5 ("1 шаг", "3 шага", "5 шагов"). It is four entries, one per
CLDR plural category, `key.one`, `key.few`, `key.many`, `key.other` (English fills `few` and `many`
with its `other` text), and a page asks for the phrase with `_.plural("key", count, n=_.num(count))`:
the count picks the entry by the language's rules and the values fill it as `_()` does.
Dates are Babel's "medium" date in both languages; `_.when(value)` says a recent moment
relatively ("2 days ago" / "2 дня назад") inside a `<time>` whose title has the absolute date.
CSV and JSON keep ISO 8601.
"""

from __future__ import annotations

import math
import tomllib
from datetime import UTC, date, datetime, timedelta
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from babel import Locale
from babel import dates as babel_dates
from babel import numbers as babel_numbers
from markupsafe import Markup, escape

LANGUAGES = ("en", "ru")
CATALOG_DIR = Path(__file__).with_name("messages")
RECENT = timedelta(days=7)  # a moment this close to now is said relatively: "2 days ago"
PLURAL_CATEGORIES = ("one", "few", "many", "other")  # CLDR's for English and Russian ("zero", "two" unused)


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


def _decimals(digits: int) -> str:
    return "#,##0" + ("." + "0" * digits if digits else "")


NUM_PATTERNS = tuple(_decimals(d) for d in range(7))


@cache
def _percent_sign(language: str) -> str:
    """What follows the digits in the language's CLDR percent format: "%" in English, "\u00a0%" in Russian."""
    pattern = _locale(language).percent_formats[None].pattern.split(";")[0]
    return pattern[pattern.rindex("0") + 1:]


PCT_PATTERNS = {language: tuple(p + _percent_sign(language) for p in NUM_PATTERNS) for language in LANGUAGES}


def _apply(language: str, pattern: str, value: float | int) -> str:
    return _pattern(pattern).apply(value, _locale(language))


# Babel's apply costs ~37 us a number and a step page formats ~2,000 of them, most of them the same few
# hundred values (counts, ticks, band limits): memoise on the exact input. `typed` keeps 2 and 2.0
# apart; equal floats are the same float except 0.0 and -0.0 (Babel writes "-0"), so -0.0 is never
# looked up (nor stored). Values are formatted as given (never rounded first), so the text is Babel's.
_apply_cached = lru_cache(maxsize=1 << 16, typed=True)(_apply)


def _cacheable(value: object) -> bool:
    kind = type(value)
    return kind is int or (kind is float and (value != 0 or math.copysign(1.0, value) > 0))  # type: ignore[arg-type]


def formatted(language: str, pattern: str, value: float | int) -> str:
    """Babel's `pattern` applied to `value` in `language`, memoised for plain ints and floats."""
    if _cacheable(value):
        return _apply_cached(language, pattern, value)
    return _apply(language, pattern, value)


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
        if not values:
            return text
        if "}." in text:  # "5 дек. 2026 г." ends a sentence with its own full stop (few messages: checked first)
            for name, value in values.items():
                if isinstance(value, str) and value.endswith(".") and "{" + name + "}." in text:
                    text = text.replace("{" + name + "}.", "{" + name + "}")
        if any(isinstance(v, Markup) for v in values.values()):  # e.g. a `when`: the text is escaped around it
            return escape(text).format(**values)
        return text.format(**values)

    def plural(self, key: str, count: int | float, **values: Any) -> str:
        """The entry `key.one|few|many|other` that `count` takes in this language, filled with `values`."""
        category = self._locale.plural_form(abs(count)) if count is not None else "other"
        return self(f"{key}.{category if category in PLURAL_CATEGORIES else 'other'}", **values)

    def num(self, value: float | int | None, digits: int = 0) -> str:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "–"
        pattern = NUM_PATTERNS[digits] if 0 <= digits < len(NUM_PATTERNS) else _decimals(digits)
        return formatted(self.language, pattern, value)

    def typed(self, value: float | int | str | None) -> str:
        """A number as a reader types it into a form field: the language's decimal sign, no grouping,
        at most two decimals ("1,5" in Russian, "1.5" in English); text already typed stays as it is."""
        if value is None or isinstance(value, str):
            return value or ""
        return formatted(self.language, "0.##", value)

    def signed_pct(self, pct: float | None) -> str:
        """A change in percent with its sign, a real minus, whole: "−24%", "+3%", "0%" (every page's
        changes and effects, so that no page writes "-23.6%" beside another's "−24%")."""
        if pct is None:
            return "–"
        rounded = round(pct)
        sign = "−" if rounded < 0 else "+" if rounded > 0 else ""
        return sign + self.pct(abs(rounded) / 100)

    def pct(self, share: float | None, digits: int = 0) -> str:
        if share is None:
            return "–"
        patterns = PCT_PATTERNS[self.language]  # the language's own percent style: "25%", "25 %"
        pattern = patterns[digits] if 0 <= digits < len(patterns) else _decimals(digits) + _percent_sign(self.language)
        return formatted(self.language, pattern, share)

    def money(self, amount: float | None, currency: str) -> str:
        """An amount in an ISO 4217 currency, whole units: '$1,250' / '1 250 ₽'."""
        if amount is None or not currency or not math.isfinite(amount):
            return "–"
        pattern = self._locale.currency_formats["standard"].pattern.split(";")[0].replace(".00", "")
        return babel_numbers.format_currency(amount, currency, format=pattern, locale=self._locale,
                                             currency_digits=False)

    def minutes(self, ms: float | None) -> str:
        """A step time: '4.2 min' / '4,2 мин'; seconds below a minute."""
        if ms is None or (isinstance(ms, float) and not math.isfinite(ms)):
            return "–"
        if _cacheable(ms):  # the same few hundred times (ticks, band limits) on every page
            return _minutes_cached(self.language, ms)
        return _minutes(self, ms)

    def length(self, ms: float | None) -> str:
        """A set length as people say it: '30 min', not the step times' '30.0 min'; '1.5 min', '30 s'."""
        if ms is not None and ms >= 60_000 and ms % 60_000 == 0:
            return self("unit.min", n=self.num(ms / 60_000))
        return self.minutes(ms)

    def hours(self, seconds: float | None) -> str:
        if seconds is None:
            return "–"
        if seconds < 2 * 86400:
            return self("unit.h", n=self.num(seconds / 3600, 1))
        days = round(seconds / 86400, 1)
        return self.plural("unit.d", days, n=self.num(days, 0 if days.is_integer() else 1))

    def date(self, value: date | datetime | str | None) -> str:
        if value is None or value == "":
            return "–"
        if isinstance(value, str):  # a JSON-ready page's ISO date, e.g. an assignment's due date
            value = date.fromisoformat(value[:10])
        if type(value) is date:  # a chart's weeks and days, again and again
            return _date_cached(self.language, value)
        return babel_dates.format_date(value, format="medium", locale=self._locale)

    def datetime(self, value: datetime | str | None) -> str:
        if value is None or value == "":
            return "–"
        if isinstance(value, str):  # a JSON-ready page's ISO time, e.g. "2026-12-05T10:00:00Z"
            value = datetime.fromisoformat(value)
        if value.tzinfo is not None:
            value = value.astimezone(babel_dates.UTC)
        # The day in the same style as `date` (one date style per language), then the time.
        day = babel_dates.format_date(value, format="medium", locale=self._locale)
        time = babel_dates.format_time(value, format="short", tzinfo=babel_dates.UTC, locale=self._locale)
        return f"{day}, {time} UTC"


    def when(self, value: datetime | str | None, now: datetime | None = None) -> Markup | str:
        """A moment as `<time>`: "2 days ago" within a week before now (the absolute time in its
        title), the absolute date and time otherwise."""
        if value is None or value == "":
            return "–"
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)  # the store keeps UTC without a zone
        absolute = self.datetime(value)
        ago = (now or datetime.now(UTC)) - value
        if timedelta(0) <= ago <= RECENT:
            said = babel_dates.format_timedelta(-ago, add_direction=True, locale=self._locale)
            return Markup('<time datetime="{}" title="{}">{}</time>').format(value.isoformat(), absolute, said)
        return Markup('<time datetime="{}">{}</time>').format(value.isoformat(), absolute)


def _minutes(_: Translator, ms: float | int) -> str:
    if round(abs(ms) / 1000) < 60:  # 59.6 s is "1.0 min", as 60.4 s is, not "60 s"
        return _("unit.s", n=_.num(ms / 1000, 0))
    return _("unit.min", n=_.num(ms / 60_000, 1))


@lru_cache(maxsize=1 << 14, typed=True)
def _minutes_cached(language: str, ms: float | int) -> str:
    return _minutes(Translator(language), ms)


@lru_cache(maxsize=4096)
def _date_cached(language: str, value: date) -> str:
    return babel_dates.format_date(value, format="medium", locale=_locale(language))
