"""End to end on the tiny preset: with a cost objective, path-priority and guided search also
measure the composites along their additive model's front, so ``search/pareto.json`` spans the
whole trade-off; a rerun measures none of them twice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from autopanoptic_cli.main import main

pytestmark = pytest.mark.slow

TINY = [
    "--set", "data.synthetic_images=8", "--set", "data.synthetic_size=48",
    "--set", "data.eval_fraction=0.25", "--set", "data.val_fraction=0.25",
    "--set", "train.steps=1", "--set", "train.batch_size=1",
    "--set", "search.cycles=1", "--set", "search.calib_batches=0", "--set", "search.fitness=loss",
    "--set", "model.exclude_ops=[dfconv3x3, dfconv5x5]",
]


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("front") / "r"
    res = cli("train-supernet", "--out", str(out), "--device", "cpu", "--no-progress", *TINY)
    assert res.exit_code == 0, res.output
    return out


def search(run: Path, *extra: str) -> dict:
    res = cli("search", "--out", str(run), "--device", "cpu", "--no-progress", *TINY, *extra)
    assert res.exit_code == 0, res.output
    return json.loads((run / "search" / "pareto.json").read_text())


def copy(trained: Path, dest: Path) -> Path:
    shutil.copytree(trained, dest, ignore=shutil.ignore_patterns("search", ".lock"))
    return dest


def cheapest_on_front(rec: dict, cost: str) -> float:
    return min(rec["candidates"][i][cost] for i in rec["front"])


def test_path_priority_measures_its_front_and_the_pareto_set_reaches_the_cheap_end(trained, tmp_path):
    run = copy(trained, tmp_path / "pp")
    rec = search(run, "--set", "search.objectives=[fitness, macs]", "--set", "search.front_points=6")
    history = json.loads((run / "search" / "candidates.json").read_text())
    cands = rec["candidates"]
    assert [c["arch"] for c in cands[: len(history)]] == [c["arch"] for c in history]
    proposed = cands[len(history):]
    assert 2 <= len(proposed) <= 6 and all(c["proposed"] == "front" for c in proposed)
    assert all(np.isfinite(c["fitness"]) and c["fitness"] < 0 for c in proposed)  # minus a loss, measured
    macs = [c["macs"] for c in proposed]
    assert macs == sorted(macs, reverse=True)  # from the policy's bet down to the cheapest
    # the front now reaches architectures far cheaper than every candidate the policy evaluated
    assert cheapest_on_front(rec, "macs") == min(macs) < min(c["macs"] for c in cands[: len(history)])
    # ... and its top is the scoreboard's bet: the chosen composite itself, or one as good but cheaper
    assert macs[0] <= rec["chosen"]["macs"]
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert sum(r.get("proposed") == "front" for r in logged if r["kind"] == "candidate") == len(proposed)
    from autopanoptic.engine.report import write_report
    from autopanoptic.engine.runs import RunDir

    assert f"{len(proposed)} of the candidates proposed along the search's score / cost front" in \
        write_report(RunDir(run)).read_text()

    # a rerun measures nothing again, and one interrupted after two front composites measures the rest
    journal = run / "search" / "journal-loss-front.jsonl"
    lines = journal.read_text().splitlines()
    assert len(lines) == 1 + len(proposed)
    assert search(run, "--set", "search.objectives=[fitness, macs]", "--set", "search.front_points=6") == rec
    assert journal.read_text().splitlines() == lines
    journal.write_text("\n".join(lines[:3]) + "\n")
    assert search(run, "--set", "search.objectives=[fitness, macs]", "--set", "search.front_points=6") == rec
    assert journal.read_text().splitlines() == lines


def test_guided_search_measures_its_front_against_a_latency_table(trained, tmp_path):
    from autopanoptic.config import load_config
    from autopanoptic.engine.pipeline import build_model, prepare_data
    from autopanoptic.engine.runs import RunDir
    from autopanoptic.nn.latency import LatencyKey, LatencyTable

    run = copy(trained, tmp_path / "guided")
    cfg = load_config("tiny", TINY[1::2])
    model = build_model(cfg, prepare_data(cfg, RunDir(run), progress=False).train.categories)
    c = model.config
    gen = np.random.default_rng(0)
    table = LatencyTable(LatencyKey("cpu: elsewhere", "2.5", 48, 1, c.preset, c.widths, c.num_thing_classes,
                                    c.num_stuff_classes, [(la.name, la.ops) for la in model.search_space.layers]),
                         10.0, [gen.uniform(0.1, 2.0, n) for n in model.search_space.n_choices], scale=0.9)
    path = table.save(tmp_path / "lat.json")
    base = ["--set", f"search.latency_table={path}", "--set", "search.objectives=[fitness, latency]",
            "--set", "search.policy=guided", "--set", "search.evaluations=6"]
    plan = cli("search", "--out", str(run), "--dry-run", *TINY, *base)
    assert "plus up to 8 composites along the guided front against latency" in plan.output, plan.output
    rec = search(run, *base)
    proposed = [x for x in rec["candidates"] if x.get("proposed") == "front"]
    assert 2 <= len(proposed) <= 8
    history = rec["candidates"][: len(rec["candidates"]) - len(proposed)]
    # the cheapest end of the model's front is the fastest architecture without the excluded ops
    fastest = table.fixed_ms + table.scale * sum(
        min(ms for op, ms in zip(layer.ops, row) if not op.startswith("dfconv"))
        for layer, row in zip(model.search_space.layers, table.layer_ms))
    assert cheapest_on_front(rec, "latency") == pytest.approx(fastest) and fastest < min(x["latency"] for x in history)

    without = search(copy(trained, tmp_path / "off"), *base, "--set", "search.front_points=0")
    assert all("proposed" not in x for x in without["candidates"]) and len(without["candidates"]) == len(history)
