"""check-ranking: picking architectures, the statistics and verdict, and the command end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, strategies as st

from autopanoptic.engine.ranking import RankingCheck, assess, pick_spread, verdict
from autopanoptic_cli.main import main


@given(st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=40), st.data())
def test_pick_spread_covers_the_range_in_order(values, data):
    k = data.draw(st.integers(1, len(values)))
    idx = pick_spread(values, k)
    assert len(idx) == len(set(idx)) == k
    picked = [values[i] for i in idx]
    assert picked == sorted(picked)
    if k >= 2:
        assert picked[0] == min(values) and picked[-1] == max(values)


def _archs(n):
    return [(i,) for i in range(n)]


def test_assess_gives_each_verdict_only_when_the_data_say_so():
    rng = np.random.default_rng(0)
    truth = list(rng.normal(0.5, 0.05, 12))
    good = assess(_archs(12), [t + rng.normal(0, 0.01) for t in truth], truth)
    assert good.verdict.startswith("the supernet ranks") and good.tau > 0.5 and good.p_value < 0.01
    assert good.tau_ci[0] > 0
    shuffled = list(np.random.default_rng(3).permutation(truth))
    assert abs(assess(_archs(12), shuffled, truth).tau) < 0.4
    noise = assess(_archs(12), shuffled, truth)
    assert noise.verdict.startswith("not distinguishable from random") and noise.tau_ci[0] <= 0 <= noise.tau_ci[1]
    with_base = assess(_archs(12), shuffled, truth, baselines={"parameters": truth})
    assert dict(with_base.baselines)["parameters"] == pytest.approx(1.0)
    bad = assess(_archs(12), [-t for t in truth], truth)
    assert "wrong way round" in bad.verdict and bad.p_value > 0.9
    flat = assess(_archs(6), [0.1] * 6, [0.0] * 6)
    assert flat.verdict.startswith("no ranking could be measured")
    assert verdict(0.1, -0.2, 0.4).startswith("not distinguishable")


def test_the_verdict_names_what_scored_the_architectures():
    truth = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    for kind, who in (("pq", "the supernet"), ("loss", "the supernet"),
                      ("naswot", "NASWOT (the search's training-free fitness)")):
        good = assess(_archs(8), truth, truth, kind=kind)
        assert good.verdict.startswith(f"{who} ranks these architectures")
        bad = assess(_archs(8), [-t for t in truth], truth, kind=kind)
        assert bad.verdict.startswith(f"{who} ranks these architectures the wrong way round")
        # a training-free fitness has no supernet training length to change: the advice says what to try
        assert ("search.fitness=pq" in bad.verdict) == (kind == "naswot")
        assert ("training length" in bad.verdict) == (kind != "naswot")


def test_settings_are_validated():
    with pytest.raises(ValueError, match="pool"):
        RankingCheck(archs=12, pool=8)
    with pytest.raises(ValueError, match="archs"):
        RankingCheck(archs=2)


TINY = [
    "--set", "data.synthetic_images=14", "--set", "data.synthetic_size=40",
    "--set", "data.eval_fraction=0.25", "--set", "data.val_fraction=0.3",
    "--set", "train.steps=2", "--set", "train.batch_size=1", "--set", "train.checkpoint_every=1",
    "--set", "search.calib_batches=1", "--set", "search.calib_batch_size=2",
    "--set", "retrain.batch_size=1", "--set", "model.exclude_ops=[dfconv3x3, dfconv5x5]",
    "--set", "search.fitness=pq",  # the check of a supernet's fitness, whatever the preset's default
]
CHECK = ["--archs", "4", "--steps", "2", "--pool", "5"]


def cli(*args):
    return CliRunner().invoke(main, [*args], catch_exceptions=False)


@pytest.mark.slow
def test_check_ranking_end_to_end_resumes_and_refuses_other_settings(tmp_path):
    out = tmp_path / "run"
    common = ["--out", str(out), "--device", "cpu", "--no-progress", *TINY]
    assert cli("check-ranking", *common, *CHECK).exit_code == 2  # no supernet yet: one clear line
    assert cli("search", *common).exit_code == 2
    assert not out.exists()  # refused before anything was written (no data generated, no config recorded)
    assert cli("train-supernet", *common).exit_code == 0
    res = cli("check-ranking", *common, *CHECK)
    assert res.exit_code == 0, res.output
    assert "tau" in res.output.splitlines()[-2] and "parameters alone" in res.output and "NASWOT alone" in res.output
    folder = out / "check-ranking"
    lines = (folder / "journal.jsonl").read_text().splitlines()
    assert len(lines) == 5 and json.loads(lines[0])["kind"] == "check-ranking"
    from autopanoptic.engine.checkpoint import load_checkpoint

    sup = load_checkpoint(out / "supernet" / "checkpoint.pt", map_location="cpu")  # the journal says which weights it scored
    assert json.loads(lines[0])["supernet"] == json.loads(json.dumps({"step": sup["step"], **sup["fingerprint"]}))
    first = json.loads((folder / "result.json").read_text())
    assert first["n"] == 4 and first["settings"]["steps"] == 2
    assert set(first["baselines"]) == {"parameters", "MACs", "NASWOT"}
    fits = [a["fitness"] for a in first["architectures"]]
    assert fits == sorted(fits)  # picked in fitness order, spread over the pool's range
    splits = json.loads((out / "splits.json").read_text())
    assert first["quick_truth"]["train_images"] == len(set(splits["train"]) - set(splits["val"]))
    assert (out / "plots" / "check_ranking.png").is_file()
    assert "Does the supernet rank?" in (out / "report.md").read_text()
    # a killed check (two entries left, a torn third) trains only what is missing, to the same result
    (folder / "journal.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])
    assert cli("check-ranking", *common, *CHECK).exit_code == 0
    again = json.loads((folder / "result.json").read_text())
    assert again["architectures"] == first["architectures"]
    resumed = (folder / "journal.jsonl").read_text().splitlines()
    assert resumed[:3] == lines[:3] and len(resumed) == 5 and all(json.loads(x) for x in resumed)
    # a damaged line (one byte changed) is refused and the journal left untouched
    good = (folder / "journal.jsonl").read_bytes()
    pos = good.index(b'"fitness": ') + len(b'"fitness": ') + 2
    bad = good[:pos] + bytes([good[pos] ^ 1]) + good[pos + 1 :]
    (folder / "journal.jsonl").write_bytes(bad)
    res = CliRunner().invoke(main, ["check-ranking", *common, *CHECK])
    assert res.exit_code == 2 and "damaged" in res.output and (folder / "journal.jsonl").read_bytes() == bad
    (folder / "journal.jsonl").write_bytes(good)
    # other settings on the same journal: refused, journal untouched
    before = (folder / "journal.jsonl").read_bytes()
    res = CliRunner().invoke(main, ["check-ranking", *common, "--archs", "4", "--steps", "3", "--pool", "5"])
    assert res.exit_code == 2 and "other settings" in res.output and "Traceback" not in res.output
    assert (folder / "journal.jsonl").read_bytes() == before


@pytest.mark.slow
def test_check_ranking_under_torchrun_equals_one_process(tmp_path):
    import os
    import shutil
    import subprocess
    import sys

    single = tmp_path / "single"
    common = ["--device", "cpu", "--no-progress", *TINY]
    assert cli("train-supernet", "--out", str(single), *common).exit_code == 0
    dist = tmp_path / "dist"
    shutil.copytree(single, dist)
    assert cli("check-ranking", "--out", str(single), *common, *CHECK).exit_code == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "autopanoptic_cli.main", "check-ranking", "--out", str(dist), *common, *CHECK]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.count("details: ") == 1  # rank 0 alone prints

    def entries(run: Path):
        lines = (run / "check-ranking" / "journal.jsonl").read_text().splitlines()[1:]
        out = sorted((json.loads(x) for x in lines), key=lambda e: e["i"])
        for e in out:
            e["score"].pop("seconds")
            e.pop("crc32")
        return out

    a, b = entries(single), entries(dist)
    assert len(a) == 4 and a == b  # same architectures, fitness, PQ and final loss, to the bit
    assert all(e["score"]["loss"] > 0 for e in a)



def _table_of(run: Path, archs, means) -> dict:
    """A ground-truth table of the run's own data (its saved config) holding ``archs`` with ``means``."""
    from autopanoptic.config import config_to_dict, load_config

    d = config_to_dict(load_config(str(run / "config.yaml")))
    return {"format": 1, "preset": "tiny", "exclude_ops": ["dfconv3x3", "dfconv5x5"], "data": d["data"],
            "recipe": {**d["retrain"], "init_from_supernet": False},
            "architectures": [{"index": i, "arch": list(a), "runs": [{"seed": 0, "pq": m - 0.01}, {"seed": 1, "pq": m + 0.01}]}
                              for i, (a, m) in enumerate(zip(archs, means))]}


@pytest.mark.slow
def test_check_ranking_against_a_matching_table_holds_the_fitness_against_its_means(tmp_path):
    out = tmp_path / "run"
    common = ["--out", str(out), "--device", "cpu", "--no-progress", "--workers", "1", *TINY,
              "--set", "search.fitness=loss"]  # a fitness with no ties after two training steps
    assert cli("train-supernet", *common).exit_code == 0
    # the shipped `tiny` table is for other data: --truth table refuses in one line, auto trains quick networks
    res = CliRunner().invoke(main, ["check-ranking", *common, "--truth", "table"])
    assert res.exit_code == 2 and "does not apply: data." in res.output and "Traceback" not in res.output
    from autopanoptic.engine.restrict import OpRestriction
    from autopanoptic.nn.supernet import make_config

    r = OpRestriction.build(make_config("tiny", 7, 5).search_space(), ("dfconv3x3", "dfconv5x5"))
    archs = [tuple(r.to_full(r.sub.sample(np.random.default_rng([5, i])))) for i in range(6)]
    table = tmp_path / "table.json"
    table.write_text(json.dumps(_table_of(out, archs, [0.3, 0.1, 0.5, 0.2, 0.6, 0.4])))
    on_table = [*common, "--set", f"eval.ground_truth={table}"]
    res = cli("check-ranking", *on_table)  # auto: the table applies (its data are the run's)
    assert res.exit_code == 0, res.output
    assert "against the ground truth `table.json`: 6 architectures x 2 trainings" in res.output
    icc = json.loads((out / "check-ranking" / "result.json").read_text())["table_truth"]["reliability_icc"]
    assert 0.9 < icc <= 1 and "against the architectures' true quality" in res.output  # seeds +-0.01 around the means
    first = json.loads((out / "check-ranking" / "result.json").read_text())
    assert [tuple(a["arch"]) for a in first["architectures"]] == archs
    assert [a["truth_pq"] for a in first["architectures"]] == pytest.approx([0.3, 0.1, 0.5, 0.2, 0.6, 0.4])
    assert first["table_truth"]["fitness"] == "loss" and first["table_truth"]["seeds"] == 2
    assert not (out / "check-ranking" / "journal.jsonl").exists()  # nothing trained
    fit = [a["fitness"] for a in first["architectures"]]
    assert len(set(fit)) == len(fit)
    # the check can fail: a table whose means follow the fitness gets a positive verdict, the reverse a negative one
    for sign, words in ((1, "the supernet ranks these architectures: tau 1.00"), (-1, "the wrong way round: tau -1.00")):
        table.write_text(json.dumps(_table_of(out, archs, [0.5 + sign * f / (10 * max(map(abs, fit))) for f in fit])))
        res = cli("check-ranking", *on_table)
        assert res.exit_code == 0 and words in res.output, res.output
    assert "ground-truth table `table.json`" in (out / "report.md").read_text()


@pytest.mark.slow
def test_a_training_free_fitness_is_checked_against_the_table_without_a_supernet(tmp_path):
    out = tmp_path / "run"
    common = ["--out", str(out), "--device", "cpu", "--no-progress", "--workers", "1", *TINY,
              "--set", "search.fitness=naswot", "--set", "search.cycles=1"]
    assert cli("search", *common).exit_code == 0  # no supernet trained: the search reads none
    assert not (out / "supernet").exists()
    from autopanoptic.engine.restrict import OpRestriction
    from autopanoptic.nn.supernet import make_config

    r = OpRestriction.build(make_config("tiny", 7, 5).search_space(), ("dfconv3x3", "dfconv5x5"))
    archs = [tuple(r.to_full(r.sub.sample(np.random.default_rng([6, i])))) for i in range(6)]
    table = tmp_path / "table.json"
    table.write_text(json.dumps(_table_of(out, archs, [0.3, 0.1, 0.5, 0.2, 0.6, 0.4])))
    res = cli("check-ranking", *common, "--truth", "table", "--set", f"eval.ground_truth={table}")
    assert res.exit_code == 0, res.output
    got = json.loads((out / "check-ranking" / "result.json").read_text())
    assert got["table_truth"]["fitness"] == "naswot" and not (out / "supernet").exists()
    # the fitness is the NASWOT score itself (same seed), so it ranks exactly as the NASWOT baseline
    assert got["tau"] == pytest.approx(got["baselines"]["NASWOT"])
    # what ranked is named: NASWOT, not a supernet that was never trained
    assert "NASWOT (the search's training-free fitness)" in got["verdict"] and "supernet ranks" not in got["verdict"]
    assert "NASWOT (the search's training-free fitness)" in res.output
    report = (out / "report.md").read_text()
    assert "Does the search's fitness rank?" in report and "Does the supernet rank?" not in report
