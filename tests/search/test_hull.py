"""The additive score / cost front (``autopanoptic.search.hull``) against brute force on small spaces."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest
from hypothesis import given, strategies as st

from autopanoptic.search.hull import convex_front, spread
from autopanoptic.search.pareto import dominates
from autopanoptic.search.scoreboard import Scoreboard


@st.composite
def additive_models(draw, max_layers: int = 4, max_choices: int = 4):
    """Small tables of scores (half-integers, ties likely, like a scoreboard's) and integer costs,
    with a non-empty set of allowed choices per layer."""
    n = draw(st.lists(st.integers(1, max_choices), min_size=1, max_size=max_layers))
    scores = [draw(st.lists(st.integers(0, 8), min_size=c, max_size=c)) for c in n]
    costs = [draw(st.lists(st.integers(0, 6), min_size=c, max_size=c)) for c in n]
    allowed = [draw(st.sets(st.integers(0, c - 1), min_size=1)) for c in n]
    return [[s / 2 for s in row] for row in scores], [[float(w) for w in row] for row in costs], allowed


def _total(table, arch):
    return sum(Fraction(table[i][c]) for i, c in enumerate(arch))


def _all(allowed):
    return list(itertools.product(*[sorted(a) for a in allowed]))


def _value(scores, costs, arch, lam):
    return _total(scores, arch) - lam * _total(costs, arch)


@given(additive_models())
def test_every_point_is_the_maximiser_of_its_lagrangian_interval(model):
    scores, costs, allowed = model
    pts = convex_front(scores, costs, allowed=allowed)
    everything = _all(allowed)
    for p in pts:
        assert all(c in allowed[i] for i, c in enumerate(p.arch))
        assert (p.score, p.cost) == (float(_total(scores, p.arch)), float(_total(costs, p.arch)))
        lam = Fraction(p.lam_lo) + 1 if p.lam_hi == float("inf") else (Fraction(p.lam_lo) + Fraction(p.lam_hi)) / 2
        best = max(_value(scores, costs, a, lam) for a in everything)
        assert _value(scores, costs, p.arch, lam) == best
    assert [p.lam_lo for p in pts][0] == 0.0 and all(a.lam_hi == b.lam_lo for a, b in zip(pts, pts[1:]))


@given(additive_models(), st.fractions(min_value=0, max_value=20))
def test_the_points_attain_the_envelope_at_every_lambda(model, lam):
    """Completeness: no Lagrangian is maximised only by architectures the front left out."""
    scores, costs, allowed = model
    pts = convex_front(scores, costs, allowed=allowed)
    best = max(_value(scores, costs, a, lam) for a in _all(allowed))
    assert max(_value(scores, costs, p.arch, lam) for p in pts) == best


@given(additive_models(), st.one_of(st.none(), st.integers(1, 6)))
def test_points_do_not_dominate_each_other_and_costs_fall_along_the_list(model, k):
    scores, costs, allowed = model
    pts = convex_front(scores, costs, allowed=allowed, k=k)
    assert len(pts) >= 1 and (k is None or len(pts) <= k)
    for p, q in itertools.permutations(pts, 2):
        assert not dominates((p.score, p.cost), (q.score, q.cost), ("max", "min"))
    assert all(a.cost > b.cost and a.score > b.score for a, b in zip(pts, pts[1:]))
    if k == 1:
        return
    # the cheapest end (kept by k) is the cheapest architecture (the best-scoring of those)
    everything = _all(allowed)
    cheapest = min(_total(costs, a) for a in everything)
    assert pts[-1].cost == float(cheapest)
    assert pts[-1].score == float(max(_total(scores, a) for a in everything if _total(costs, a) == cheapest))


@given(additive_models())
def test_the_lambda_zero_end_is_the_top_composite(model):
    scores, costs, _ = model
    first = convex_front(scores, costs)[0]
    board = Scoreboard(tuple(len(r) for r in scores), scores)
    assert first.score == board.total(board.best())
    # it is the plain best unless a tied choice is cheaper (which then dominates the plain best)
    if all(row.count(max(row)) == 1 for row in scores):
        assert first.arch == board.best()
    else:
        assert first.cost <= float(_total(costs, board.best()))


@given(additive_models())
def test_a_constraint_skips_violators_and_keeps_the_rest(model):
    scores, costs, allowed = model
    full = convex_front(scores, costs, allowed=allowed)
    limit = full[len(full) // 2].cost
    kept = convex_front(scores, costs, allowed=allowed, constraint=lambda a: float(_total(costs, a)) <= limit)
    assert kept == tuple(p for p in full if p.cost <= limit)


def test_ties_in_score_and_cost_go_to_the_lower_choice_index():
    pts = convex_front([[1.0, 1.0, 0.0], [2.0, 2.0]], [[3.0, 3.0, 1.0], [1.0, 1.0]])
    assert [p.arch for p in pts] == [(0, 0), (2, 0)]
    # layers switching at the same lambda switch together: the composite in between is on an edge
    pts = convex_front([[2.0, 0.0], [4.0, 2.0]], [[2.0, 0.0], [4.0, 2.0]])
    assert [p.arch for p in pts] == [(0, 0), (1, 1)]


def test_k_spreads_the_points_evenly_and_keeps_both_ends():
    scores = [[float(c) for c in range(6)] for _ in range(3)]
    costs = [[float(c * c * (i + 1)) for c in range(6)] for i in range(3)]
    full = convex_front(scores, costs)
    # layer i steps at lam = 1 / ((2c + 1) (i + 1)), c = 0..4: 15 steps at 13 distinct lambdas
    assert len(full) == 14
    few = convex_front(scores, costs, k=4)
    assert few == tuple(full[i] for i in spread(len(full), 4)) and few[0] == full[0] and few[-1] == full[-1]


def test_bad_tables_are_clear_errors():
    with pytest.raises(ValueError, match="choices per layer"):
        convex_front([[1.0, 2.0]], [[1.0]])
    with pytest.raises(ValueError, match="finite"):
        convex_front([[float("nan")]], [[1.0]])
    with pytest.raises(ValueError, match="allowed: layer 0"):
        convex_front([[1.0, 2.0]], [[1.0, 2.0]], allowed=[[]])


# ---- the policies' fronts ----------------------------------------------------------------------

from autopanoptic.search import GuidedSearch, PathPriority, run  # noqa: E402
from autopanoptic.search.spaces import auto_panoptic  # noqa: E402
from autopanoptic.search.toy import Landscape  # noqa: E402

SPACE = auto_panoptic((1, 1, 1, 1))  # 21 layers


def _costs(seed):
    import numpy as np

    gen = np.random.default_rng(seed)
    return [list(gen.uniform(0.1, 2.0, n)) for n in SPACE.n_choices]


@pytest.mark.parametrize("policy", [PathPriority(cycles=2), GuidedSearch(budget=24)], ids=["path-priority", "guided"])
def test_a_policy_front_runs_from_its_own_bet_to_the_cheapest_architecture(policy):
    land = Landscape.random(SPACE, seed=1)
    costs = _costs(2)
    assert policy.front(policy.init(SPACE, seed=0), costs) == ()  # nothing told yet
    state = run(policy, SPACE, land, seed=0, progress=False).state
    front = policy.front(state, costs)
    if isinstance(policy, PathPriority):
        scores = state.board.scores
        assert front[0] == policy.best(state) or state.board.total(front[0]) == state.board.total(policy.best(state))
    else:
        model = policy.model(state)
        scores = [list(model.mean[o : o + n]) for o, n in zip(model.offsets, model.n_choices)]
        assert front[0] == model.composite()
    assert front == tuple(p.arch for p in convex_front(scores, costs))
    assert front[-1] == tuple(min(range(len(r)), key=r.__getitem__) for r in costs)
    assert len(front) > 2 and len(policy.front(state, costs, k=3)) == 3
    cost = [sum(costs[i][c] for i, c in enumerate(a)) for a in front]
    assert cost == sorted(cost, reverse=True)


@pytest.mark.parametrize("policy", [PathPriority(cycles=2), GuidedSearch(budget=24)], ids=["path-priority", "guided"])
def test_a_policy_front_keeps_within_the_policy_constraint(policy):
    import attrs

    costs = _costs(3)
    state = run(policy, SPACE, Landscape.random(SPACE, seed=4), seed=0, progress=False).state
    free = policy.front(state, costs)
    limit = sorted(sum(costs[i][c] for i, c in enumerate(a)) for a in free)[len(free) // 2]

    def within(a):
        return sum(costs[i][c] for i, c in enumerate(a)) <= limit

    front = attrs.evolve(policy, constraint=within).front(state, costs)
    assert front and all(within(a) for a in front)
    assert front == tuple(a for a in free if within(a)) and len(front) < len(free)
