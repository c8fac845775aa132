"""The catalog: every key used by a template or a page exists, in English and in Russian."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dashboards.i18n import CATALOG_DIR, LANGUAGES, PLURAL_CATEGORIES, Translator, catalog

DASHBOARDS = Path(__file__).resolve().parent.parent / "dashboards"
# _("key"...) in templates and Python; keys built at run time ("role." + viewer.role) are listed below.
USED = re.compile(r"""_\(\s*["']([a-z_]+\.[a-z0-9_.]+)["']""")
# _.plural("key", count, ...) uses key.one, key.few, key.many and key.other.
PLURAL_USED = re.compile(r"""\.plural\(\s*["']([a-z_]+\.[a-z0-9_.]+)["']""")
DYNAMIC_PREFIXES = {
    "role.": ("admin", "director", "trainer", "manager"),
    "error.": ("400", "403", "404", "409", "429", "other"),
    "coaching.state_": ("assigned", "scheduled", "done", "evaluated", "cancelled"),
    "coaching.verdict_": ("improved", "no_change", "worse", "insufficient_data"),
    "coaching.kind_": ("course", "mentor_meeting"),
    "coaching.by_": ("course", "mentor"),
}


def used_keys() -> set[str]:
    keys: set[str] = set()
    for path in [*DASHBOARDS.rglob("*.html"), *DASHBOARDS.rglob("*.py")]:
        text = path.read_text()
        keys.update(k for k in USED.findall(text) if not k.endswith(("_", ".")))  # prefixes: below
        keys.update(f"{k}.{c}" for k in PLURAL_USED.findall(text) for c in PLURAL_CATEGORIES)
    for prefix, names in DYNAMIC_PREFIXES.items():
        keys.update(prefix + name for name in names)
    return keys


def test_every_used_key_is_in_the_catalog() -> None:
    missing = sorted(used_keys() - catalog().keys())
    assert not missing, f"add to dashboards/messages/: {missing}"


def test_every_entry_has_every_language_and_the_same_placeholders() -> None:
    for key, entry in catalog().items():
        assert set(entry) == set(LANGUAGES), key
        placeholders = {lang: set(re.findall(r"{(\w+)}", entry[lang])) for lang in LANGUAGES}
        assert placeholders["en"] == placeholders["ru"], key


def test_a_percent_written_into_a_message_takes_its_languages_style() -> None:
    """"40%" in English, "40 %" (no-break space) in Russian, as the Translator writes computed ones."""
    for language in LANGUAGES:
        sign = Translator(language).pct(0.4).removeprefix("40")
        for key, entry in catalog().items():
            for written in re.findall(r"\d[\u00a0\u202f ]?%", entry[language]):
                assert written[1:] == sign, (key, language, written)


def test_a_count_takes_the_plural_form_of_its_language() -> None:
    en, ru = Translator("en"), Translator("ru")
    said = {n: (en.plural("step.history_caption", n, n=en.num(n)), ru.plural("step.history_caption", n, n=ru.num(n)))
            for n in (1, 2, 5, 11, 21, 22, 25)}
    assert said[1] == ("1 version, newest first", "1 версия, сначала новые")
    assert said[2] == ("2 versions, newest first", "2 версии, сначала новые")
    assert said[5] == ("5 versions, newest first", "5 версий, сначала новые")
    assert said[11][1].startswith("11 версий") and said[21][1].startswith("21 версия")
    assert said[22][1].startswith("22 версии") and said[25][1].startswith("25 версий")
    assert en.plural("overview.team_group", 1, team="A", n="1") == "Team A (1 manager)"
    drawdowns = [ru.plural("drawdowns.caption_impact", n, n=ru.num(n)).split(",")[0] for n in (1, 2, 5, 21)]
    assert drawdowns == ["1 просадка", "2 просадки", "5 просадок", "21 просадка"]
    assert en.plural("verdict.slower_than_peers", 1, k="1", n="1") == "inside the band, slower than 1 of 1 teammate"
    assert ru.plural("verdict.slower_than_peers", 1, k="1", n="1") == "в пределах нормы, но медленнее 1 из 1 коллеги"
    assert ru.plural("verdict.slower_than_peers", 5, k="3", n="5").endswith("3 из 5 коллег")
    assert ru.plural("drawdowns.caption_impact", 1.5, n=ru.num(1.5, 1)).startswith("1,5 просадки")


def test_every_plural_phrase_has_every_category() -> None:
    families = {key.rsplit(".", 1)[0] for key in catalog() if key.rsplit(".", 1)[-1] in PLURAL_CATEGORIES[:3]}
    for family in families:
        missing = [c for c in PLURAL_CATEGORIES if f"{family}.{c}" not in catalog()]
        assert not missing, f"{family}: no {missing}"


def test_keys_start_with_their_file_name() -> None:
    import tomllib

    for path in CATALOG_DIR.glob("*.toml"):
        if path.stem == "common":
            continue
        for key in tomllib.loads(path.read_text()):
            assert key.startswith(path.stem + "."), f"{path.name}: {key}"


def test_numbers_and_dates_follow_the_language() -> None:
    from datetime import date

    en, ru = Translator("en"), Translator("ru")
    assert en.num(12345.6, 1) == "12,345.6"
    assert ru.num(12345.6, 1).replace("\xa0", " ") == "12 345,6"
    assert en.minutes(252_000) == "4.2\xa0min" and ru.minutes(252_000) == "4,2\xa0мин"
    # a time that rounds to 60 s is a minute, as its neighbours above are: never "60 s" beside "1.0 min"
    assert [en.minutes(ms) for ms in (59_400, 59_600, 60_400)] == ["59\xa0s", "1.0\xa0min", "1.0\xa0min"]
    assert en.date(date(2026, 11, 23)) == "Nov 23, 2026"
    assert ru.date(date(2026, 11, 23)).startswith("23 нояб. 2026")
    assert en.pct(0.25) == "25%"


def test_a_set_length_is_said_as_people_say_it_and_a_typed_number_as_they_type_it() -> None:
    en, ru = Translator("en"), Translator("ru")
    assert en.length(1_800_000) == "30\xa0min" and ru.length(1_800_000) == "30\xa0мин"  # not "30.0 min"
    assert en.length(90_000) == "1.5\xa0min" and en.length(30_000) == "30\xa0s" and en.length(None) == "–"
    assert en.typed(1.5) == "1.5" and ru.typed(1.5) == "1,5" and ru.typed(1440.0) == "1440"  # no grouping
    assert ru.typed("1.25") == "1.25" and en.typed(None) == ""  # what was typed stays as typed


def test_percentages_take_the_languages_own_style_as_babel_writes_them() -> None:
    from babel.numbers import format_percent

    en, ru = Translator("en"), Translator("ru")
    assert (en.pct(0.09), en.pct(-0.308, 1)) == ("9%", "-30.8%")
    assert (ru.pct(0.09), ru.pct(-0.308, 1)) == ("9\u00a0%", "-30,8\u00a0%")  # not "9%" beside "-30,8 %"
    for language in LANGUAGES:
        assert Translator(language).pct(0.25) == format_percent(0.25, locale=language)


# Ties that Babel rounds half-even on Decimal(str(value)) (2.675 -> 2.68, 0.125 -> 0.12, 2.5 -> 2) where
# Python's round() on the binary float does otherwise, signed zeros, big and negative values, ints.
HARD_VALUES = [2.675, -2.675, 0.125, -0.125, 0.5, 1.5, 2.5, -2.5, 0.045, 1.005, 12345.6785, 1e6, -1e6, 1e15,
               0.0, -0.0, -0.4, 0.0004, -0.0004, 0, 1, -1, 2, 2.0, 1_234_567, -1234.5, 0.9999, 59_999.5]


def _babel(language: str, pattern: str, value: object) -> str:
    from babel import Locale
    from babel.numbers import parse_pattern

    return parse_pattern(pattern).apply(value, Locale.parse(language))  # no cache of ours involved


def test_memoised_numbers_are_exactly_babels() -> None:
    from decimal import Decimal

    values = [*HARD_VALUES, Decimal("2.675"), Decimal("-0"), Decimal("2.50")]
    for language in LANGUAGES:
        _ = Translator(language)
        for digits in range(5):
            pattern = "#,##0" + ("." + "0" * digits if digits else "")
            for _round in range(2):  # the second time from the memo
                for value in values:
                    assert _.num(value, digits) == _babel(language, pattern, value), (language, digits, value)
                    sign = "%" if language == "en" else "\u00a0%"  # CLDR's percent formats: "#,##0%", "#,##0 %"
                    assert _.pct(value, digits) == _babel(language, pattern + sign, value), (language, digits, value)


def test_a_negative_zero_stays_negative_after_a_zero_was_memoised() -> None:
    # 0.0 == -0.0 and both hash alike, but Babel writes "0" and "-0": a memo keyed on equality alone
    # would answer the second from the first.
    for language in LANGUAGES:
        _ = Translator(language)
        assert (_.num(0.0), _.num(-0.0), _.num(0.0)) == ("0", "-0", "0")
        assert _.pct(0.0).replace("\u00a0", "") == "0%" and _.pct(-0.0).replace("\u00a0", "") == "-0%"
        assert _.minutes(0.0).startswith("0") and _.minutes(-0.0).startswith("-0")
        assert _.num(2, 1) == _.num(2.0, 1) == _babel(language, "#,##0.0", 2.0)


def test_minutes_match_the_unmemoised_formatting() -> None:
    from dashboards import i18n

    for language in LANGUAGES:
        _ = Translator(language)
        for ms in [0, 1, 499.999, 500, 1500, 2500, 59_499, 59_500, 59_999, 60_000, 62_999, 63_000, 65_999.9, 66_000,
                   252_000, 3_600_000, -90_000, -0.0, 0.0, 14_400_000.5]:
            for _round in range(2):
                assert _.minutes(ms) == i18n._minutes(_, ms), (language, ms)
                if _babel(language, "#,##0", abs(ms) / 1000) != "60" and abs(ms) < 60_000:  # never "60 s"
                    expected = _("unit.s", n=_babel(language, "#,##0", ms / 1000))
                else:
                    expected = _("unit.min", n=_babel(language, "#,##0.0", ms / 60_000))
                assert _.minutes(ms) == expected, (language, ms)


def test_a_number_already_formatted_is_not_formatted_by_babel_again(monkeypatch) -> None:
    from babel.numbers import NumberPattern

    calls = []
    apply = NumberPattern.apply

    def counted(self, value, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(value)
        return apply(self, value, *args, **kwargs)

    monkeypatch.setattr(NumberPattern, "apply", counted)
    _ = Translator("ru")
    value = 98_765.4321  # a value no other test formats
    first = [_.num(value, 2), _.pct(value, 1), _.minutes(value)]
    assert len(calls) == 3
    assert [_.num(value, 2), _.pct(value, 1), _.minutes(value)] == first
    assert len(calls) == 3  # all three from the memo
    assert Translator("ru").num(value, 2) == first[0] and len(calls) == 3  # shared by every page of the language
    assert Translator("en").num(value, 2) == "98,765.43" and len(calls) == 4


def test_memoised_dates_are_exactly_babels() -> None:
    from datetime import UTC, date, datetime, timedelta

    from babel import Locale
    from babel.dates import format_date

    days = [date(2026, 1, 1) + timedelta(days=37 * i) for i in range(12)]
    for language in LANGUAGES:
        _ = Translator(language)
        for _round in range(2):
            for day in days:
                assert _.date(day) == format_date(day, format="medium", locale=Locale.parse(language))
            moment = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)  # a datetime is formatted as before, not memoised
            assert _.date(moment) == format_date(moment, format="medium", locale=Locale.parse(language))


@pytest.mark.parametrize("language", ["en", "ru"])
def test_a_time_is_written_with_the_same_date_style_as_a_day(language: str) -> None:
    from datetime import UTC, date, datetime

    _ = Translator(language)
    moment = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
    assert _.datetime(moment).startswith(_.date(date(2026, 11, 20)) + ", ")
    assert _.datetime("2026-11-20T23:30:00Z") == _.datetime(moment) and _.date("2026-11-20") == _.date(moment)


def test_a_recent_moment_is_said_relatively_with_the_absolute_time_in_its_title() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    en, ru = Translator("en"), Translator("ru")
    two_days = now - timedelta(days=2)
    assert en.when(two_days, now=now) == ('<time datetime="2026-12-02T12:00:00+00:00" '
                                          'title="Dec 2, 2026, 12:00\u202fPM UTC">2 days ago</time>')
    assert ">2 дня назад</time>" in ru.when(two_days, now=now)
    assert ">5 дней назад</time>" in ru.when(now - timedelta(days=5), now=now)
    assert ">3 часа назад</time>" in ru.when(datetime(2026, 12, 4, 9, 0), now=now)  # the store's naive UTC
    old = en.when(now - timedelta(days=8), now=now)  # beyond a week: the date itself, no title
    assert old == '<time datetime="2026-11-26T12:00:00+00:00">Nov 26, 2026, 12:00\u202fPM UTC</time>'
    assert en.when("2026-12-03T12:00:00+00:00", now=now).endswith(">1 day ago</time>")
    assert en.when(None) == "–"


def test_a_message_escapes_its_words_around_a_time_and_keeps_the_time_as_markup() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    _ = Translator("en")
    said = _("process.summary", title="<b>", process="p", version="1", at=_.when(now - timedelta(hours=3), now=now),
             by="a&b")
    assert said.startswith("&lt;b&gt; (p), version 1, loaded <time datetime=") and said.endswith("by a&amp;b.")
    assert ">3 hours ago</time>" in said


def test_a_date_that_ends_in_a_full_stop_ends_the_sentence_with_it() -> None:
    """Russian dates end in "г.": a message that ends with one gets no second full stop."""
    from datetime import UTC, date, datetime

    ru, en = Translator("ru"), Translator("en")
    since, until = date(2026, 11, 22), date(2026, 12, 5)
    assert ru("me.analysed_window", since=ru.date(since), until=ru.date(until)) == \
        "Последний анализ: 22 нояб. 2026\u202fг. – 5 дек. 2026\u202fг."
    assert en("me.analysed_window", since=en.date(since), until=en.date(until)) == \
        "Latest analysis: Nov 22, 2026 – Dec 5, 2026."
    at = ru.when(datetime(2026, 11, 1, 9, 0, tzinfo=UTC), now=datetime(2026, 12, 4, 12, 0, tzinfo=UTC))
    assert ru("me.analysed_window", since=ru.date(since), until=at).endswith("UTC</time>.")  # its own stop
    # every message of the catalogue that ends with a placeholder and a full stop, filled with a date
    for key, entry in catalog().items():
        text = entry.get("ru", "")
        for name in re.findall(r"\{(\w+)\}\.", text):
            filled = ru(key, **{n: ru.date(until) if n == name else "x" for n in re.findall(r"\{(\w+)\}", text)})
            assert "г.." not in filled, key


def test_counts_in_captions_agree_with_their_number() -> None:
    en, ru = Translator("en"), Translator("ru")
    assert en.plural("unit.d", 1, n="1") == "1\xa0day" and en.hours(3 * 86400) == "3\xa0days"
    assert [ru.plural("overview.count_managers", n, n=n) for n in (1, 3, 5, 21)] == [
        "1 менеджер", "3 менеджера", "5 менеджеров", "21 менеджер"]
    assert ru.plural("overview.legend_few", 21, n=21) == "меньше 21 сессии: не оценивается"
    assert ru.plural("overview.legend_few", 5, n=5) == "меньше 5 сессий: не оценивается"
    assert en.plural("charts.boxes_label", 1, label="Offer", n="1").startswith("Offer: 1 manager,")
    assert ru.plural("overview.drifting_counts", 1, slow="1", watch="0", n="1").endswith("из 1 менеджера")


def test_the_russian_overview_calls_a_flag_a_drawdown_as_its_labels_do() -> None:
    # "Открытые просадки", "Медианное время до устранения просадки": a hint under them that counted
    # "флагов" named the same thing with an internal word.
    jargon = {key: entry["ru"] for key, entry in catalog().items()
              if key.startswith("overview.") and re.search(r"\bфлаг", entry["ru"])}
    assert jargon == {}
