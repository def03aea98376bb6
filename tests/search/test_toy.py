"""Toy objectives: the synthetic landscape and the NAS-Bench-Macro table."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, strategies as st

from autopanoptic.errors import DataError
from autopanoptic.search.spaces import nas_bench_macro
from autopanoptic.search.toy import Landscape, NasBenchMacro, load_nas_bench_macro

from strategies import search_spaces


@given(search_spaces(max_layers=5, max_choices=4), st.integers(0, 1000), st.sampled_from([0.0, 0.5, 3.0]))
def test_landscape_optimum_is_exact(space, seed, interaction):
    land = Landscape.random(space, seed, interaction=interaction)
    arch, value = land.optimum()
    best = max(land.true_fitness(space.decode(c)) for c in range(space.size))
    assert value == pytest.approx(best, abs=1e-9)
    assert land.true_fitness(arch) == value
    assert all(land.regret(space.decode(c)) >= 0 for c in range(space.size))


def test_landscape_is_deterministic_and_noise_is_seeded():
    space = nas_bench_macro()
    a = Landscape.random(space, 3, noise=0.5)
    b = Landscape.random(space, 3, noise=0.5)
    archs = [space.decode(c) for c in range(0, space.size, 97)]
    assert a(archs) == b(archs)
    assert a(archs) == a(archs)  # repeated evaluations agree
    assert a(archs) != [a.true_fitness(x) for x in archs]  # noise is there
    assert Landscape.random(space, 4)(archs) != Landscape.random(space, 3)(archs)
    # no interactions: every layer's best choice is its best main effect
    flat = Landscape.random(space, 5, interaction=0.0)
    assert flat.optimum()[0] == tuple(max(range(len(r)), key=lambda c: r[c]) for r in flat.main)


@pytest.fixture(scope="module")
def bench(shared_data):
    return load_nas_bench_macro(shared_data / "nas-bench-macro" / "nas-bench-macro_cifar10.json")


def test_nas_bench_macro_table(bench):
    assert len(bench.accuracy) == 6561 and bench.n_networks == 3969
    best = (2, 2, 2, 1, 2, 2, 2, 0)
    assert bench.best_accuracy == pytest.approx(93.127, abs=1e-3)
    assert bench.rank(best) == 0 and bench.regret(best) == 0.0
    # identities behind the first layer of a stage are no-ops: same network, same accuracy, same rank
    assert NasBenchMacro.canonical((0, 0, 1, 0, 2, 2, 0, 1)) == (0, 0, 1, 2, 0, 2, 1, 0)
    assert bench([(0, 0, 1, 0, 2, 2, 0, 1)]) == bench([(0, 0, 1, 2, 0, 2, 1, 0)])
    ranks = [bench.rank(a) for a in bench.accuracy]
    assert min(ranks) == 0 and max(ranks) < 3969
    # rank = number of distinct networks with a strictly higher accuracy (brute force on a sample)
    networks = {NasBenchMacro.canonical(a): acc for a, acc in bench.accuracy.items()}
    for a in list(bench.accuracy)[::331]:
        assert bench.rank(a) == sum(v > bench.accuracy[a] for v in networks.values())


def test_nas_bench_macro_rank_counts_networks_above(tmp_path):
    table = {"00000000": 1.0, "01000000": 3.0, "00100000": 3.0, "10000000": 2.0, "20000000": 5.0}
    path = tmp_path / "t.json"
    path.write_text(json.dumps({k: {"mean_acc": v} for k, v in table.items()}))
    b = load_nas_bench_macro(path)
    # 01000000 and 00100000 are two distinct networks sharing rank 1
    assert b.rank((2, 0, 0, 0, 0, 0, 0, 0)) == 0
    assert b.rank((1, 0, 0, 0, 0, 0, 0, 0)) == 3
    assert b.rank((0, 0, 0, 0, 0, 0, 0, 0)) == 4


def test_nas_bench_macro_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_nas_bench_macro(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="bad.json"):
        load_nas_bench_macro(tmp_path / "bad.json")
    (tmp_path / "key.json").write_text(json.dumps({"0123": {"mean_acc": 1.0}}))
    with pytest.raises(DataError, match="bad entry"):
        load_nas_bench_macro(tmp_path / "key.json")
