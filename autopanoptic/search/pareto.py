"""Pareto dominance and Pareto sets over several objectives (plain functions, no torch).

A point is a tuple of objective values; ``senses`` says per objective whether larger is better
(``"max"``, e.g. fitness) or smaller (``"min"``, e.g. latency, MACs, parameters). Point ``a``
dominates ``b`` when it is at least as good in every objective and strictly better in one. The
Pareto set of a list of candidates is the candidates no other candidate dominates (equal points
do not dominate each other: all of them are kept).

>>> pts = [(0.40, 12.0), (0.45, 20.0), (0.38, 15.0), (0.45, 18.0)]
>>> pareto_indices(pts, ("max", "min"))
[0, 3]
>>> round(hypervolume_2d([pts[i] for i in (0, 3)], ref=(0.0, 30.0), senses=("max", "min")), 3)
7.8
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["dominates", "front_order", "hypervolume_2d", "pareto_indices"]

SENSES = ("max", "min")


def _check(senses: Sequence[str], *points: Sequence[float]) -> None:
    for s in senses:
        if s not in SENSES:
            raise ValueError(f"an objective's sense must be 'max' or 'min', got {s!r}")
    for p in points:
        if len(p) != len(senses):
            raise ValueError(f"a point has {len(p)} objectives, senses name {len(senses)}")


def _better_or_equal(x: float, y: float, sense: str) -> bool:
    return x >= y if sense == "max" else x <= y


def dominates(a: Sequence[float], b: Sequence[float], senses: Sequence[str]) -> bool:
    """Whether ``a`` is at least as good as ``b`` in every objective and strictly better in one.

    >>> dominates((0.5, 10), (0.4, 10), ("max", "min")), dominates((0.5, 10), (0.5, 10), ("max", "min"))
    (True, False)
    """
    _check(senses, a, b)
    return all(_better_or_equal(x, y, s) for x, y, s in zip(a, b, senses)) and any(
        x != y for x, y in zip(a, b))


def pareto_indices(points: Sequence[Sequence[float]], senses: Sequence[str]) -> list[int]:
    """Indices (ascending) of the points no other point dominates."""
    _check(senses, *points)
    keep = []
    for i, p in enumerate(points):
        if not any(dominates(q, p, senses) for j, q in enumerate(points) if j != i):
            keep.append(i)
    return keep


def front_order(points: Sequence[Sequence[float]], senses: Sequence[str], by: int = 1) -> list[int]:
    """The Pareto set's indices in the order its members are numbered for users: best first in
    objective ``by`` (for ``("max", "min")`` with ``by=1``: the cheapest first), ties broken by the
    other objectives in order, then by index. Equal points are all members; only the first of them
    (lowest index) is kept, so that every member of the numbered front is a distinct trade-off.

    >>> front_order([(0.40, 12.0), (0.45, 20.0), (0.38, 15.0), (0.45, 18.0), (0.40, 12.0)], ("max", "min"))
    [0, 3]
    """
    _check(senses, *points)
    if not 0 <= by < len(senses):
        raise ValueError(f"by={by} is not an objective index (there are {len(senses)})")
    order = [by] + [k for k in range(len(senses)) if k != by]

    def key(i: int) -> tuple:
        return tuple(-points[i][k] if senses[k] == "max" else points[i][k] for k in order) + (i,)

    out, seen = [], set()
    for i in sorted(pareto_indices(points, senses), key=key):
        p = tuple(points[i])
        if p not in seen:
            seen.add(p)
            out.append(i)
    return out


def hypervolume_2d(front: Sequence[Sequence[float]], ref: Sequence[float], senses: Sequence[str]) -> float:
    """Area dominated by ``front`` (two objectives) and bounded by the reference point ``ref`` (a point
    worse than every member in both objectives; members not better than ``ref`` add nothing)."""
    _check(senses, ref, *front)
    if len(senses) != 2:
        raise ValueError("hypervolume_2d takes exactly two objectives")
    # as "larger is better" in both objectives, measured from ref
    pts = []
    for p in front:
        g = [(p[k] - ref[k]) if senses[k] == "max" else (ref[k] - p[k]) for k in range(2)]
        if g[0] > 0 and g[1] > 0:
            pts.append(g)
    pts.sort(key=lambda g: (-g[0], -g[1]))
    area, best_y = 0.0, 0.0
    for x, y in pts:  # x decreasing: each point adds the strip above the best y so far
        if y > best_y:
            area += x * (y - best_y)
            best_y = y
    return float(area)
