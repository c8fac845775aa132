"""What a viewer is shown of the peers a coached manager is measured against.

An evaluation compares the coached manager with peers (coaching/evaluation.py), and the before/after
chart draws the peers' daily median. Someone who may see every one of those peers (an admin; a
director when the peers are in the teams they lead) is shown them as they are, names included.
Anyone else, the coached manager first of all, is shown the peers only as one anonymous group: how
many they are and their medians, and only when the group counts at least `min_group` people
(STEPWATCH_PEER_GROUP_MIN). Below that, a median of two or three people is nearly each one's own,
so the peers' figures are left out and the figures say the group is too small to show.

The verdict and the manager's effect relative to the peers stay: they are the manager's own result.

Pure: takes and returns the JSON-ready dicts of a stored evaluation's figures and of a chart.
"""

from __future__ import annotations

from typing import Any, Literal

PeerGroup = Literal["named", "anonymous", "too_small"]

#: the figures that describe the peers themselves (coaching.evaluation.Evaluation)
PEER_FIGURES = ("peers_pre_median_ms", "peers_post_median_ms", "peers_change_pct")
#: how the reason about the peers' change starts (coaching.evaluation.evaluate)
PEERS_REASON = "peers ("


def group(count: int, *, named: bool, min_group: int) -> PeerGroup:
    """How a group of `count` peers is shown: by name, as an anonymous group, or not at all."""
    if named:
        return "named"
    return "anonymous" if count >= min_group else "too_small"


def evaluation_figures(figures: dict[str, Any], *, named: bool, min_group: int) -> dict[str, Any]:
    """A stored evaluation's figures as this viewer is shown them: `peers` (the names) only when
    `named`; `peers_n` (None when too small) and `peer_group` always."""
    peers = list(figures.get("peers") or [])
    shown_as = group(len(peers), named=named, min_group=min_group)
    shown = {**figures, "peer_group": shown_as, "peers_n": len(peers)}
    if shown_as == "named":
        return shown
    shown.pop("peers", None)
    if shown_as == "too_small":
        shown.update({name: None for name in PEER_FIGURES}, peers_n=None)
        reasons = [r for r in figures.get("reasons") or [] if not str(r).startswith(PEERS_REASON)]
        if peers:
            reasons.append(f"the peers compared with are fewer than {min_group}: their figures are not shown")
        shown["reasons"] = reasons
    return shown


def before_after(picture: dict[str, Any], *, named: bool, min_group: int) -> dict[str, Any]:
    """A before/after chart's data as this viewer is shown it: the peers' daily medians only for a
    group of at least `min_group` (or when `named`)."""
    count = int(picture.get("peers_n") or 0)
    shown_as = group(count, named=named, min_group=min_group)
    shown = {**picture, "peer_group": shown_as}
    if shown_as == "too_small":
        shown.update(peers_ms=[None] * len(picture.get("peers_ms") or []), peers_n=None)
    return shown
