"""Pareto dominance, Pareto sets and 2-d hypervolume (Hypothesis properties)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, strategies as st

from autopanoptic.search.pareto import dominates, hypervolume_2d, pareto_indices

senses2 = st.tuples(st.sampled_from(["max", "min"]), st.sampled_from(["max", "min"]))
values = st.integers(0, 6)  # small integer grids: many ties and equal points


@st.composite
def point_sets(draw, dims=None):
    k = dims or draw(st.integers(1, 3))
    senses = tuple(draw(st.sampled_from(["max", "min"])) for _ in range(k))
    pts = draw(st.lists(st.tuples(*[values] * k), min_size=0, max_size=14))
    return pts, senses


@given(point_sets())
def test_no_member_is_dominated_and_every_non_dominated_point_is_kept(ps):
    pts, senses = ps
    front = pareto_indices(pts, senses)
    for i in front:
        assert not any(dominates(pts[j], pts[i], senses) for j in range(len(pts)))
    for i in set(range(len(pts))) - set(front):
        assert any(dominates(pts[j], pts[i], senses) for j in front)  # dominated by a member of the front


@given(point_sets(), st.randoms())
def test_the_pareto_set_does_not_depend_on_the_order(ps, rnd):
    pts, senses = ps
    order = list(range(len(pts)))
    rnd.shuffle(order)
    shuffled = [pts[i] for i in order]
    assert sorted(pts[i] for i in pareto_indices(pts, senses)) == sorted(shuffled[i] for i in pareto_indices(shuffled, senses))


@given(point_sets())
def test_dominance_is_a_strict_partial_order(ps):
    pts, senses = ps
    for a, b, c in itertools.product(pts[:6], repeat=3):
        assert not dominates(a, a, senses)
        assert not (dominates(a, b, senses) and dominates(b, a, senses))
        if dominates(a, b, senses) and dominates(b, c, senses):
            assert dominates(a, c, senses)


@given(point_sets(dims=2))
def test_hypervolume_equals_the_area_counted_on_a_grid(ps):
    pts, senses = ps
    ref = tuple(-1 if s == "max" else 7 for s in senses)
    hv = hypervolume_2d(pts, ref, senses)
    # count unit cells of the grid dominated by some point (integer coordinates: exact)
    cells = 0
    for x in range(-1, 7):
        for y in range(-1, 7):
            corner = (x + 1 if senses[0] == "max" else x, y + 1 if senses[1] == "max" else y)
            cells += any(all((p[k] >= corner[k]) if senses[k] == "max" else (p[k] <= corner[k]) for k in range(2))
                         for p in pts)
    assert hv == pytest.approx(cells)
    front = [pts[i] for i in pareto_indices(pts, senses)] if pts else []
    assert hypervolume_2d(front, ref, senses) == pytest.approx(hv)  # dominated points add nothing


def test_bad_senses_and_shapes_are_refused():
    with pytest.raises(ValueError, match="sense"):
        pareto_indices([(1, 2)], ("max", "down"))
    with pytest.raises(ValueError, match="objectives"):
        dominates((1, 2, 3), (1, 2), ("max", "min"))
    with pytest.raises(ValueError, match="two objectives"):
        hypervolume_2d([(1, 2, 3)], (0, 0, 0), ("max", "max", "max"))
    assert np.isclose(hypervolume_2d([], (0, 0), ("max", "max")), 0)


@given(point_sets(dims=2), st.randoms())
def test_the_numbered_front_is_the_distinct_pareto_points_cheapest_first(ps, rnd):
    from autopanoptic.search.pareto import front_order

    pts, senses = ps
    order = front_order(pts, senses)
    assert sorted({tuple(pts[i]) for i in order}) == sorted({tuple(pts[i]) for i in pareto_indices(pts, senses)})
    assert len(order) == len({tuple(pts[i]) for i in order})  # one member per distinct trade-off
    better = (lambda a, b, s: a > b if s == "max" else a < b)
    for i, j in zip(order, order[1:]):  # along a 2-d front: better in objective 1, so worse in objective 0
        assert better(pts[i][1], pts[j][1], senses[1]) and better(pts[j][0], pts[i][0], senses[0])
    shuffled = list(pts)
    rnd.shuffle(shuffled)
    assert [tuple(pts[i]) for i in order] == [tuple(shuffled[i]) for i in front_order(shuffled, senses)]


def test_front_order_refuses_a_bad_objective_index():
    from autopanoptic.search.pareto import front_order

    with pytest.raises(ValueError, match="not an objective"):
        front_order([(1, 2)], ("max", "min"), by=2)
