"""Behaviour specific to each policy (the shared contract is in test_policy_contract.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from autopanoptic.errors import ConfigError
from autopanoptic.search import Evolution, PathPriority, RandomSearch, Scoreboard, run
from autopanoptic.search.spaces import auto_panoptic, nas_bench_macro
from autopanoptic.search.toy import Landscape

from strategies import search_spaces


def test_path_priority_paper_setting_and_scoreboard():
    space = auto_panoptic()
    land = Landscape.random(space, 0)
    policy = PathPriority(cycles=5, models_per_cycle=12)
    result = run(policy, space, land, seed=0, progress=False)
    state = result.state
    # 5 rounds of 12 strict-fair architectures, each round ranked on its own
    rounds = [state.evaluated[i * 12 : (i + 1) * 12] for i in range(5)]
    board = Scoreboard.empty(space)
    for r in rounds:
        board = board.add([a for a, _ in r], [f for _, f in r])
        for layer, n in enumerate(space.n_choices):
            assert sorted(a[layer] for a, _ in r) == sorted(list(range(n)) * (12 // n))
    assert policy.scoreboard(state) == board
    assert result.best == board.best()
    assert policy.top_k(state, 4) == board.top_k(4)
    assert board.evaluations == 60 and board.batches == 5


def test_path_priority_rounds_are_several_fair_cycles():
    space = nas_bench_macro()
    policy = PathPriority(cycles=1, models_per_cycle=12)
    archs, _ = policy.ask(policy.init(space, 0))
    assert len(archs) == 12
    for k in range(4):
        block = archs[3 * k : 3 * k + 3]
        assert all(sorted(a[i] for a in block) == [0, 1, 2] for i in range(8))


def test_path_priority_needs_a_multiple_of_the_cycle_length():
    with pytest.raises(ConfigError, match="multiple of 12"):
        PathPriority(models_per_cycle=18).init(auto_panoptic(), 0)
    with pytest.raises(ConfigError):
        PathPriority(cycles=0)


def test_path_priority_finds_the_optimum_of_an_additive_landscape():
    """Without interactions, per-layer rank scores converge to the best choice of every layer."""
    space = auto_panoptic(backbone_blocks=(2, 2, 2, 2))
    land = Landscape.random(space, 3, interaction=0.0)
    short = run(PathPriority(cycles=2), space, land, seed=0, progress=False)
    long = run(PathPriority(cycles=150), space, land, seed=0, progress=False)
    assert land.regret(long.best) < 0.25 * land.regret(short.best)
    assert land.regret(long.best) < 0.05 * land.optimum()[1]


def test_path_priority_tie_goes_to_lower_choice():
    space = nas_bench_macro()
    result = run(PathPriority(cycles=3), space, lambda a: [0.0] * len(a), seed=0, progress=False)
    assert result.best == (0,) * 8  # all fitnesses tie: every choice scores the same


def test_evolution_paper_defaults():
    policy = Evolution()
    assert (policy.population, policy.generations, policy.top_k, policy.mutations, policy.crossovers, policy.mutation_prob) == (50, 20, 10, 20, 20, 0.1)
    space = auto_panoptic()
    land = Landscape.random(space, 0)
    result = run(policy, space, land, seed=0, progress=False)
    assert result.n_evaluations == 1000 == len(set(a for a, _ in result.history))
    assert result.state.generation == 20
    assert result.best_fitness == max(f for _, f in result.history)
    # evolution improves on its random first generation
    first = max(f for _, f in result.history[:50])
    assert result.best_fitness > first
    top = result.state.top
    assert [f for _, f, _ in top] == sorted((f for _, f in result.history), reverse=True)[:10]


def test_evolution_children_come_from_parents():
    space = auto_panoptic()
    land = Landscape.random(space, 1)
    policy = Evolution(population=30, generations=2, top_k=5, mutations=15, crossovers=10, mutation_prob=0.1)
    state = policy.init(space, 0)
    archs, state = policy.ask(state)
    state = policy.tell(state, archs, land(list(archs)))
    parents = [a for a, _, _ in state.top]
    children, _ = policy.ask(state)
    mutants, crosses = children[:15], children[15:25]
    for m in mutants:  # about 10% of the genes differ from some parent
        assert min(sum(x != y for x, y in zip(m, p)) for p in parents) <= 0.3 * len(m)
    for c in crosses:  # every gene comes from one of the parents
        assert all(any(c[i] == p[i] for p in parents) for i in range(len(c)))


def test_evolution_settings_are_checked():
    with pytest.raises(ConfigError, match="exceed the population"):
        Evolution(population=20)
    with pytest.raises(ConfigError):
        Evolution(mutation_prob=1.5)
    Evolution(population=20, mutations=8, crossovers=8)


@given(search_spaces(max_layers=3, max_choices=3), st.integers(1, 40))
def test_random_search_and_evolution_stop_when_the_space_runs_out(space, budget):
    land = Landscape.random(space, 0)
    for policy in (RandomSearch(budget=budget, batch_size=3), Evolution(population=4, generations=20, top_k=2, mutations=1, crossovers=1)):
        result = run(policy, space, land, seed=0, progress=False)
        archs = [a for a, _ in result.history]
        assert len(archs) == len(set(archs))
        cap = budget if isinstance(policy, RandomSearch) else 80
        assert result.n_evaluations == min(cap, space.size)
        if result.n_evaluations == space.size:
            assert land.true_fitness(result.best) == land.optimum()[1]
