"""Durations as people type them: "240" (seconds), "90s", "4m", "4m30s", "4 min", "1500ms", "1h",
"2,5" (a decimal comma). One reader for the CLI (`bands set`, `coaching assign --target`,
`eventlog --max-gap`) and the dashboards' band editor, so both take the same text.

No library in the project reads this: Babel formats durations but does not parse them, and
pytimeparse (the common PyPI parser) has no milliseconds and no decimal comma.
"""

from __future__ import annotations

import re

_NUMBER = r"\d+(?:[.,]\d+)?"
_PART = re.compile(rf"({_NUMBER})\s*(ms|h|min|m|s)")
_SCALE = {"ms": 1, "s": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000}
EXAMPLES = "90, 90s, 4m, 4m30s, 1500ms"


def parse(text: str) -> int:
    """The duration in milliseconds; ValueError if `text` is not one (a bare number is seconds)."""
    value = text.strip().lower()
    if re.fullmatch(_NUMBER, value):
        return round(float(value.replace(",", ".")) * 1000)
    parts = _PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != re.sub(r"\s+", "", value):
        raise ValueError(f"not a duration: {text!r} (examples: {EXAMPLES})")
    return round(sum(float(n.replace(",", ".")) * _SCALE[u] for n, u in parts))


def text(ms: int | float | None) -> str:
    """Milliseconds written so that parse() reads them back: 4m30s, 45s, 1500ms ("" for None)."""
    if ms is None:
        return ""
    ms = round(ms)
    if ms % 1000:
        return f"{ms}ms"
    minutes, seconds = divmod(ms // 1000, 60)
    return (f"{minutes}m" if minutes else "") + (f"{seconds}s" if seconds or not minutes else "")
