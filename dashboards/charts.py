"""Charts drawn on the server as SVG: no script, no styles inline, every text escaped.

    bullet(...)     a step's median against its band: min, reference, max (linear scale)
    histogram(...)  the distribution of session times on a log time scale, the band shaded behind
    boxes(...)      one row per manager: P10-P90 whisker, P25-P75 box, median, on one log scale
    weekly(...)     weekly medians over time, the band drawn as a shaded area

Each returns markupsafe.Markup: an <svg role="img"> with an aria-label and a <title> that say
what it shows, and the values written as text in the drawing. Colours are the Okabe-Ito palette
(safe for the common colour-vision deficiencies) and never carry meaning alone: a median above the
band is also a ▲ and the word, below is a ▼. Words come from messages/charts.toml through the
page's Translator, so a chart speaks the viewer's language.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

from babel import dates as babel_dates
from markupsafe import Markup, escape

from dashboards.i18n import Translator

SVG_NS = "http://www.w3.org/2000/svg"
INK, MUTED, GRID = "#1b1f24", "#57606a", "#d0d7de"
BLUE, VERMILLION, GREEN, ORANGE, SKY = "#0072b2", "#d55e00", "#009e73", "#e69f00", "#56b4e9"
BAND_FILL, BELOW_FILL, ABOVE_FILL = "#d5ede5", "#e3eef7", "#fbe9cf"  # tints of green, blue, orange
TRIGGER_FILL = "#e4e4e4"  # days a before/after chart shows but compares in neither window
# Nice ticks of a time axis (ms): 1 s ... 4 h.
TIME_TICKS = (1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 60_000, 120_000, 300_000, 600_000, 1_200_000,
              1_800_000, 3_600_000, 7_200_000, 14_400_000)


@dataclass(frozen=True)
class Limits:
    """A band in milliseconds, as the charts need it."""

    min_ms: float
    reference_ms: float
    max_ms: float


@dataclass(frozen=True)
class BoxRow:
    label: str
    n: int
    p10_ms: float
    p25_ms: float
    median_ms: float
    p75_ms: float
    p90_ms: float
    band: Limits | None


def position(value: float | None, band: Limits | None) -> str | None:
    """'below', 'within' or 'above' the band; None without a value or a band."""
    if value is None or band is None:
        return None
    return "above" if value > band.max_ms else "below" if value < band.min_ms else "within"


# --- drawing helpers -------------------------------------------------------------------------------------------


def _n(x: float) -> str:
    text = f"{x:.1f}" if math.isfinite(x) else "0"
    return text[:-2] if text.endswith(".0") else text


class _AttributeNames(dict[str, str]):
    """`class_` -> class, `stroke_width` -> stroke-width, worked out once per keyword."""

    def __missing__(self, key: str) -> str:
        name = self[key] = key.rstrip("_").replace("_", "-")
        return name


_NAMES = _AttributeNames()
# Markup(text) for a str that is already escaped, without Markup.__new__'s checks (a chart makes thousands)
_new_str = str.__new__


def _join(items: Iterable[Markup]) -> Markup:
    """Markup("").join(items), without escape() on each item when every one is Markup already."""
    items = list(items)
    if all(type(item) is Markup for item in items):
        return _new_str(Markup, "".join(items))
    return Markup("").join(items)


def _el(tag: str, content: str | Markup = "", **attrs: object) -> Markup:
    """One element; attribute names `class_` -> class, `stroke_width` -> stroke-width; values escaped.

    A chart writes thousands of attributes, nearly all of them plain numbers: an int's or a float's
    text (digits, '-', '.') has nothing to escape, so only other values go through escape()."""
    parts = [tag]
    for key, value in attrs.items():
        if value is None:
            continue
        kind = type(value)
        if kind is float:
            parts.append(f'{_NAMES[key]}="{_n(value)}"')  # type: ignore[arg-type]
        elif kind is int:
            parts.append(f'{_NAMES[key]}="{value}"')
        else:
            text = _n(value) if isinstance(value, float) else str(value)  # a float subclass is written as a float
            parts.append(f'{_NAMES[key]}="{escape(text)}"')
    opening = "<" + " ".join(parts)
    if not content:
        return _new_str(Markup, opening + "/>")
    inner = content if type(content) is Markup else escape(content)
    return _new_str(Markup, f"{opening}>{inner}</{tag}>")


def _text(x: float, y: float, text: str, *, anchor: str = "start", size: int | None = None,
          weight: str | None = None, fill: str | None = None) -> Markup:
    return _el("text", text, x=x, y=y, text_anchor=anchor, font_size=size, font_weight=weight, fill=fill)


def _svg(width: int, height: int, label: str, body: Iterable[Markup], css: str) -> Markup:
    inner = _join(body)
    return Markup(
        f'<svg xmlns="{SVG_NS}" class="chart {escape(css)}" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-label="{escape(label)}">'
    ) + _el("title", label) + inner + Markup("</svg>")


def _mark(kind: str | None, x: float, y: float, size: float = 5) -> Markup:
    """The shape of a position: ▲ above the band, ▼ below, ● within (or no band)."""
    if kind in ("above", "below"):
        tip, base = (y - size, y + size) if kind == "above" else (y + size, y - size)
        return _el("polygon", points=f"{_n(x - size)},{_n(base)} {_n(x + size)},{_n(base)} {_n(x)},{_n(tip)}",
                   fill=VERMILLION if kind == "above" else BLUE, stroke=INK, stroke_width=0.5)
    return _el("circle", cx=x, cy=y, r=size * 0.8, fill=INK if kind is None else GREEN, stroke=INK, stroke_width=0.5)


_SYMBOL = {"above": "▲", "below": "▼", "within": "●"}


def _word(_: Translator, kind: str | None) -> str:
    return "" if kind is None else f"{_SYMBOL[kind]} {_('band.' + kind)}"


class _LogScale:
    """Milliseconds to x on a log axis between two nice ticks around the values."""

    def __init__(self, values: Iterable[float], x0: float, x1: float):
        positive = [v for v in values if v and v > 0 and math.isfinite(v)] or [1_000.0, 60_000.0]
        low, high = min(positive), max(positive)
        self.low = max((t for t in TIME_TICKS if t <= low), default=min(low, TIME_TICKS[0]) / 2)
        self.high = min((t for t in TIME_TICKS if t >= high), default=high * 1.5)
        if self.high <= self.low:
            self.high = self.low * 10
        self.x0, self.x1 = x0, x1
        self._log_span, self._width = math.log(self.high / self.low), x1 - x0  # the same for every value

    def __call__(self, ms: float) -> float:
        ms = min(max(ms, self.low), self.high)
        share = math.log(ms / self.low) / self._log_span
        return self.x0 + share * self._width

    def ticks(self) -> list[float]:
        inside = [t for t in TIME_TICKS if self.low <= t <= self.high]
        every = math.ceil(len(inside) / 6)  # at most six labels, so they never overlap
        return inside[::every]


#: A tick label's font size, the share of it one character takes at most (digits, "min", "мин"), and the
#: room kept between two labels, in px: what decides that two labels would run into each other.
AXIS_FONT, CHAR_EM, LABEL_GAP = 10, 0.62, 6.0


def _label_extent(x: float, text: str, anchor: str) -> tuple[float, float]:
    """Where a tick label reaches from and to on the axis (an estimate that errs on the wide side)."""
    width = len(text) * AXIS_FONT * CHAR_EM
    left = x if anchor == "start" else x - width if anchor == "end" else x - width / 2
    return left, left + width


def _log_axis(scale: _LogScale, _: Translator, y: float, top: float) -> list[Markup]:
    out = [_el("line", x1=scale.x0, y1=y, x2=scale.x1, y2=y, stroke=MUTED)]
    ticks = scale.ticks()
    labels: list[tuple[float, str, str, float, float]] = []  # x, text, anchor, and where it reaches from and to
    for i, tick in enumerate(ticks):
        x = scale(tick)
        # labels at the ends of the axis grow inwards, so they are never cut by the drawing's edge
        anchor = "start" if x - scale.x0 < 20 else "end" if scale.x1 - x < 20 else "middle"
        out.append(_el("line", x1=x, y1=top, x2=x, y2=y + 4, stroke=GRID))
        text = _.minutes(tick)
        left, right = _label_extent(x, text, anchor)
        # ticks close on the log scale (20 and 30 min) would print "20.030.0 min": a label that would touch
        # the one before it is left out (its grid line stays), except the axis' last, which takes their place
        if i == len(ticks) - 1:
            while len(labels) > 1 and left < labels[-1][4] + LABEL_GAP:
                labels.pop()
        if labels and left < labels[-1][4] + LABEL_GAP:
            continue
        labels.append((x, text, anchor, left, right))
    out += [_text(x, y + 15, text, anchor=anchor, size=AXIS_FONT, fill=MUTED) for x, text, anchor, *_reach in labels]
    return out


def _band_lines(scale: _LogScale, band: Limits, _: Translator, top: float, bottom: float) -> list[Markup]:
    """The band shaded between min and max, the reference as a solid line, all three named."""
    x_min, x_ref, x_max = scale(band.min_ms), scale(band.reference_ms), scale(band.max_ms)
    return [
        _el("rect", x=x_min, y=top, width=max(x_max - x_min, 1.0), height=bottom - top, fill=BAND_FILL,
            class_="band"),
        _el("line", x1=x_min, y1=top, x2=x_min, y2=bottom, stroke=GREEN, stroke_dasharray="3 2"),
        _el("line", x1=x_max, y1=top, x2=x_max, y2=bottom, stroke=GREEN, stroke_dasharray="3 2"),
        _el("line", x1=x_ref, y1=top, x2=x_ref, y2=bottom, stroke=INK, stroke_width=1.5),
    ]


def _band_sentence(_: Translator, band: Limits | None) -> str:
    if band is None:
        return _("charts.no_band")
    return _("charts.band", min=_.minutes(band.min_ms), reference=_.minutes(band.reference_ms),
             max=_.minutes(band.max_ms))


# --- the charts ------------------------------------------------------------------------------------------------


def bullet(_: Translator, *, label: str, median_ms: float | None, band: Limits | None, width: int = 380) -> Markup:
    """The median as a bar against the band's zones (below min, within, above max) and the reference."""
    where = position(median_ms, band)
    summary = _("charts.bullet_label", label=label,
                median=_.minutes(median_ms) if median_ms is not None else _("charts.no_data"),
                band=_band_sentence(_, band)) + (f" ({_word(_, where)})" if where else "")
    x0, x1, top, height = 4.0, width - 100.0, 4.0, 20.0
    values = [v for v in (median_ms, band.max_ms * 1.25 if band else None) if v]
    domain = max(values, default=60_000.0) * 1.05

    def x(ms: float) -> float:
        return x0 + min(ms, domain) / domain * (x1 - x0)

    body: list[Markup] = []
    if band is not None:
        body += [
            _el("rect", x=x0, y=top, width=x(band.min_ms) - x0, height=height, fill=BELOW_FILL),
            _el("rect", x=x(band.min_ms), y=top, width=max(x(band.max_ms) - x(band.min_ms), 1.0), height=height,
                fill=BAND_FILL),
            _el("rect", x=x(band.max_ms), y=top, width=x1 - x(band.max_ms), height=height, fill=ABOVE_FILL),
            _el("line", x1=x(band.min_ms), y1=top, x2=x(band.min_ms), y2=top + height, stroke=GREEN,
                stroke_dasharray="3 2"),
            _el("line", x1=x(band.max_ms), y1=top, x2=x(band.max_ms), y2=top + height, stroke=GREEN,
                stroke_dasharray="3 2"),
        ]
    else:
        body.append(_el("rect", x=x0, y=top, width=x1 - x0, height=height, fill="#f2f2f2"))
    if median_ms is not None:
        body.append(_el("rect", x=x0, y=top + 7, width=max(x(median_ms) - x0, 1.0), height=6, fill=INK))
        body.append(_mark(where, x(median_ms), top + 10))
        body.append(_text(x1 + 8, top + 14, f"{_SYMBOL.get(where or '', '')} {_.minutes(median_ms)}".strip(),
                          weight="600"))
    if band is not None:
        body.append(_el("line", x1=x(band.reference_ms), y1=top - 3, x2=x(band.reference_ms), y2=top + height + 3,
                        stroke=INK, stroke_width=2.5))
    body.append(_text(x0, top + height + 16, _band_sentence(_, band), size=10, fill=MUTED))
    return _svg(width, int(top + height + 22), summary, body, "bullet")


def histogram(_: Translator, *, label: str, bins: Sequence[tuple[float, float, int]], band: Limits | None,
              median_ms: float | None = None, width: int = 380, height: int = 150) -> Markup:
    """Sessions per bin of a log time axis (bins: from_ms, to_ms, sessions); the band shaded behind."""
    total = sum(b[2] for b in bins)
    summary = _.plural("charts.histogram_label", total, label=label, n=_.num(total), band=_band_sentence(_, band))
    if median_ms is not None:
        summary += " " + _("charts.median_is", median=_.minutes(median_ms))
    top, bottom = 22.0, height - 22.0
    values = [v for b in bins for v in b[:2]] + ([band.min_ms, band.max_ms] if band else [])
    scale = _LogScale(values, 8.0, width - 8.0)
    body: list[Markup] = []
    if band is not None:
        body += _band_lines(scale, band, _, top, bottom)
    peak = max((b[2] for b in bins), default=0)
    for low, high, count in bins:
        if not count:
            continue
        xa, xb = scale(low), scale(high)
        bar = (bottom - top - 12) * count / peak
        tip = _.plural("charts.bin", count, low=_.minutes(low), high=_.minutes(high), n=_.num(count))
        rect = _el("rect", _el("title", tip),
                   x=xa + 0.5, y=bottom - bar, width=max(xb - xa - 1, 1.0), height=bar, fill=BLUE, fill_opacity=0.85)
        body.append(rect)
        if xb - xa >= 12:
            body.append(_text((xa + xb) / 2, bottom - bar - 3, _.num(count), anchor="middle", size=9))
    if not bins:
        body.append(_text(width / 2, (top + bottom) / 2, _("charts.no_data"), anchor="middle", fill=MUTED))
    if median_ms is not None:
        xm = scale(median_ms)
        body.append(_el("line", x1=xm, y1=top - 4, x2=xm, y2=bottom, stroke=INK, stroke_dasharray="1 2"))
        body.append(_text(xm, top - 5, _("charts.median_short", median=_.minutes(median_ms)), anchor="middle",
                          size=10))
    body += _log_axis(scale, _, bottom, top)
    return _svg(width, height, summary, body, "histogram")


def box_domain(rows: Iterable[BoxRow]) -> tuple[float, float]:
    """The time range that holds every row and band: pass it to several boxes() charts to share one axis."""
    values = [v for r in rows for v in (r.p10_ms, r.p90_ms, *((r.band.min_ms, r.band.max_ms) if r.band else ()))]
    return (min(values), max(values)) if values else (1_000.0, 60_000.0)


def boxes(_: Translator, *, label: str, rows: Sequence[BoxRow], domain: tuple[float, float] | None = None,
          width: int = 640, row_height: int = 20) -> Markup:
    """One row per manager: P10-P90 line, P25-P75 box, the median as a shape, each row's band behind."""
    summary = _.plural("charts.boxes_label", len(rows), label=label, n=_.num(len(rows)))
    left, right = 132.0, width - 86.0
    scale = _LogScale(domain or box_domain(rows), left, right)
    top = 6.0
    bottom = top + row_height * max(len(rows), 1)
    body: list[Markup] = []
    for i, row in enumerate(rows):
        y = top + i * row_height
        mid = y + row_height / 2
        where = position(row.median_ms, row.band)
        parts: list[Markup] = [_el("title", _.plural("charts.box_row", row.n, label=row.label, n=_.num(row.n),
                                               p25=_.minutes(row.p25_ms), median=_.minutes(row.median_ms),
                                               p75=_.minutes(row.p75_ms), band=_band_sentence(_, row.band))
                                         + (f" ({_word(_, where)})" if where else ""))]
        if row.band is not None:
            xa, xb = scale(row.band.min_ms), scale(row.band.max_ms)
            parts.append(_el("rect", x=xa, y=y + 1, width=max(xb - xa, 1.0), height=row_height - 2, fill=BAND_FILL))
            parts.append(_el("line", x1=scale(row.band.reference_ms), y1=y + 1, x2=scale(row.band.reference_ms),
                             y2=y + row_height - 1, stroke=INK))
        parts += [
            _el("line", x1=scale(row.p10_ms), y1=mid, x2=scale(row.p90_ms), y2=mid, stroke=MUTED),
            _el("rect", x=scale(row.p25_ms), y=mid - 4, width=max(scale(row.p75_ms) - scale(row.p25_ms), 1.0),
                height=8, fill=SKY, stroke=BLUE),
            _mark(where, scale(row.median_ms), mid, 4.5),
            _text(left - 6, mid + 4, row.label if len(row.label) <= 18 else row.label[:17] + "…", anchor="end",
                  size=11),
            _text(right + 8, mid + 4, f"{_SYMBOL.get(where or '', '')} {_.minutes(row.median_ms)}".strip(), size=11),
        ]
        body.append(_el("g", _join(parts)))
    if not rows:
        body.append(_text((left + right) / 2, top + 14, _("charts.no_data"), anchor="middle", fill=MUTED))
    body += _log_axis(scale, _, bottom, top)
    return _svg(width, int(bottom + 22), summary, body, "boxes")


def weekly(_: Translator, *, label: str, weeks: Sequence[tuple[date, int, float | None]],
           bands: Sequence[Limits | None], min_sessions: int = 5, width: int = 420, height: int = 170) -> Markup:
    """Weekly medians (week, sessions, median_ms) as a line with shaped points, each week's band shaded.

    `bands[i]` is the band in force in week i. A week with fewer than `min_sessions` sessions is drawn
    hollow: its median says little (the analysis does not count it either).
    """
    summary = _.plural("charts.weekly_label", len(weeks), label=label, n=_.num(len(weeks)))
    left, right, top, bottom = 44.0, width - 10.0, 14.0, height - 30.0
    peak = max([w[2] or 0 for w in weeks] + [b.max_ms for b in bands if b] + [1_000.0]) * 1.15
    step = (right - left) / max(len(weeks), 1)

    def x(i: int) -> float:
        return left + step * (i + 0.5)

    def y(ms: float) -> float:
        return bottom - min(ms, peak) / peak * (bottom - top)

    body = _minute_grid(_, peak, left, right, y, size=9)
    body += _band_runs(bands, left, step, y, reference_width=1.5, dash="4 2")
    points = [(x(i), y(m), i) for i, (_w, _n_, m) in enumerate(weeks) if m is not None]
    if len(points) > 1:
        body.append(_el("polyline", points=" ".join(f"{_n(px)},{_n(py)}" for px, py, _i in points), fill="none",
                        stroke=INK, stroke_width=1.5))
    label_every = max(1, math.ceil(len(weeks) / max(1, int((right - left) // 44))))
    for i, (week, sessions, median) in enumerate(weeks):
        band = bands[i] if i < len(bands) else None
        if i % label_every == 0:
            body.append(_text(x(i), bottom + 14, _short_date(_, week), anchor="middle", size=9, fill=MUTED))
        if median is None:
            continue
        where = position(median, band)
        tip = _.plural("charts.week", sessions, week=_.date(week), median=_.minutes(median), n=_.num(sessions),
                band=_band_sentence(_, band)) + (f" ({_word(_, where)})" if where else "")
        mark = _mark(where, x(i), y(median), 4.5)
        if sessions < min_sessions:
            mark = _el("circle", cx=x(i), cy=y(median), r=3.5, fill="#ffffff", stroke=INK, stroke_width=1.2)
        body.append(_el("g", _el("title", tip) + mark))
        # values as text: every week when there is room, else every other week and always the last
        if step >= 40 or (len(weeks) - 1 - i) % 2 == 0:
            body.append(_text(x(i), y(median) - 8, _.minutes(median), anchor="middle", size=8))
    if not weeks:
        body.append(_text((left + right) / 2, (top + bottom) / 2, _("charts.no_data"), anchor="middle", fill=MUTED))
    body.append(_el("line", x1=left, y1=bottom, x2=right, y2=bottom, stroke=MUTED))
    return _svg(width, height, summary, body, "weekly")


def _linear_ticks(peak: float) -> list[float]:
    raw = peak / 4
    nice = min((t for t in TIME_TICKS if t >= raw), default=TIME_TICKS[-1])
    return [nice * k for k in range(0, int(peak // nice) + 1)]


def _short_date(_: Translator, value: date) -> str:
    return _short_date_in(_.language, value)


@lru_cache(maxsize=4096)
def _short_date_in(language: str, value: date) -> str:
    return babel_dates.format_date(value, format="d MMM", locale=language)  # the same dozen weeks on every chart


def before_after(_: Translator, *, label: str, days: Sequence[date], manager_ms: Sequence[float | None],
                 peers_ms: Sequence[float | None], pre: tuple[date, date], post: tuple[date, date] | None,
                 target_ms: int, band_max_ms: int | None, trigger: tuple[date, date] | None = None,
                 width: int = 640, height: int = 200) -> Markup:
    """Daily medians around a coaching: the manager (solid, ●) against their peers (dashed, ■), the
    windows before and after shaded and named, the target and the band's maximum as lines, and the
    dates along the bottom, a tick a week (a fortnight when narrower than 500). `trigger`, the
    fortnight that prompted the coaching, is shaded apart (grey, "not compared"): the baseline leaves
    it out, so a bad fortnight that would recover anyway is not taken for the coaching's effect; the
    legend and the summary say so."""
    with_sessions = sum(m is not None for m in manager_ms)
    summary = _.plural("charts.before_after_label", with_sessions, label=label, n=_.num(with_sessions))
    index = {d: i for i, d in enumerate(days)}
    trigger_days = [index[d] for d in days if trigger and trigger[0] <= d <= trigger[1]]
    if trigger and trigger_days:
        summary += ". " + _("charts.trigger_said", since=_.date(trigger[0]), until=_.date(trigger[1]))
    narrow = width < 500  # a phone's drawing: a date every fortnight, the long key from the left edge
    left, right, top, bottom = 48.0, width - 12.0, 18.0, height - 30.0
    values = [v for v in (*manager_ms, *peers_ms) if v is not None]
    peak = max(values + [float(target_ms), float(band_max_ms or 0), 1_000.0]) * 1.15
    span = max(len(days), 1)

    def x(i: float) -> float:
        return left + (right - left) * (i + 0.5) / span

    def y(ms: float) -> float:
        return bottom - min(ms, peak) / peak * (bottom - top)

    body: list[Markup] = []
    for tick in _linear_ticks(peak):
        body.append(_el("line", x1=left, y1=y(tick), x2=right, y2=y(tick), stroke=GRID, stroke_width=0.5))
        body.append(_text(left - 4, y(tick) + 3, _.minutes(tick), anchor="end", size=9, fill=MUTED))
    if trigger_days:  # grey, not the windows' blue: these days are in neither
        xa, xb = x(trigger_days[0] - 0.5), x(trigger_days[-1] + 0.5)
        body.append(_el("rect", x=xa, y=top, width=xb - xa, height=bottom - top, fill=TRIGGER_FILL, class_="trigger"))
        body.append(_text((xa + xb) / 2, top - 4, _("charts.trigger_short"), anchor="middle", size=9 if narrow else 10,
                          fill=MUTED))
    for window, key in ((pre, "charts.before"), (post, "charts.after")):
        if window is None:
            continue
        inside = [index[d] for d in days if window[0] <= d <= window[1]]
        if not inside:
            continue
        xa, xb = x(inside[0] - 0.5), x(inside[-1] + 0.5)
        body.append(_el("rect", x=xa, y=top, width=xb - xa, height=bottom - top, fill=BELOW_FILL, class_="window"))
        body.append(_text((xa + xb) / 2, top - 4, _(key), anchor="middle", size=10, weight="600"))
    for value, key, colour in ((target_ms, "charts.target", GREEN), (band_max_ms, "charts.band_max", VERMILLION)):
        if value:
            body.append(_el("line", x1=left, y1=y(value), x2=right, y2=y(value), stroke=colour, stroke_width=1.2,
                            stroke_dasharray="6 3"))
            body.append(_text(right, y(value) - 3, _(key, value=_.minutes(value)), anchor="end", size=9, fill=colour))
    for series, colour, dash, shape, name in ((peers_ms, MUTED, "4 3", "square", "charts.peers"),
                                              (manager_ms, BLUE, None, "circle", "charts.manager")):
        points = [(x(i), y(v), v, days[i]) for i, v in enumerate(series) if v is not None]
        if len(points) > 1:
            body.append(_el("polyline", points=" ".join(f"{_n(px)},{_n(py)}" for px, py, _v, _d in points),
                            fill="none", stroke=colour, stroke_width=1.5, stroke_dasharray=dash))
        for px, py, v, day in points:
            tip = _el("title", f"{_(name)} {_.date(day)}: {_.minutes(v)}")
            mark = (_el("circle", cx=px, cy=py, r=2.8, fill=colour) if shape == "circle"
                    else _el("rect", x=px - 2.5, y=py - 2.5, width=5, height=5, fill=colour))
            body.append(_el("g", tip + mark))
    for i, day in enumerate(days):  # a date axis: a tick each week from the first day shown
        if i % (14 if narrow else 7) == 0:
            body.append(_el("line", x1=x(i), y1=bottom, x2=x(i), y2=bottom + 3, stroke=MUTED))
            body.append(_text(x(i), bottom + 13, _short_date(_, day), anchor="middle", size=9, fill=MUTED))
    legend_y = bottom + 28
    body.append(_el("circle", cx=left, cy=legend_y - 3, r=3, fill=BLUE))
    body.append(_text(left + 8, legend_y, _("charts.manager"), size=10))
    if any(v is not None for v in peers_ms):  # a group too small to show has no line, so no legend entry
        body.append(_el("rect", x=left + 118, y=legend_y - 6, width=6, height=6, fill=MUTED))
        body.append(_text(left + 128, legend_y, _("charts.peers"), size=10))
    extra = 0
    if trigger_days:  # a line of its own: the words are long, and a narrow chart has no room beside the others
        extra = 16
        key_x = 6.0 if narrow else left - 3
        body.append(_el("rect", x=key_x, y=legend_y + 16 - 8, width=12, height=10, fill=TRIGGER_FILL,
                        stroke=MUTED, stroke_width=0.5))
        body.append(_text(key_x + 17, legend_y + 16, _("charts.trigger_key"), size=9 if narrow else 10))
    if not values:
        body.append(_text((left + right) / 2, (top + bottom) / 2, _("charts.no_data"), anchor="middle", fill=MUTED))
    body.append(_el("line", x1=left, y1=bottom, x2=right, y2=bottom, stroke=MUTED))
    return _svg(width, height + 12 + extra, summary, body, "before-after")


@dataclass(frozen=True)
class Series:
    """One line of an evidence chart: its name in the legend and a median (ms) or None per week."""

    name: str
    medians: Sequence[float | None]


def evidence(_: Translator, *, label: str, weeks: Sequence[date], main: Series, sessions: Sequence[int],
             bands: Sequence[Limits | None], compare: Series | None = None, others: Sequence[Series] = (),
             onset: date | None = None, at_least: bool = False, events: Sequence[tuple[date, str]] = (),
             note: str = "", min_sessions: int = 5, width: int = 880, height: int = 300) -> Markup:
    """A drawdown's evidence: the weekly medians of `main` (solid, shaped by the band: ▲ above, ▼ below,
    ● within) against each week's band (shaded, the reference dashed, min and max named) and `compare`
    (dashed grey, ■), `others` as thin lines, the onset as a vertical line ("since about" or, with
    `at_least`, an arrow to the left: it began before the data), and `events` (coaching assigned,
    due) as dotted lines. A week with fewer than `min_sessions` sessions is drawn hollow. The legend is
    the page's (HTML wraps on a phone, a drawing's text does not). `note`, a sentence on how the figures
    were taken (adjusted for the client mix), ends the summary a screen reader reads."""
    summary = _.plural("charts.evidence_label", len(weeks), label=label, n=_.num(len(weeks)))
    if note:
        summary += ". " + note
    narrow = width < 500
    left, right, top, bottom = 64.0, width - (10.0 if narrow else 104.0), 48.0, height - 24.0  # room for "10.0 min"
    values = [v for s in (main, compare, *others) if s is not None for v in s.medians if v is not None]
    peak = max(values + [b.max_ms for b in bands if b] + [1_000.0]) * 1.12
    step = (right - left) / max(len(weeks), 1)
    first = weeks[0] if weeks else date.today()

    def at(day: date) -> float:  # a day's place on the axis: each week spans `step`, its Monday at its left edge
        return left + step * (day - first).days / 7

    def y(ms: float) -> float:
        return bottom - min(ms, peak) / peak * (bottom - top)

    body = _minute_grid(_, peak, left, right, y, size=12)
    body += _band_runs(bands, left, step, y, reference_width=1.2, dash="4 3", limits=True)
    last = bands[-1] if bands else None
    if last is not None and not narrow:  # the band's limits named at the right, where the latest week ends
        for key, value in (("charts.max_short", last.max_ms), ("charts.reference_short", last.reference_ms),
                           ("charts.min_short", last.min_ms)):
            body.append(_text(right + 4, y(value) + 3, _(key, value=_.minutes(value)), size=11, fill=GREEN))

    def centre(i: int) -> float:
        return left + step * (i + 0.5)

    for extra in others:
        points = [(centre(i), y(m)) for i, m in enumerate(extra.medians) if m is not None]
        if len(points) > 1:
            line = " ".join(f"{_n(a)},{_n(b)}" for a, b in points)
            body.append(_el("polyline", _el("title", extra.name), points=line, fill="none", stroke=SKY,
                            stroke_width=1))
    if compare is not None:
        points = [(centre(i), y(m), m, i) for i, m in enumerate(compare.medians) if m is not None]
        if len(points) > 1:
            body.append(_el("polyline", points=" ".join(f"{_n(a)},{_n(b)}" for a, b, _m, _i in points), fill="none",
                            stroke=MUTED, stroke_width=1.5, stroke_dasharray="5 3"))
        for px, py, m, i in points:
            body.append(_el("g", _el("title", f"{compare.name}, {_.date(weeks[i])}: {_.minutes(m)}")
                            + _el("rect", x=px - 3, y=py - 3, width=6, height=6, fill=MUTED)))
    points = [(centre(i), y(m), i) for i, m in enumerate(main.medians) if m is not None]
    if len(points) > 1:
        body.append(_el("polyline", points=" ".join(f"{_n(a)},{_n(b)}" for a, b, _i in points), fill="none",
                        stroke=BLUE, stroke_width=2))
    for px, py, i in points:
        median = main.medians[i]
        assert median is not None
        band = bands[i] if i < len(bands) else None
        where = position(median, band)
        n = sessions[i] if i < len(sessions) else 0
        tip = _.plural("charts.week", n, week=_.date(weeks[i]), median=_.minutes(median), n=_.num(n),
                band=_band_sentence(_, band)) + (f" ({_word(_, where)})" if where else "")
        mark = _mark(where, px, py, 5) if n >= min_sessions else \
            _el("circle", cx=px, cy=py, r=3.5, fill="#ffffff", stroke=INK, stroke_width=1.2)
        body.append(_el("g", _el("title", f"{main.name}: {tip}") + mark))
        if not narrow or i == points[-1][2]:
            body.append(_text(px, py - 10, _.minutes(median), anchor="middle", size=11, weight="600"))
    label_every = max(1, math.ceil(len(weeks) / max(1, int((right - left) // 52))))
    for i, week in enumerate(weeks):
        if (len(weeks) - 1 - i) % label_every == 0:  # the latest week is always named
            body.append(_text(centre(i), bottom + 16, _short_date(_, week), anchor="middle", size=11, fill=MUTED))
    end = first + timedelta(weeks=len(weeks))
    for row, (day, text) in enumerate(events):
        if not weeks or day < first:
            continue
        beyond = day > end  # a due date after the latest week: drawn at the right edge, pointing on
        xe = right if beyond else at(day)
        ye = top - 20 - 14 * (row % 2)
        body.append(_el("line", x1=xe, y1=ye + 2, x2=xe, y2=bottom, stroke=ORANGE, stroke_width=1.5,
                        stroke_dasharray="2 2"))
        body.append(_text(xe - 3 if xe > (left + right) / 2 else xe + 3, ye, text + (" →" if beyond else ""),
                          anchor="end" if xe > (left + right) / 2 else "start", size=11, fill=INK))
    if onset is not None and weeks:
        xo = max(left, at(onset))
        said = _("charts.onset_at_least" if at_least else "charts.onset", date=_short_date(_, onset))
        body.append(_el("line", x1=xo, y1=top - 6, x2=xo, y2=bottom, stroke=VERMILLION, stroke_width=1.5))
        if at_least:
            body.append(_el("polygon", points=f"{_n(xo - 8)},{_n(top - 6)} {_n(xo)},{_n(top - 10)} "
                                              f"{_n(xo)},{_n(top - 2)}", fill=VERMILLION))
        body.append(_text(xo + 4 if xo < (left + right) / 2 else xo - 4, top - 4, said,
                          anchor="start" if xo < (left + right) / 2 else "end", size=12, weight="600",
                          fill=VERMILLION))
    if not values:
        body.append(_text((left + right) / 2, (top + bottom) / 2, _("charts.no_data"), anchor="middle", fill=MUTED))
    body.append(_el("line", x1=left, y1=bottom, x2=right, y2=bottom, stroke=MUTED))
    return _svg(width, height, summary, body, "evidence")


def _trim(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def _minute_grid(_: Translator, peak: float, left: float, right: float, y: Callable[[float], float], *,
                 size: int) -> list[Markup]:
    """Horizontal grid lines at round durations up to `peak`, labelled at the left."""
    body: list[Markup] = []
    for tick in _linear_ticks(peak):
        body.append(_el("line", x1=left, y1=y(tick), x2=right, y2=y(tick), stroke=GRID, stroke_width=0.5))
        body.append(_text(left - 4, y(tick) + 3, _.minutes(tick), anchor="end", size=size, fill=MUTED))
    return body


def _band_runs(bands: Sequence[Limits | None], left: float, step: float, y: Callable[[float], float], *,
               reference_width: float, dash: str, limits: bool = False) -> list[Markup]:
    """The band behind weekly figures: one shaded stretch (and reference line) per run of weeks under the
    same band, `step` wide a week from `left`; `limits` draws the minimum and maximum as lines too."""
    body: list[Markup] = []
    start = 0
    for i in range(1, len(bands) + 1):
        if i < len(bands) and bands[i] == bands[start]:
            continue
        band = bands[start]
        if band is not None:
            xa, xb = left + step * start, left + step * i
            body.append(_el("rect", x=xa, y=y(band.max_ms), width=xb - xa, height=y(band.min_ms) - y(band.max_ms),
                            fill=BAND_FILL, class_="band"))
            body.append(_el("line", x1=xa, y1=y(band.reference_ms), x2=xb, y2=y(band.reference_ms), stroke=GREEN,
                            stroke_width=reference_width, stroke_dasharray=dash))
            if limits:
                for limit in (band.min_ms, band.max_ms):
                    body.append(_el("line", x1=xa, y1=y(limit), x2=xb, y2=y(limit), stroke=GREEN, stroke_width=0.8))
        start = i
    return body
