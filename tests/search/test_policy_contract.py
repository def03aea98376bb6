"""The contract every search policy keeps. A new policy adds one line to POLICIES.

Each entry builds a small policy from keyword arguments (``constraint=...``).
"""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from autopanoptic.search import ConstraintError, Evolution, GuidedSearch, PathPriority, RandomSearch, run
from autopanoptic.search.spaces import auto_panoptic, nas_bench_macro
from autopanoptic.search.toy import Landscape

from strategies import search_spaces

POLICIES = [
    pytest.param(lambda **kw: PathPriority(cycles=3, **kw), id="path-priority"),
    pytest.param(lambda **kw: PathPriority(cycles=6, **kw), id="path-priority-6"),
    pytest.param(lambda **kw: Evolution(population=8, generations=4, top_k=3, mutations=3, crossovers=3, **kw), id="evolution"),
    pytest.param(lambda **kw: Evolution(population=6, generations=5, top_k=2, mutations=4, crossovers=2, budget=20, **kw), id="evolution-budget"),
    pytest.param(lambda **kw: RandomSearch(budget=15, batch_size=4, **kw), id="random"),
    pytest.param(lambda **kw: GuidedSearch(budget=16, **kw), id="guided"),
]


def tie_heavy(archs):
    """A deterministic objective with many ties."""
    return [float(sum((i + 1) * c for i, c in enumerate(a)) % 5) for a in archs]


def drive(policy, space, seed, objective=tie_heavy, max_rounds=10_000):
    """Drive a policy by hand (no run loop); returns (all proposed batches, final state)."""
    state = policy.init(space, seed)
    batches = []
    for _ in range(max_rounds):
        if policy.done(state):
            return batches, state
        archs, state = policy.ask(state)
        assert archs or policy.max_proposals(space) >= space.size, "empty batches only when the space runs out"
        again, state2 = policy.ask(state)  # asking again before telling repeats the batch
        assert again == archs and state2 == state
        batches.append(archs)
        state = policy.tell(state, archs, objective(list(archs)))
    raise AssertionError("policy never finished")


@pytest.mark.parametrize("make", POLICIES)
@given(space=search_spaces(max_layers=20, max_choices=6), seed=st.integers(0, 2**31))
def test_valid_deterministic_and_finishes(make, space, seed):
    policy = make()
    batches, state = drive(policy, space, seed)
    assert batches, "a policy proposes something before it is done"
    for batch in batches:
        for arch in batch:
            assert space.validate(arch) == arch
    best = policy.best(state)
    assert best is not None and space.validate(best) == best
    assert sum(len(b) for b in batches) <= policy.max_proposals(space)
    # the same seed gives the same proposals and the same result
    batches2, state2 = drive(make(), space, seed)
    assert batches2 == batches and state2 == state
    assert make().best(make().init(space, seed)) is None  # nothing told yet


@pytest.mark.parametrize("make", POLICIES)
def test_seed_changes_proposals(make):
    space = auto_panoptic()
    first = {drive(make(), space, seed)[0][0] for seed in range(4)}
    assert len(first) == 4


SMALL_AP = auto_panoptic(backbone_blocks=(1, 1, 1, 1), mask_layers=1, semantic_layers=1)


@pytest.mark.parametrize("make", POLICIES)
@pytest.mark.parametrize(("space", "limit"), [(nas_bench_macro(), 3), (SMALL_AP, 5)], ids=["macro", "small-ap"])
def test_constraint_is_never_violated(make, space, limit):
    """A binding constraint, e.g. a FLOPs budget: few layers may use op 2."""

    def allowed(arch):
        return arch.count(2) <= limit

    calls = []

    def constraint(arch):
        calls.append(arch)
        return allowed(arch)

    policy = make(constraint=constraint)
    result = run(policy, space, tie_heavy, seed=3, progress=False)
    assert any(not allowed(a) for a in calls), "the constraint was binding (violators were drawn and refused)"
    assert result.history
    assert all(allowed(a) for a, _ in result.history)
    assert allowed(result.best)
    if isinstance(policy, PathPriority):
        assert all(allowed(a) for a in policy.top_k(result.state, 5))


@pytest.mark.parametrize("make", POLICIES)
@pytest.mark.parametrize("space", [nas_bench_macro(), auto_panoptic()], ids=["macro", "paper"])
def test_unsatisfiable_constraint_fails_clearly(make, space):
    with pytest.raises(ConstraintError, match="constraint"):
        run(make(constraint=lambda arch: False, max_tries=50), space, tie_heavy, seed=0, progress=False)


@pytest.mark.parametrize("make", POLICIES)
def test_resume_gives_the_uninterrupted_result(make, tmp_path):
    space = auto_panoptic(backbone_blocks=(2, 2, 2, 2))
    land = Landscape.random(space, 1, noise=0.1)
    calls = []
    reference = run(make(), space, lambda archs: calls.append(archs) or land(archs), seed=11, progress=False)
    assert len(calls) >= 2
    evaluated = []

    class Boom(Exception):
        pass

    def flaky(archs):
        if len(evaluated) >= len(calls) // 2:
            raise Boom
        evaluated.append(list(archs))
        return land(archs)

    journal = tmp_path / "journal.jsonl"
    with pytest.raises(Boom):
        run(make(), space, flaky, seed=11, journal=journal, progress=False)
    done_before = {tuple(a) for batch in evaluated for a in batch}
    seen_after = []

    def counting(archs):
        seen_after.extend(archs)
        return land(archs)

    resumed = run(make(), space, counting, seed=11, journal=journal, progress=False)
    assert resumed == reference
    assert not done_before & set(seen_after), "journaled architectures are never evaluated again"
    assert len(seen_after) == reference.n_evaluations - len(done_before)
    # running once more replays everything without evaluating
    assert run(make(), space, lambda a: pytest.fail("evaluated again"), seed=11, journal=journal, progress=False) == reference
