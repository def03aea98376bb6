"""The composites along an additive model's score / cost front: the upper-left convex hull.

Path-priority's scoreboard and GuidedSearch's additive model give every (layer, choice) a score; a
latency table or a cost table gives it a cost (milliseconds, MACs, parameters). Both sum over the
layers, so the architectures that maximise ``total score - lam * total cost`` for some ``lam >= 0``
(the Lagrangian of "best score within a cost budget") are found layer by layer: each layer's best
choice as a function of ``lam`` is the upper envelope of the lines ``score[c] - lam * cost[c]``, a
staircase whose steps (breakpoints) are computed exactly (as fractions, no grid of ``lam``). Merging
the layers' breakpoints gives every vertex of the upper-left convex hull of the composites'
``(cost, score)`` points, from the highest score (``lam = 0``) down to the cheapest architecture.

Limit: an architecture in a concave gap of the front (on the Pareto front, but below the hull's
chord between two vertices) maximises no Lagrangian and is never returned.

>>> pts = convex_front([[3.0, 2.0, 0.0], [1.0, 0.0]], [[5.0, 2.0, 1.0], [2.0, 1.0]])
>>> [(p.arch, p.score, p.cost) for p in pts]
[((0, 0), 4.0, 7.0), ((1, 0), 3.0, 4.0), ((1, 1), 2.0, 3.0), ((2, 1), 0.0, 2.0)]
>>> [p.arch for p in convex_front([[3.0, 2.0, 0.0], [1.0, 0.0]], [[5.0, 2.0, 1.0], [2.0, 1.0]], k=2)]
[(0, 0), (2, 1)]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction

import attrs

from autopanoptic.search.space import Arch

__all__ = ["HullPoint", "convex_front", "spread"]


@attrs.frozen
class HullPoint:
    """One vertex of the hull: the architecture, its total score and cost, and the interval
    ``(lam_lo, lam_hi)`` of Lagrange multipliers for which it is the maximiser (``lam_hi`` is
    ``inf`` for the cheapest vertex)."""

    arch: Arch
    score: float
    cost: float
    lam_lo: float
    lam_hi: float


def _rows(value: Iterable[Iterable[float]], name: str) -> list[list[Fraction]]:
    out = []
    for i, row in enumerate(value):
        r = [float(x) for x in row]
        if not r or not all(math.isfinite(x) for x in r):
            raise ValueError(f"{name}: layer {i} must have at least one finite number per choice, got {r}")
        out.append([Fraction(x) for x in r])
    return out


def _envelope(score: list[Fraction], cost: list[Fraction], allowed: Sequence[int]) -> list[tuple[int, Fraction]]:
    """One layer's staircase: ``[(choice, lam at which it starts)]``, the first at ``lam = 0``.

    Start: the highest score, then the lowest cost, then the lower index. Each step moves to the
    cheaper choice reached at the smallest ``lam`` (``(s_cur - s_c) / (w_cur - w_c)``); among choices
    reached at the same ``lam`` (collinear ones) the cheapest, then the lower index."""
    cur = min(allowed, key=lambda c: (-score[c], cost[c], c))
    steps = [(cur, Fraction(0))]
    while True:
        cheaper = [c for c in allowed if cost[c] < cost[cur]]
        if not cheaper:
            return steps
        cur = min(cheaper, key=lambda c: ((score[cur] - score[c]) / (cost[cur] - cost[c]), cost[c], c))
        steps.append((cur, (score[steps[-1][0]] - score[cur]) / (cost[steps[-1][0]] - cost[cur])))


def spread(n: int, k: int | None) -> list[int]:
    """``k`` indices of ``range(n)`` evenly spread, both ends included (all of them when ``k`` is
    ``None`` or ``>= n``).

    >>> spread(10, 4), spread(3, 5), spread(5, 1)
    ([0, 3, 6, 9], [0, 1, 2], [0])
    """
    if k is None or k >= n:
        return list(range(n))
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if k == 1:
        return [0] if n else []
    return [round(i * (n - 1) / (k - 1)) for i in range(k)]


def convex_front(
    scores: Iterable[Iterable[float]],
    costs: Iterable[Iterable[float]],
    *,
    k: int | None = None,
    allowed: Sequence[Iterable[int]] | None = None,
    constraint: Callable[[Arch], bool] | None = None,
) -> tuple[HullPoint, ...]:
    """The vertices of the upper-left convex hull of the additive ``(cost, score)`` front, highest
    score first (``lam = 0``: the top composite), cost and score strictly decreasing after it.

    Args:
        scores, costs: one row per layer, one number per choice (e.g. ``Scoreboard.scores`` and a
            latency table's ``layer_ms``); costs should be non-negative for the totals to mean
            anything, but only their differences within a layer matter.
        k: at most this many points, evenly spread along the list by position (both ends kept;
            ``None``: all of them).
        allowed: per layer, the choice indices that may be used (``None``: all).
        constraint: a predicate on an architecture; vertices that violate it are skipped (not
            replaced), before ``k`` is applied.

    Ties: at ``lam = 0`` a layer takes its highest-scoring choice, the cheapest of equal scores, then
    the lower choice index (so the first point is ``Scoreboard.best()`` unless a tied choice is
    cheaper: that one dominates it); choices equal in score and cost go to the lower index. Where
    several layers switch at the same ``lam`` they switch together (the composites in between lie
    on a hull edge, not at a vertex).
    """
    S, W = _rows(scores, "scores"), _rows(costs, "costs")
    if [len(r) for r in S] != [len(r) for r in W]:
        raise ValueError(f"scores have {[len(r) for r in S]} choices per layer, costs {[len(r) for r in W]}")
    if allowed is None:
        allow = [list(range(len(r))) for r in S]
    else:
        allow = [sorted({int(c) for c in a}) for a in allowed]
        if len(allow) != len(S):
            raise ValueError(f"allowed names {len(allow)} layers, scores {len(S)}")
        for i, (a, r) in enumerate(zip(allow, S)):
            if not a or not all(0 <= c < len(r) for c in a):
                raise ValueError(f"allowed: layer {i} needs at least one choice in 0..{len(r) - 1}, got {a}")
    stairs = [_envelope(s, w, a) for s, w, a in zip(S, W, allow)]
    lams = sorted({lam for st in stairs for _, lam in st[1:]})
    arch = [st[0][0] for st in stairs]
    pos = [0] * len(stairs)
    bounds = [Fraction(0), *lams]
    out: list[HullPoint] = []
    for j, lo in enumerate(bounds):
        for i, st in enumerate(stairs):  # every layer whose next step starts at lo takes it
            while pos[i] + 1 < len(st) and st[pos[i] + 1][1] == lo:
                pos[i] += 1
                arch[i] = st[pos[i]][0]
        a = tuple(arch)
        if constraint is None or constraint(a):
            hi = float(bounds[j + 1]) if j + 1 < len(bounds) else math.inf
            out.append(HullPoint(a, float(sum(S[i][c] for i, c in enumerate(a))),
                                 float(sum(W[i][c] for i, c in enumerate(a))), float(lo), hi))
    return tuple(out[i] for i in spread(len(out), k))
