"""GuidedSearch beyond the shared contract: its model, its rank invariance, its batches."""

from __future__ import annotations

import doctest
import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import autopanoptic.search.policies.guided as guided_module
from autopanoptic.errors import ConfigError
from autopanoptic.search import GuidedSearch, run
from autopanoptic.search.policies.guided import fit_additive, normal_scores
from autopanoptic.search.spaces import auto_panoptic, nas_bench_macro
from autopanoptic.search.toy import Landscape

from strategies import search_spaces


def test_docstring_examples():
    result = doctest.testmod(guided_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 5 and result.failed == 0


@given(st.lists(st.integers(-10**6, 10**6), min_size=1, max_size=40))
def test_normal_scores_keep_order_and_ties(values):
    y = np.array(values, dtype=float)
    z = normal_scores(y)
    for i, j in itertools.combinations(range(len(y)), 2):
        assert np.sign(z[i] - z[j]) == np.sign(y[i] - y[j])  # ties get equal scores
    if len(set(values)) == len(values):
        assert abs(z.sum()) < 1e-9  # without ties: symmetric around 0
    assert np.allclose(normal_scores(3.0 * y + 7.0), z)  # free of the fitness scale


@st.composite
def small_additive(draw):
    """A small space (at most 400 architectures) and distinct main effects per (layer, choice)."""
    n_choices = draw(st.lists(st.integers(1, 4), min_size=1, max_size=5).filter(lambda n: np.prod(n) <= 400))
    effects = [draw(st.lists(st.integers(-50, 50), min_size=n, max_size=n, unique=True)) for n in n_choices]
    return tuple(n_choices), effects


@given(small_additive())
def test_model_of_a_full_factorial_additive_fitness_finds_the_best(problem):
    """Evaluating every architecture of an additive fitness, the model's composite is the optimum
    (what path-priority's scoreboard promises for independent layers)."""
    n_choices, effects = problem
    archs = list(itertools.product(*(range(n) for n in n_choices)))
    fits = [float(sum(e[c] for e, c in zip(effects, a))) for a in archs]
    model = fit_additive(n_choices, archs, fits)
    assert model.composite() == tuple(int(np.argmax(e)) for e in effects)
    pred = model.predict(np.array(archs))
    best = int(np.argmax(fits))
    assert pred[best] == pytest.approx(pred.max())


def drive(policy, space, objective, seed):
    state = policy.init(space, seed)
    batches = []
    while not policy.done(state):
        archs, state = policy.ask(state)
        batches.append(archs)
        state = policy.tell(state, archs, objective(list(archs)))
    return batches, state


@settings(max_examples=10)
@given(space=search_spaces(min_layers=2, max_layers=12, max_choices=5), seed=st.integers(0, 2**31), budget=st.integers(4, 30))
def test_only_ranks_matter(space, seed, budget):
    """Proposals and the result are the same under any strictly increasing change of the fitness."""
    land = Landscape.random(space, seed, interaction=0.7)
    policy = GuidedSearch(budget=budget)
    b1, s1 = drive(policy, space, land, seed)
    b2, s2 = drive(policy, space, lambda archs: [np.exp(f / 4.0) * 10 - 3 for f in land(archs)], seed)
    assert b1 == b2
    assert policy.best(s1) == policy.best(s2)


@settings(max_examples=10)
@given(seed=st.integers(0, 2**31), budget=st.integers(12, 40), batch=st.one_of(st.none(), st.integers(1, 9)))
def test_batches_budget_and_first_cycle(seed, budget, batch):
    space = auto_panoptic(backbone_blocks=(2, 2, 2, 2))
    policy = GuidedSearch(budget=budget, batch_size=batch)
    batches, state = drive(policy, space, Landscape.random(space, seed), seed)
    flat = [a for b in batches for a in b]
    assert len(flat) == len(set(flat)) == budget  # distinct, and the whole budget is spent
    first = batches[0]
    assert len(first) == policy.first_batch_for(space)
    assert all(len(b) <= policy.batch_for(space) for b in batches[1:])
    if len(first) == space.cycle_length:  # exactly one strict-fair cycle
        for layer, n in enumerate(space.n_choices):
            counts = np.bincount([a[layer] for a in first], minlength=n)
            assert (counts == space.cycle_length // n).all()
    # the result is the best measured architecture (ties: the earlier one)
    fits = [f for _, f in state.history]
    assert policy.best(state) == state.history[int(np.argmax(fits))][0]


def test_default_batch_sizes():
    assert GuidedSearch(budget=60).batch_for(auto_panoptic()) == 12
    assert GuidedSearch(budget=24).batch_for(auto_panoptic()) == 6
    assert GuidedSearch(budget=60).batch_for(nas_bench_macro()) == 3
    assert GuidedSearch(budget=2).batch_for(nas_bench_macro()) == 1
    assert GuidedSearch(budget=60).first_batch_for(nas_bench_macro()) == 15
    assert GuidedSearch(budget=24).first_batch_for(auto_panoptic()) == 12


def test_small_space_is_exhausted_then_done():
    space = auto_panoptic(backbone_blocks=(1, 1, 1, 1), mask_layers=1, semantic_layers=1).subspace("backbone")
    result = run(GuidedSearch(budget=1000), space, lambda archs: [float(sum(a)) for a in archs], seed=0, progress=False)
    assert result.n_evaluations == space.size == 4**4
    assert result.best == (3, 3, 3, 3)


@pytest.mark.parametrize("bad", [dict(budget=0), dict(batch_size=0), dict(budget=1.5), dict(constraint=3)])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ConfigError):
        GuidedSearch(**bad)


def test_tell_must_answer_ask():
    policy = GuidedSearch(budget=6)
    state = policy.init(nas_bench_macro(), 0)
    with pytest.raises(ValueError):
        policy.tell(state, [(0,) * 8], [1.0])
    archs, state = policy.ask(state)
    with pytest.raises(ValueError):
        policy.tell(state, archs[::-1] if len(archs) > 1 else [(9,) * 8], [0.0] * len(archs))


def test_additive_landscape_beats_the_unevaluated_composite_of_the_same_data():
    """On a nearly additive wide space, the search improves on path-priority's bet for the same
    history: the best measured architecture is at least as good as the composite of the first batch
    (a check that the later batches do useful work; 5 seeds, all must hold)."""
    space = auto_panoptic()
    for seed in range(5):
        land = Landscape.random(space, seed, interaction=0.1)
        policy = GuidedSearch(budget=60)
        _, state = drive(policy, space, land, seed)
        first = state.history[: policy.first_batch_for(space)]
        composite = fit_additive(space.n_choices, [a for a, _ in first], [f for _, f in first]).composite()
        assert land.true_fitness(policy.best(state)) >= land.true_fitness(composite)


def test_choosing_a_policy_code_runs(tmp_path, monkeypatch, capsys):
    """The usage example in docs/explanation/choosing-a-policy.md runs and resumes from its journal."""
    import re

    from conftest import REPO

    page = (REPO / "docs" / "explanation" / "choosing-a-policy.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "choosing-a-policy.md", "exec"), namespace)
    assert capsys.readouterr().out.startswith("60 ")
    again = run(GuidedSearch(budget=60), namespace["space"], lambda archs: pytest.fail("evaluated again"),
                seed=0, journal="search.jsonl", progress=False)
    assert again == namespace["result"]
