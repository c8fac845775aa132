"""The catalog: every key used by a template or a page exists, in English and in Russian."""

from __future__ import annotations

import re
from pathlib import Path

from dashboards.i18n import CATALOG_DIR, LANGUAGES, Translator, catalog

DASHBOARDS = Path(__file__).resolve().parent.parent / "dashboards"
# _("key"...) in templates and Python; keys built at run time ("role." + viewer.role) are listed below.
USED = re.compile(r"""_\(\s*["']([a-z_]+\.[a-z0-9_.]+)["']""")
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
        keys.update(k for k in USED.findall(path.read_text()) if not k.endswith(("_", ".")))  # prefixes: below
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
    assert en.minutes(252_000) == "4.2 min" and ru.minutes(252_000) == "4,2 мин"
    assert en.date(date(2026, 11, 23)) == "Nov 23, 2026"
    assert ru.date(date(2026, 11, 23)).startswith("23 нояб. 2026")
    assert en.pct(0.25) == "25%"
