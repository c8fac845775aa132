"""The process map of the flow page: a directly-follows graph drawn on the server as SVG.

The layout is stable: the steps stand top to bottom in the process's order (steps the process does
not name last, sorted), one row each, whatever the data; a layout library (graphviz) would move the
boxes when a rare edge appears or goes, so a director could not compare two weeks at a glance.
An edge to the next step is a straight arrow down; one that skips steps curves on the right, one
that goes back (rework) on the left, further out the more steps it spans. Each edge is labelled
with its transitions and the median time from entering its first step to entering the second, and
is thicker the more often it is taken. For a manager, edges taken much more often than by their
teammates are vermillion with a ▲, much less often blue, dashed, with a ▼: never colour alone.

Words come from messages/flow.toml through the page's Translator. No script, no inline style
(the page's Content-Security-Policy forbids both); every text is escaped by charts._el.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from dashboards.charts import BLUE, INK, MUTED, SVG_NS, VERMILLION, _el, _join, _n, _text
from dashboards.i18n import Translator

BOX_W, BOX_H, ROW = 210, 46, 92
TOP = 16
SPAN_STEP = 36  # how much further out an edge curves for each step it spans
APEX = 0.75  # how far out a curve reaches, as a share of its control points' distance (a cubic Bézier's)
TITLE_CHARS = 26


@dataclass(frozen=True)
class Node:
    key: str
    title: str
    stays: int
    median_ms: float | None


@dataclass(frozen=True)
class Arrow:
    source: str
    target: str
    transitions: int
    median_ms: float | None
    deviation: str | None = None  # "more", "less" or None


def _width(text: str, size: float = 11) -> float:
    """About how wide a label is drawn (the browser measures; the layout only needs room enough)."""
    return len(text) * size * 0.58


def _short(title: str) -> str:
    return title if len(title) <= TITLE_CHARS else title[:TITLE_CHARS - 1] + "…"


def _arrow_markers() -> Markup:
    def marker(name: str, colour: str) -> Markup:
        # in the drawing's units: a thick edge keeps a head of the same size as a thin one's
        return _el("marker", _el("path", d="M0,0 L8,4 L0,8 z", fill=colour), id=name, viewBox="0 0 8 8", refX=7,
                   refY=4, markerWidth=9, markerHeight=9, markerUnits="userSpaceOnUse", orient="auto-start-reverse")
    return _el("defs", _join([marker("flow-arrow", MUTED), marker("flow-arrow-more", VERMILLION),
                              marker("flow-arrow-less", BLUE)]))


def flow_map(_: Translator, *, nodes: Sequence[Node], arrows: Sequence[Arrow], label: str) -> Markup:
    """The map of `nodes` (in the order to draw them) and `arrows` between them; `label` names it for a
    screen reader (the page puts the same edges in a table)."""
    row = {n.key: i for i, n in enumerate(nodes)}
    arrows = [a for a in arrows if a.source in row and a.target in row and a.source != a.target]
    spans = [(row[a.target] - row[a.source]) for a in arrows]
    marks = {"more": "▲ ", "less": "▼ "}
    texts = [marks.get(a.deviation or "", "") + f"{_.num(a.transitions)} · {_.minutes(a.median_ms)}" for a in arrows]
    # Room beside the boxes for the curves and their labels, as much as they need and no more, so the map
    # is as narrow as it can be (on a phone it scrolls in its box).
    left_room, right_room = 12.0, 12.0
    for span, said in zip(spans, texts, strict=True):
        if span == 1:
            right_room = max(right_room, 10 + _width(said) - BOX_W / 2 + 6)
        elif span > 1:
            right_room = max(right_room, APEX * SPAN_STEP * span + 6 + _width(said) + 6)
        else:
            left_room = max(left_room, APEX * SPAN_STEP * -span + 6 + _width(said) + 6)
    width = int(left_room + BOX_W + right_room)
    height = TOP * 2 + max(len(nodes), 1) * ROW - (ROW - BOX_H)
    cx = left_room + BOX_W / 2
    busiest = max([a.transitions for a in arrows] or [1])

    def y_top(i: int) -> float:
        return TOP + i * ROW

    body: list[Markup] = [_arrow_markers()]
    for a, span, text in sorted(zip(arrows, spans, texts, strict=True), key=lambda x: x[0].transitions):
        colour = {"more": VERMILLION, "less": BLUE}.get(a.deviation or "", MUTED)
        marker = {"more": "flow-arrow-more", "less": "flow-arrow-less"}.get(a.deviation or "", "flow-arrow")
        thickness = 1 + 5 * a.transitions / busiest
        i, j = row[a.source], row[a.target]
        if span == 1:
            x, y1, y2 = cx, y_top(i) + BOX_H, y_top(j)
            d = f"M{_n(x)},{_n(y1)} L{_n(x)},{_n(y2 - 2)}"
            lx, ly, anchor = cx + 10, (y1 + y2) / 2 + 4, "start"
        else:
            side = 1 if span > 0 else -1
            edge_x = cx + side * BOX_W / 2
            out = edge_x + side * SPAN_STEP * abs(span)
            y1, y2 = y_top(i) + BOX_H / 2 + side * 8, y_top(j) + BOX_H / 2 - side * 8
            d = (f"M{_n(edge_x)},{_n(y1)} C{_n(out)},{_n(y1)} {_n(out)},{_n(y2)} "
                 f"{_n(edge_x + side * 2)},{_n(y2)}")
            lx, ly = edge_x + side * (APEX * SPAN_STEP * abs(span) + 6), (y1 + y2) / 2 + 4
            anchor = "start" if side > 0 else "end"
        said = _.plural("flow.edge_said", a.transitions, source=nodes[i].title, target=nodes[j].title,
                        n=_.num(a.transitions), time=_.minutes(a.median_ms))
        if a.deviation:
            said += " " + _(f"flow.deviation_{a.deviation}")
        body.append(_el("g", _join([
            _el("title", said),
            _el("path", d=d, fill="none", stroke=colour, stroke_width=round(thickness, 1),
                stroke_dasharray="6 4" if a.deviation == "less" else None, marker_end=f"url(#{marker})"),
            _el("text", text, x=lx, y=ly, text_anchor=anchor, font_size=11, fill=colour if a.deviation else INK,
                stroke="#ffffff", stroke_width=3, paint_order="stroke"),
        ]), class_=f"flow-edge{' flow-' + a.deviation if a.deviation else ''}"))
    for i, n in enumerate(nodes):
        x, y = cx - BOX_W / 2, y_top(i)
        figures = _.plural("flow.node_figures", n.stays, n=_.num(n.stays), time=_.minutes(n.median_ms))
        body.append(_el("g", _join([
            _el("title", f"{n.title}: {figures}"),
            _el("rect", x=x, y=y, width=BOX_W, height=BOX_H, rx=6, fill="#f6f8fa", stroke=INK, stroke_width=1),
            _text(cx, y + 19, _short(n.title), anchor="middle", size=13, weight="600"),
            _text(cx, y + 36, figures, anchor="middle", size=11, fill=MUTED),
        ]), class_="flow-step"))
    return Markup(
        f'<svg xmlns="{SVG_NS}" class="chart flow-map" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-label="{escape(label)}">'
    ) + _el("title", label) + _join(body) + Markup("</svg>")

