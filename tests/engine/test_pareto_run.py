"""The search's Pareto front: ``search/pareto.json`` (Hypothesis properties of the record), its
report section, and ``retrain --pick K``."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, strategies as st

from autopanoptic.engine.pipeline import _read_arch
from autopanoptic.engine.report import write_report
from autopanoptic.engine.runs import RunDir
from autopanoptic.engine.search import pareto_record
from autopanoptic.errors import ArchitectureError, ConfigError
from autopanoptic.search.pareto import dominates
from autopanoptic.search.spaces import auto_panoptic

SPACE = auto_panoptic((1, 1, 1, 1))
OBJ = st.sampled_from([["fitness", "latency"], ["fitness", "macs"], ["fitness", "latency", "params"]])


@st.composite
def histories(draw):
    archs = draw(st.lists(st.tuples(*[st.integers(0, n - 1) for n in SPACE.n_choices]), min_size=0, max_size=15,
                          unique=True))
    fits = draw(st.lists(st.integers(0, 5), min_size=len(archs), max_size=len(archs)))
    return [(a, f / 10) for a, f in zip(archs, fits)]


def latency(a):
    return float(sum(a) % 7) + 1.0


def count(a):
    return (sum(a) % 5) * 1000, (a[0] + a[5]) * 10**6


@given(histories(), OBJ)
def test_the_front_holds_every_non_dominated_trade_off_once_and_no_dominated_one(history, objectives):
    rec = pareto_record(history, objectives, count=count, latency=latency)
    json.dumps(rec, allow_nan=False)  # plain JSON
    cands = rec["candidates"]
    assert [tuple(c["arch"]) for c in cands] == [a for a, _ in history]
    pts = [tuple(c[o] for o in objectives) for c in cands]
    senses = rec["senses"]
    assert senses == ["max"] + ["min"] * (len(objectives) - 1)
    front = rec["front"]
    for i in front:
        assert not any(dominates(q, pts[i], senses) for q in pts)
    for i in range(len(pts)):
        if not any(dominates(q, pts[i], senses) for q in pts):
            assert pts[i] in {pts[j] for j in front}  # every non-dominated trade-off is numbered
    assert len({pts[i] for i in front}) == len(front)
    firsts = [pts[i][1] for i in front]
    assert firsts == sorted(firsts)  # point 1 is the cheapest


def test_the_chosen_architecture_is_located_on_the_front():
    history = [((0,) * 21, 0.5), ((1,) * 21, 0.4), ((2,) * 21, 0.6)]
    lat = {0: 10.0, 1: 5.0, 2: 30.0}
    rec = pareto_record(history, ["fitness", "latency"], latency=lambda a: lat[a[0]], chosen=(2,) * 21, chosen_fitness=0.6)
    assert rec["front"] == [1, 0, 2] and rec["chosen"]["point"] == 3 and rec["chosen"]["latency"] == 30.0
    off = pareto_record(history, ["fitness", "latency"], latency=lambda a: lat.get(a[0], 99.0), chosen=(3,) * 21)
    assert off["chosen"]["point"] is None and off["chosen"]["fitness"] is None
    with pytest.raises(ConfigError, match="at least one cost"):
        pareto_record(history, ["fitness"])


@pytest.fixture
def run_with_front(tmp_path):
    rng_archs = [SPACE.sample(s) for s in range(8)]
    history = [(a, 0.1 * (i % 4)) for i, a in enumerate(rng_archs)]
    rec = pareto_record(history, ["fitness", "latency", "macs"], count=count, latency=latency,
                        chosen=rng_archs[3], chosen_fitness=0.3)
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "pareto.json").write_text(json.dumps(rec))
    return RunDir(tmp_path), rec


def test_retrain_pick_takes_the_kth_point_of_the_front(run_with_front):
    run, rec = run_with_front
    for k, i in enumerate(rec["front"], start=1):
        assert _read_arch(run, SPACE, None, k) == tuple(rec["candidates"][i]["arch"])
    with pytest.raises(ArchitectureError, match=f"points 1 to {len(rec['front'])}"):
        _read_arch(run, SPACE, None, len(rec["front"]) + 1)
    with pytest.raises(ArchitectureError, match="either --arch or --pick"):
        _read_arch(run, SPACE, "a.json", 1)


def test_pick_without_a_front_or_with_a_damaged_one_is_a_clear_error(tmp_path):
    with pytest.raises(ArchitectureError, match="search.objectives"):
        _read_arch(RunDir(tmp_path), SPACE, None, 1)
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "pareto.json").write_text('{"front": [3], "candidates": []}')
    with pytest.raises(ArchitectureError, match="not a Pareto front"):
        _read_arch(RunDir(tmp_path), SPACE, None, 1)


def test_the_report_draws_the_front_and_lists_its_points(run_with_front):
    run, rec = run_with_front
    report = write_report(run).read_text()
    assert "## Pareto front" in report and (run.root / "plots" / "front.png").stat().st_size > 0
    rows = [line for line in report.splitlines() if line.startswith("| ") and not line.startswith("| K ")]
    assert len(rows) == len(rec["front"])
    assert "predicted latency (ms)" in report and "GMACs" in report
    point = rec["chosen"]["point"]
    assert (f"point {point} of the front" if point else "not on the front") in report
