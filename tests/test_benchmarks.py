"""The benchmark scripts stay runnable: each imports (names it takes from the library and from the
other scripts exist), and the ground-truth page is written from a table, hand-written readings kept."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if not p.name.startswith("_"))


def load(path: Path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_every_benchmark_script_imports_and_has_a_main(path, monkeypatch):
    mod = load(path, monkeypatch)
    assert callable(getattr(mod, "main", None)), f"{path.name} has no main()"
    assert (mod.__doc__ or "").strip(), f"{path.name} has no docstring saying what it measures"


def test_the_ground_truth_page_reports_reliability_and_keeps_the_readings(tmp_path, monkeypatch):
    gt = load(BENCH / "ground_truth.py", monkeypatch)
    machine = load(BENCH / "_machine.py", monkeypatch)
    _, archs = gt.draw_archs(10, 2026)
    rng = np.random.default_rng(0)
    table = gt.header(10, 3, 2026)
    table["architectures"] = [
        {"index": i, "arch": list(a), "runs": [
            {"seed": s, "pq": 0.5 + 0.02 * i + rng.normal(0, 0.002), "sq": 0.6, "rq": 0.7, "pq_things": 0.3,
             "pq_stuff": 0.8, "loss": 1.0, "seconds": 100.0, "commit": "abc",
             "large": {"pq": 0.5 + 0.02 * i, "pq_by_size": {"200": 0.5 + 0.02 * i + rng.normal(0, 0.01),
                                                            "400": 0.5 + 0.02 * i}}}
            for s in range(3)]} for i, a in enumerate(archs)]
    path = tmp_path / "t.json"
    path.write_text(json.dumps(table))
    text = gt.report(path)
    assert "30 of 30 runs finished" in text and "## Per-op marginal effects" in text
    assert "## How reliability grows with the evaluation set" in text
    assert "| large set, first 400 images (data seed 8) | 59.0 |" in text
    assert "## Other recipes" not in text
    pilot = gt.header(4, 2, 2026, *gt.settings(4500))
    pilot["architectures"] = [{"index": i, "arch": list(a), "runs": [
        {"seed": s, "pq": 0.6 + 0.01 * i + 0.002 * s, "seconds": 300.0, "large": {"pq": 0.6 + 0.01 * i}}
        for s in range(2)]} for i, a in enumerate(archs[:4])]
    (tmp_path / "pilot-4500.json").write_text(json.dumps(pilot))
    text = gt.report(path)
    label = "`pilot-4500.json`: 4500 steps of batch 2, lr 0.02, 64 px"
    assert f"| {label} | 4 | 2.0 | 61.6 |" in text
    assert "| `pilot-4500.json`, on the 1000-image set | 4 | 2.0 | 61.5 |" in text
    assert "| this table (same architectures) | 4 | 3.0 |" in text
    # paired by architecture: pilot 60 + i + 0.1 (mean of seeds 0, 1) against the table's 50 + 2 i (+ noise)
    diff = [100 * (0.6 + 0.01 * i + 0.001 - np.mean([r["pq"] for r in table["architectures"][i]["runs"]]))
            for i in range(4)]
    assert f"| {label} | 4 | 8 | {np.mean(diff):.2f} [" in text
    one_seed = dict(pilot, architectures=[dict(a, runs=a["runs"][:1]) for a in pilot["architectures"]])
    (tmp_path / "pilot-4500.json").write_text(json.dumps(one_seed))  # one run each: paired, no reliability row
    text = gt.report(path)
    assert f"| {label} | 4 | 4 |" in text and f"| {label} | 4 | 2.0 |" not in text
    pilot.update(workers=2, recipe=dict(pilot["recipe"], batch_size=4, lr=0.04))
    (tmp_path / "pilot-4500.json").write_text(json.dumps(pilot))
    assert "4500 steps of batch 4, lr 0.04, 64 px, 2 workers | 4 |" in gt.report(path)
    page = tmp_path / "page.md"
    page.write_text("old figures\n\n" + machine.HAND + "\n\nWhat we make of it.\n")
    machine.write_page(page, text)
    new = page.read_text()
    assert "old figures" not in new and new.startswith(text.rstrip("\n"))
    assert new.endswith(machine.HAND + "\n\nWhat we make of it.\n")


def test_a_pilot_recipe_is_refused_on_the_main_table(monkeypatch):
    gt = load(BENCH / "ground_truth.py", monkeypatch)
    monkeypatch.setattr("sys.argv", ["ground_truth.py", "--steps", "10"])
    with pytest.raises(SystemExit, match="its own --table"):
        gt.main()
    monkeypatch.setattr("sys.argv", ["ground_truth.py", "--workers", "2"])
    with pytest.raises(SystemExit, match="its own --table"):
        gt.main()
    data, recipe, large = gt.settings(4500, 96)
    assert recipe.steps == 4500 and data.synthetic_size == large.synthetic_size == 96
    _, recipe, _ = gt.settings(750, batch_size=4, lr=0.04)
    assert (recipe.steps, recipe.batch_size, recipe.lr) == (750, 4, 0.04)
    assert gt.header(1, 1, 2026, workers=2)["workers"] == 2 and "workers" not in gt.header(1, 1, 2026)
    assert gt.settings() == (gt.TRUTH_DATA, gt.TRUTH_RECIPE, gt.LARGE_EVAL)


def test_seeds_needed_inverts_the_reliability_of_a_mean(monkeypatch):
    gt = load(BENCH / "ground_truth.py", monkeypatch)
    for b, w in ((0.4, 1.0), (1.0, 0.5), (0.3, 1.1)):
        k = gt.seeds_needed(b, w, 0.8)
        icc = lambda k: b * b / (b * b + w * w / k)  # noqa: E731
        assert icc(k) >= 0.8 - 1e-9 and (k == 1 or icc(k - 1) < 0.8 - 1e-9)
        k2 = gt.seeds_needed(b, w, 0.8, spread=2.0)
        ratio = lambda k: np.sqrt(b * b + w * w / k) / (w / np.sqrt(k))  # noqa: E731
        assert ratio(k2) >= 2.0 - 1e-9 and (k2 == 1 or ratio(k2 - 1) < 2.0 - 1e-9)


def test_a_table_grows_by_the_next_draws_of_its_stream(monkeypatch):
    gt = load(BENCH / "ground_truth.py", monkeypatch)
    _, archs = gt.draw_archs(5, 2026)
    small = gt.header(3, 2, 2026)
    small["architectures"] = [{"index": i, "arch": list(a), "runs": [{"seed": 0, "pq": 0.5}]}
                              for i, a in enumerate(archs[:3])]
    big = gt.grow(small, 5)
    assert big["n_archs"] == 5 and [a["arch"] for a in big["architectures"]] == [list(a) for a in archs]
    assert big["architectures"][:3] == small["architectures"] and big["architectures"][4]["runs"] == []
    assert big["seeds"] == [0, 1]
    more = gt.grow(big, 4, seeds=4)  # more seeds, no fewer architectures
    assert more["seeds"] == [0, 1, 2, 3] and more["architectures"] == big["architectures"] and more["n_archs"] == 5
    assert gt.grow(more, 5, seeds=2)["seeds"] == [0, 1, 2, 3]  # never fewer
    small["architectures"][1]["arch"] = list(archs[4])
    with pytest.raises(SystemExit, match="not the first draws"):
        gt.grow(small, 5)


def test_the_front_comparison_scores_the_tables_own_front_as_one(monkeypatch):
    import doctest

    fvt = load(BENCH / "front_vs_truth.py", monkeypatch)
    assert doctest.testmod(fvt).failed == 0
    rng = np.random.default_rng(3)
    pts = [(float(q), float(ms)) for q, ms in zip(rng.uniform(0.4, 0.6, 30), rng.uniform(5, 20, 30))]
    from autopanoptic.search.pareto import pareto_indices

    front = [pts[i] for i in pareto_indices(pts, fvt.SENSES)]
    same = fvt.compare(pts, front)
    assert same["ratio"] == pytest.approx(1.0) and same["undominated"] == len(front)
    worse = fvt.compare(pts, [(q - 0.05, ms + 1) for q, ms in front])  # every point moved the wrong way
    assert worse["ratio"] < 1 and worse["undominated"] == 0
    better = fvt.compare(pts, [(q + 0.01, ms) for q, ms in front])
    assert better["ratio"] > 1 and better["undominated"] == len(front)


def test_searches_that_differ_only_in_search_settings_share_a_supernet(monkeypatch):
    svr = load(BENCH / "search_vs_random.py", monkeypatch)
    a = svr.supernet_overrides(["train.holdout_val=true", "search.fitness=naswot", "retrain.steps=9"])
    assert a == ["train.holdout_val=true"]
    assert svr.tag_of(a) == svr.tag_of(["train.holdout_val=true"]) != svr.tag_of(["train.steps=900"])
    assert svr.tag_of([]) == svr.tag_of([])  # stable (not Python's salted str hash)


def test_stored_searches_keep_their_meaning_when_the_tiny_default_fitness_changes(tmp_path, monkeypatch):
    # the searches' settings name what differs from the supernet's PQ; tiny's default became naswot
    svr = load(BENCH / "search_vs_random.py", monkeypatch)
    assert svr.search_config(tmp_path, [], 0, 0, "path-priority").search.fitness == "pq"
    assert svr.search_config(tmp_path, ["search.fitness=naswot"], 0, 0, "random").search.fitness == "naswot"


def test_the_replication_keeps_only_its_own_searches(monkeypatch):
    svr = load(BENCH / "search_vs_random.py", monkeypatch)
    a, b = ("path-priority", ("x=1",)), ("path-priority", ("x=1", "y=2"))

    def entry(seed, pq):
        return {"search_seed": seed, "runs": [{"pq": pq}, {"pq": pq}]}

    groups = {a: [entry(s, 0.50) for s in range(6)], b: [entry(s, 0.99 if s < 3 else 0.51) for s in range(6)]}
    rows = lambda policy, ov, es: f"| {policy} | {ov} | {len(es)} | {sorted(e['search_seed'] for e in es)} |"  # noqa: E731
    assert svr.replication_section(groups, rows, {a: 4, b: 3}, "T")[0] == "## T"
    text = "\n".join(svr.replication_section(groups, rows, {a: 4, b: 3}))
    assert f"| path-priority | {a[1]} | 2 | [4, 5] |" in text and f"| path-priority | {b[1]} | 3 | [3, 4, 5] |" in text
    # the earlier searches (PQ 99) are left out of the difference: 51 - 50
    assert "(3) minus path-priority x=1 (2): +1.0 PQ" in text
    assert svr.replication_section(groups, rows, {a: 9, b: 9}) == []


def test_the_demo_study_pairs_settings_on_one_supernet_and_reports_searched_minus_control(tmp_path, monkeypatch):
    dc = load(BENCH / "demo_controls.py", monkeypatch)
    T = "tiny-truth"
    # units of the former demo carry no config: they ran on `tiny`
    done = [{"seed": 0, "overrides": []}, {"seed": 1, "overrides": []}, {"seed": 0, "overrides": ["train.steps=9"]},
            {"seed": 2, "config": T, "overrides": []}]
    for u in done:
        folder = dc.unit_folder(tmp_path, dc.config_of(u), u["overrides"], u["seed"])
        (folder / "supernet").mkdir(parents=True)
        (folder / "supernet" / "checkpoint.pt").write_bytes(b"x")
    assert dc.reusable(done, tmp_path, "tiny", ["search.fitness=naswot"], 1) == dc.unit_folder(tmp_path, "tiny", [], 1)
    assert dc.reusable(done, tmp_path, "tiny", ["train.steps=9", "search.cycles=2"], 0) == dc.unit_folder(
        tmp_path, "tiny", ["train.steps=9"], 0)
    assert dc.reusable(done, tmp_path, "tiny", ["train.steps=9"], 1) is None  # no unit of that supernet and seed
    assert dc.reusable(done, tmp_path, T, [], 1) is None  # another config: another supernet
    assert dc.reusable(done, tmp_path, T, ["search.fitness=naswot"], 2) == dc.unit_folder(tmp_path, T, [], 2)
    assert dc.unit_folder(tmp_path, T, [], 2) != dc.unit_folder(tmp_path, "tiny", [], 2)
    units = [{"seed": k, "overrides": [], "searched_pq": 0.50 + 0.01 * k, "control_pq": 0.52, "wall_s": 1.0,
              "commit": "x"} for k in range(5)]
    # on the table's settings: PQs at the shipped table's extremes land at its ends
    units += [{"seed": k, "config": T, "overrides": [], "searched_pq": 0.99, "control_pq": 0.01, "wall_s": 1.0,
               "commit": "x"} for k in range(3)]
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"format": 1, "units": units}))
    text = dc.report(results)
    # differences -2, -1, 0, +1, +2 PQ: mean 0, two wins of five; no comparison on `tiny`
    assert "| `tiny` | defaults | 5 | 52.0 | 52.0 | +0.0 [" in text and "| 2 of 5 |" in text
    assert "| does not apply |" in text
    assert "| `tiny-truth` | defaults | 3 | 99.0 | 1.0 | +98.0 [" in text and "| 100 / 0 |" in text


def test_the_ranking_page_holds_estimators_against_a_chosen_block_of_seeds_only_when_complete(tmp_path, monkeypatch):
    import argparse

    gt = load(BENCH / "ground_truth.py", monkeypatch)
    ranking = load(BENCH / "ranking.py", monkeypatch)
    _, archs = gt.draw_archs(12, 2026)
    table = gt.header(12, 4, 2026)
    # seeds 0-1 follow the architecture index, seeds 2-3 its reverse: the block decides the sign of every tau
    table["architectures"] = [{"index": i, "arch": list(a), "runs": [
        {"seed": s, "pq": 0.5 + (0.01 * i if s < 2 else -0.01 * i) + 0.001 * s} for s in range(4)]}
        for i, a in enumerate(archs)]
    path = tmp_path / "t.json"
    path.write_text(json.dumps(table))
    data = {"params": {str(i): float(i) for i in range(12)}}
    args = argparse.Namespace(table=path, truth_key="pq", truth_seeds="0-1", work=tmp_path, pool_offset=100000)
    assert "| parameters (more is better) | 12 | +1.00" in ranking.report(args, data)
    args.truth_seeds = "2-3"
    assert "| parameters (more is better) | 12 | -1.00" in ranking.report(args, data)
    table["architectures"][5]["runs"].pop()  # one architecture lacks seed 3: the block is not read
    path.write_text(json.dumps(table))
    with pytest.raises(SystemExit, match="11 of 12 architectures"):
        ranking.report(args, data)


def test_a_cache_with_only_a_supernets_pool_still_gets_per_op_scores_and_test_5s_sum(tmp_path, monkeypatch):
    import argparse

    gt = load(BENCH / "ground_truth.py", monkeypatch)
    ranking = load(BENCH / "ranking.py", monkeypatch)
    space, archs = gt.draw_archs(12, 2026)
    table = gt.header(12, 2, 2026)
    table["architectures"] = [{"index": i, "arch": list(a), "runs": [{"seed": s, "pq": 0.5 + 0.01 * sum(a)}
                                                                      for s in range(2)]} for i, a in enumerate(archs)]
    path = tmp_path / "t.json"
    path.write_text(json.dumps(table))
    keys = [str(100000 + k) for k in range(40)]
    fit = {k: float(sum(a)) for k, a in zip(keys, ranking.pool_archs(space, keys, 100000))}  # additive in the choices
    score = ranking.per_op_scorer(space, fit, 100000)
    negated = ranking.per_op_scorer(space, {k: -v for k, v in fit.items()}, 100000)
    assert all(score(a) == pytest.approx(-negated(a)) for a in archs)  # centred ranks: the reverse order negates
    assert score(max(archs, key=sum)) > score(min(archs, key=sum))
    data = {"naswot": {str(i): float(sum(a)) for i, a in enumerate(archs)}, "holdout-900:pool-pq": fit}
    args = argparse.Namespace(table=path, truth_key="pq", truth_seeds=None, work=tmp_path, pool_offset=100000)
    text = ranking.report(args, data)
    assert "| supernet `holdout-900`: per-op rank scoring over 40 random paths | 12 |" in text
    assert "| NASWOT rank + supernet `holdout-900` per-op rank | 12 |" in text
    assert "validation loss" not in text  # no row for what the cache does not hold


def test_tables_are_pooled_only_with_the_same_data_and_recipe(tmp_path, monkeypatch):
    from autopanoptic.engine.truth import GroundTruth

    gt = load(BENCH / "ground_truth.py", monkeypatch)
    pooled = load(BENCH / "ranking_pooled.py", monkeypatch)

    def table(name, arch_seed, **recipe):
        t = gt.header(4, 2, arch_seed)
        t["recipe"].update(recipe)
        t["architectures"] = [{"index": i, "arch": list(a), "runs": [{"seed": s, "pq": 0.5} for s in range(2)]}
                              for i, a in enumerate(gt.draw_archs(4, arch_seed)[1])]
        (tmp_path / name).write_text(json.dumps(t))
        return GroundTruth.load(tmp_path / name)

    first = table("a.json", 2026)
    assert pooled.not_poolable(first, table("b.json", 2027)) is None  # another draw of the same space and recipe
    assert "retrain.steps" in pooled.not_poolable(first, table("c.json", 2027, steps=900))


def test_cost_dealing_puts_every_pass_on_one_rank_and_never_loses_to_the_bound(monkeypatch):
    cd = load(BENCH / "cycle_dealing.py", monkeypatch)
    costs = [5.0, 1.0, 1.0, 4.0, 2.0, 3.0]
    deal = cd.lpt(costs, 2)
    assert sorted(j for g in deal for j in g) == list(range(6))
    assert sorted(sum(costs[j] for j in g) for g in deal) == [8.0, 8.0]  # LPT balances this one exactly
    # two steps whose passes alternate heavy, light: round-robin puts every heavy pass on rank 0
    rows = [(s, j, 3.0 if j % 2 == 0 else 1.0, 3.0 if j % 2 == 0 else 1.0) for s in range(2) for j in range(4)]
    sim = cd.simulate(rows, 2)
    assert sim["round-robin"] == 12.0 and sim["LPT by MACs"] == sim["LPT by measured time"] == sim["bound"] == 8.0


def test_the_paper_scale_page_keeps_its_readings_when_the_figures_are_written_again(tmp_path, monkeypatch):
    import torch

    ps = load(BENCH / "paper_scale.py", monkeypatch)
    machine = load(BENCH / "_machine.py", monkeypatch)
    monkeypatch.setattr(ps, "REPO", tmp_path)
    page = tmp_path / "docs" / "benchmarks" / "paper-scale.md"
    page.parent.mkdir(parents=True)
    args = ([], "| a table |", "| costs |", torch.device("cpu"), 96, 1, 2, 1, 4, (1.0,), (1.0,))
    ps.write_doc(*args)
    assert "| a table |" in page.read_text() and "GPU: not measured yet" in page.read_text()
    page.write_text(page.read_text() + "\n" + machine.HAND + "\n\n## Reading\n\nkept\n")
    ps.write_doc(*args[:1], "| new table |", *args[2:])
    text = page.read_text()
    assert "| new table |" in text and "| a table |" not in text and text.endswith("## Reading\n\nkept\n")
