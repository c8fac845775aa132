"""The SVG charts: well-formed XML, every label escaped, values written as text, shapes besides colours."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date, timedelta

import pytest
from markupsafe import Markup

from dashboards import charts
from dashboards.charts import BoxRow, Limits
from dashboards.i18n import Translator

NS = {"svg": charts.SVG_NS}
EVIL = '<script>alert(1)</script> & "quotes"'
BAND = Limits(60_000, 120_000, 240_000)
en, ru = Translator("en"), Translator("ru")


def parse(svg: Markup) -> ET.Element:
    assert isinstance(svg, Markup)
    root = ET.fromstring(str(svg))  # raises on anything that is not well-formed XML
    assert root.tag == f"{{{charts.SVG_NS}}}svg"
    assert root.get("role") == "img" and root.get("aria-label")
    title = root.find("svg:title", NS)
    assert title is not None and title.text == root.get("aria-label")
    return root


def texts(root: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter(f"{{{charts.SVG_NS}}}text")]


def every_chart(label: str, _: Translator = en) -> list[Markup]:
    weeks = [(date(2026, 9, 7) + timedelta(weeks=i), 10 if i else 2, 100_000.0 + 20_000 * i) for i in range(12)]
    return [
        charts.bullet(_, label=label, median_ms=300_000, band=BAND),
        charts.bullet(_, label=label, median_ms=None, band=None),
        charts.histogram(_, label=label, bins=[(60_000, 71_352, 3), (71_352, 84_853, 12)], band=BAND,
                         median_ms=75_000),
        charts.histogram(_, label=label, bins=[], band=None),
        charts.boxes(_, label=label, rows=[BoxRow(label, 30, 50_000, 60_000, 70_000, 90_000, 130_000, BAND)]),
        charts.boxes(_, label=label, rows=[]),
        charts.weekly(_, label=label, weeks=weeks, bands=[BAND] * 12),
        charts.weekly(_, label=label, weeks=[], bands=[]),
    ]


@pytest.mark.parametrize("index", range(8))
def test_every_chart_is_well_formed_and_escapes_its_label(index: int) -> None:
    svg = every_chart(EVIL)[index]
    assert "<script>" not in str(svg) and "&lt;script&gt;" in str(svg)
    root = parse(svg)
    assert EVIL in root.get("aria-label", "")  # the parser gives the text back exactly
    for element in root.iter():
        assert "style" not in element.attrib  # the page's CSP forbids inline styles


def test_a_box_row_label_is_escaped_in_the_drawing_too() -> None:
    root = parse(charts.boxes(en, label="offer", rows=[BoxRow("<b>m1</b>", 30, 5e4, 6e4, 7e4, 9e4, 1.3e5, BAND)]))
    assert "<b>m1</b>" in texts(root)
    assert any("<b>m1</b>" in (t.text or "") for t in root.iter(f"{{{charts.SVG_NS}}}title"))


def test_the_bullet_writes_the_median_and_the_band_and_marks_the_side_by_shape() -> None:
    root = parse(charts.bullet(en, label="Offer", median_ms=300_000, band=BAND))
    written = " ".join(texts(root))
    assert "▲ 5.0\xa0min" in written  # the median, with the shape of "above"
    assert "min 1.0\xa0min, reference 2.0\xa0min, max 4.0\xa0min" in written
    assert "above the maximum" in root.get("aria-label", "")
    assert root.find("svg:polygon", NS) is not None  # the triangle, not only a colour
    below = parse(charts.bullet(en, label="Offer", median_ms=30_000, band=BAND))
    assert "▼ 30\xa0s" in " ".join(texts(below)) and "below the minimum" in below.get("aria-label", "")
    within = parse(charts.bullet(en, label="Offer", median_ms=100_000, band=BAND))
    assert within.find("svg:circle", NS) is not None and "within the band" in within.get("aria-label", "")


def test_the_histogram_uses_a_log_axis_and_writes_counts() -> None:
    root = parse(charts.histogram(en, label="Offer", bins=[(60_000, 71_352, 3), (71_352, 84_853, 12)], band=BAND,
                                  median_ms=75_000))
    written = texts(root)
    assert "3" in written and "12" in written and "median 1.2\xa0min" in written
    ticks = [t for t in written if t.endswith("min") or t.endswith(" s")]
    assert "1.0\xa0min" in ticks and "2.0\xa0min" in ticks and "5.0\xa0min" in ticks  # 1, 2, 5: a log scale's ticks
    bars = [r for r in root.iter(f"{{{charts.SVG_NS}}}rect") if r.find("svg:title", NS) is not None]
    assert [r.find("svg:title", NS).text for r in bars] == ["1.0\xa0min to 1.2\xa0min: 3 sessions",
                                                            "1.2\xa0min to 1.4\xa0min: 12 sessions"]
    # the count picks the noun's form: "1 session", "2 сессии", "5 сессий", "21 сессия"
    one = parse(charts.histogram(en, label="Offer", bins=[(60_000, 71_352, 1)], band=BAND, median_ms=65_000))
    tips = [t.text for t in one.iter(f"{{{charts.SVG_NS}}}title")]
    assert tips[0].startswith("Offer: 1 session by time") and tips[1:] == ["1.0\xa0min to 1.2\xa0min: 1 session"]
    said = [t.text for t in parse(charts.histogram(ru, label="Оффер", median_ms=75_000, band=BAND, bins=[
        (60_000, 71_352, 2), (71_352, 84_853, 5), (84_853, 100_000, 21)])).iter(f"{{{charts.SVG_NS}}}title")][1:]
    assert [s.split(": ")[-1] for s in said] == ["2 сессии", "5 сессий", "21 сессия"]
    # on a log axis equal ratios take equal widths: 1-2 min as wide as 2-4 min
    scale = charts._LogScale([60_000, 240_000], 0, 100)
    assert scale(120_000) - scale(60_000) == pytest.approx(scale(240_000) - scale(120_000))


def test_the_weekly_chart_shades_the_band_and_marks_thin_weeks() -> None:
    weeks = [(date(2026, 9, 7) + timedelta(weeks=i), 10 if i else 2, 100_000.0 + 20_000 * i) for i in range(12)]
    bands = [None] * 2 + [BAND] * 10
    root = parse(charts.weekly(en, label="Offer", weeks=weeks, bands=bands))
    shaded = [r for r in root.iter(f"{{{charts.SVG_NS}}}rect") if r.get("class") == "band"]
    assert len(shaded) == 1  # one stretch: the ten weeks under the same band
    assert float(shaded[0].get("x", 0)) > 44 and float(shaded[0].get("width", 0)) > 250
    changed = parse(charts.weekly(en, label="Offer", weeks=weeks, bands=[BAND] * 6 + [Limits(6e4, 1.5e5, 3e5)] * 6))
    assert len([r for r in changed.iter(f"{{{charts.SVG_NS}}}rect") if r.get("class") == "band"]) == 2
    tips = [t.text for t in root.iter(f"{{{charts.SVG_NS}}}title")]
    assert any(t and t.startswith("Week of Sep 7, 2026: median 1.7\xa0min, 2 sessions; no band set") for t in tips)
    assert any(t and "(▲ above the maximum)" in t for t in tips)  # 320 s and more > 240 s
    assert "5.3\xa0min" in texts(root)  # the last week's median, written


def test_charts_speak_the_viewers_language() -> None:
    root = parse(charts.bullet(ru, label="Оффер", median_ms=252_000, band=BAND))
    assert "4,2\xa0мин" in " ".join(texts(root)) and "медиана" in root.get("aria-label", "")


def test_position() -> None:
    assert charts.position(None, BAND) is None and charts.position(100_000, None) is None
    assert [charts.position(v, BAND) for v in (59_999, 60_000, 240_000, 240_001)] == [
        "below", "within", "within", "above"]


def _el_as_before(tag: str, content: str | Markup = "", **attrs: object) -> Markup:
    """charts._el as it was written before numbers skipped escape(): the reference output."""
    from markupsafe import escape

    parts = [tag]
    for key, value in attrs.items():
        if value is None:
            continue
        name = key.rstrip("_").replace("_", "-")
        text = charts._n(value) if isinstance(value, float) else str(value)
        parts.append(f'{name}="{escape(text)}"')
    opening = "<" + " ".join(parts)
    if not content:
        return Markup(opening + "/>")
    return Markup(f"{opening}>{escape(content)}</{tag}>")


class _Float(float):
    """A float subclass (as numpy's float64 is): written as a float, through the general path."""


def test_an_element_writes_numbers_as_before_and_escapes_everything_else() -> None:
    values: list[object] = [0, -3, 12, 10**20, True, 0.0, -0.0, 1.25, 2.05, -7.45, 1e-9, 123456.789, 1e16,
                            float("nan"), float("inf"), _Float(1.25), _Float(3.0), "3 2", EVIL, Markup("<b>&amp;</b>"),
                            None, ("a", 1)]
    for value in values:
        for content in ("", EVIL, Markup("<title>t</title>")):
            attrs = {"x": value, "class_": value, "stroke_dasharray": value, "fill": charts.BLUE}
            got = charts._el("rect", content, **attrs)
            assert got == _el_as_before("rect", content, **attrs)
            assert isinstance(got, Markup)
    written = charts._el("text", EVIL, x=1.25, y=-0.0, font_size=10, class_=EVIL, data_x=Markup("<i>"))
    assert written == Markup(
        '<text x="1.2" y="-0" font-size="10" class="&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;quotes&#34;" '
        'data-x="&lt;i&gt;">&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;quotes&#34;</text>')
    ET.fromstring(f'<svg xmlns="{charts.SVG_NS}">{written}</svg>')  # well-formed


def test_numeric_attributes_skip_escaping(monkeypatch: pytest.MonkeyPatch) -> None:
    escaped: list[object] = []
    real = charts.escape

    def counted(value: object) -> Markup:
        escaped.append(value)
        return real(value)

    monkeypatch.setattr(charts, "escape", counted)
    line = charts._el("line", x1=1.5, y1=2, x2=300.25, y2=4, stroke_width=0.5)
    assert line == Markup('<line x1="1.5" y1="2" x2="300.2" y2="4" stroke-width="0.5"/>')
    assert escaped == []  # numbers have nothing to escape: a chart writes thousands of them
    charts._el("line", x1=1.5, stroke=charts.BLUE)
    assert escaped == [charts.BLUE]  # text still is escaped


def test_before_after_names_the_peers_in_its_legend_only_when_it_draws_them() -> None:
    days = [date(2026, 11, 1) + timedelta(days=i) for i in range(6)]
    common = {"label": "Offer", "days": days, "manager_ms": [200_000.0] * 6, "pre": (days[0], days[2]),
              "post": (days[3], days[5]), "target_ms": 150_000, "band_max_ms": 240_000}
    drawn = parse(charts.before_after(en, peers_ms=[180_000.0] * 6, **common))
    hidden = parse(charts.before_after(en, peers_ms=[None] * 6, **common))

    def words(root: ET.Element) -> list[str]:
        return [t.text or "" for t in root.iter(f"{{{charts.SVG_NS}}}text")]

    assert en("charts.peers") in words(drawn)
    assert en("charts.peers") not in words(hidden) and en("charts.manager") in words(hidden)


def test_before_after_shades_the_fortnight_that_prompted_the_coaching_apart_and_says_so() -> None:
    days = [date(2026, 10, 1) + timedelta(days=i) for i in range(60)]
    pre, trigger, post = (days[0], days[27]), (days[28], days[41]), (days[46], days[59])
    common = {"label": "Offer", "days": days, "manager_ms": [200_000.0] * 60, "peers_ms": [180_000.0] * 60,
              "pre": pre, "post": post, "target_ms": 150_000, "band_max_ms": 240_000}
    for _, key, short in ((en, "the fortnight that prompted the coaching — not compared", "not compared"),
                          (ru, "две недели, из-за которых назначено обучение, — не сравниваются", "не сравниваются")):
        root = parse(charts.before_after(_, trigger=trigger, **common))
        said = texts(root)
        assert key in said and short in said
        shaded = {r.get("class"): r for r in root.iter(f"{{{charts.SVG_NS}}}rect") if r.get("class")}
        assert shaded["trigger"].get("fill") != shaded["window"].get("fill")  # not the baseline's shade
        windows = [r for r in root.iter(f"{{{charts.SVG_NS}}}rect") if r.get("class") == "window"]
        grey = shaded["trigger"]
        start, end = float(grey.get("x") or 0), float(grey.get("x") or 0) + float(grey.get("width") or 0)
        assert float(windows[0].get("x") or 0) + float(windows[0].get("width") or 0) == pytest.approx(start, abs=0.1)
        assert end < float(windows[1].get("x") or 0)  # the days between the assignment and done: in neither
        summary = root.get("aria-label") or ""
        assert _.date(trigger[0]) in summary and _.date(trigger[1]) in summary  # the text equivalent
    assert "not compared" in (parse(charts.before_after(en, trigger=trigger, **common)).get("aria-label") or "")
    without = parse(charts.before_after(en, **common))
    assert "not compared" not in " ".join(texts(without)) and "not compared" not in (without.get("aria-label") or "")


@pytest.mark.parametrize("_", [en, ru])
def test_the_time_axis_labels_never_run_into_each_other(_: Translator) -> None:
    # "Подбор продукта" on /me: bins from 2 to 30 min put the 20 and 30 min ticks 43 px apart, and their
    # labels read "20.030.0 min". Each label takes at least 5.5 px a character at font-size 10.
    bins = [(1_000 * 2 ** (i / 4), 1_000 * 2 ** ((i + 1) / 4), 3) for i in range(27, 43)]  # 1.8 to 29 min
    root = parse(charts.histogram(_, label="Products", bins=bins, band=Limits(186_000, 348_000, 654_000),
                                  median_ms=359_000))
    axis_y = max(float(t.get("y")) for t in root.iter(f"{{{charts.SVG_NS}}}text"))
    labels = [t for t in root.iter(f"{{{charts.SVG_NS}}}text") if float(t.get("y")) == axis_y]
    reach = []
    for t in labels:
        x, text, anchor = float(t.get("x")), "".join(t.itertext()), t.get("text-anchor")
        width = 5.5 * len(text)
        left = x if anchor == "start" else x - width if anchor == "end" else x - width / 2
        reach.append((left, left + width, text))
    reach.sort()
    assert len(reach) >= 3
    for (_l1, right, a), (left, _r2, b) in zip(reach, reach[1:], strict=False):
        assert right <= left, f"{a!r} runs into {b!r}"
    # the axis' end keeps its label; every tick keeps its grid line
    assert reach[-1][2] == _.minutes(1_800_000)
