"""The drawdown page's "compared like with like": how the analysis accounted for the mix of clients
(analysis/strata.py), said in the reader's language from a stats row's `case_mix`.

Attribute values are shown by their titles from the process definition, never as keys; shares and
minutes through the translator. The JSON twin keeps the machine values (the row's `case_mix`).
"""

from __future__ import annotations

from typing import Any

from dashboards.i18n import Translator
from kernel.processes import Process

#: Below this many minutes a week the adjusted excess is said to be nothing.
NOTHING_LEFT_MINUTES = 0.5
#: A share this much larger than the team's, of a kind the team has too few sessions of to scale, is said.
NOTABLE_SHARE = 0.15


def kind_words(attributes: dict[str, str], process: Process | None) -> str:
    """The titles of a stratum's values ("VIP, phone"); the keys only when the process has no title."""
    return ", ".join(process.value_title(n, v) if process else v for n, v in attributes.items())


def case_mix_view(_: Translator, mix: dict[str, Any] | None, process: Process | None,
                  who: str) -> dict[str, Any] | None:
    """The sentence and the table of the partial _case_mix.html, or None when the pair was not compared
    like for like (the site declares no attributes, or the team's sessions are all of one kind)."""
    if not mix:
        return None
    raw = mix["minutes_above_reference_per_week"]
    adjusted = mix["adjusted_minutes_above_reference_per_week"]
    raw_words, adjusted_words = _("unit.min", n=_.num(raw)), _("unit.min", n=_.num(adjusted))
    main = next((s for s in mix["strata"] if mix.get("main") and s["attributes"] == mix["main"]), None)
    # a kind the manager serves much more of, which the team has too few sessions of to scale by
    unscaled = next((s for s in mix["strata"] if s["factor"] == 1 and s["attributes"]
                     and s["manager_share"] - s["team_share"] >= NOTABLE_SHARE), None)
    if main is None and unscaled is not None:
        sentence = _("case_mix.not_scaled", manager=who, share=_.pct(unscaled["manager_share"]),
                     kind=kind_words(unscaled["attributes"], process), team_share=_.pct(unscaled["team_share"]),
                     adjusted=adjusted_words)
    elif main is None:
        sentence = _("case_mix.same_mix", manager=who, adjusted=adjusted_words, raw=raw_words)
    else:
        values = {"manager": who, "share": _.pct(main["manager_share"]),
                  "kind": kind_words(main["attributes"], process), "team_share": _.pct(main["team_share"]),
                  "adjusted": adjusted_words, "raw": raw_words}
        sentence = _("case_mix.nothing_left" if adjusted < NOTHING_LEFT_MINUTES else "case_mix.sentence", **values)
    rows = [{"kind": kind_words(s["attributes"], process) or _("case_mix.no_attributes"),
             "manager_share": _.pct(s["manager_share"]), "team_share": _.pct(s["team_share"]),
             "factor": _("case_mix.factor", x=_.num(s["factor"], 2)), "sessions": _.num(s["manager_sessions"])}
            for s in mix["strata"]]
    return {"sentence": sentence, "rows": rows,
            "medians": _("case_mix.medians", raw=_.minutes(mix["median_ms"]),
                         adjusted=_.minutes(mix["adjusted_median_ms"]))}
