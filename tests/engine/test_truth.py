"""Ground-truth tables (engine.truth), the held-out supernet pool, the loss fitness and NASWOT."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from autopanoptic.config import Config, DataConfig, RetrainConfig, TrainConfig, config_to_dict, load_config
from autopanoptic.engine.datasets import make_splits
from autopanoptic.engine.pipeline import supernet_pool
from autopanoptic.engine.truth import GroundTruth
from autopanoptic.errors import DataError

DATA = DataConfig(synthetic_images=60, synthetic_size=32, synthetic_style="hard", eval_fraction=1 / 3)
RECIPE = RetrainConfig(init_from_supernet=False, steps=50)


def table(pqs, data=DATA, recipe=RECIPE):
    cfg = config_to_dict(Config(data=data, retrain=recipe))
    return {"format": 1, "preset": "tiny", "exclude_ops": ["dfconv3x3", "dfconv5x5"], "data": cfg["data"],
            "recipe": cfg["retrain"],
            "architectures": [{"index": i, "arch": [i % 3] * 21,
                               "runs": [{"seed": s, "pq": v} for s, v in enumerate(row)]}
                              for i, row in enumerate(pqs)]}


def test_reliability_percentile_and_means():
    rng = np.random.default_rng(0)
    true = rng.normal(0.4, 0.02, 30)
    gt = GroundTruth.from_json(table([list(t + rng.normal(0, 0.005, 3)) for t in true] + [[0.9]]))
    rel = gt.reliability()
    assert rel.n_archs == 30 and rel.icc > 0.9 and rel.split_half > 0.9 and rel.spread_over_se > 2
    archs, means = gt.means(min_seeds=3)
    assert len(archs) == 30 and means == pytest.approx([np.mean(r) for r in gt.table()[:30]])
    assert gt.percentile(1.0) == 1.0 and gt.percentile(0.0) == 0.0
    assert gt.percentile(float(np.median(means)), min_seeds=3) == pytest.approx(0.5, abs=0.04)
    noisy = GroundTruth.from_json(table([list(0.4 + rng.normal(0, 0.02, 3)) for _ in range(30)]))
    assert noisy.reliability().icc < 0.5


def test_dotted_keys_read_inside_runs_and_skip_runs_without_them():
    t = table([[0.1, 0.2], [0.3]])
    t["architectures"][0]["runs"][1]["large"] = {"pq": 0.25, "pq_by_size": {"200": 0.5}}
    gt = GroundTruth.from_json(t)
    assert gt.table("large.pq") == [[0.25], []]
    assert gt.table("large.pq_by_size.200") == [[0.5], []]
    assert gt.table("large.pq_by_size.400") == [[], []]
    assert gt.table() == [[0.1, 0.2], [0.3]]


def test_a_run_is_comparable_only_with_the_same_data_and_recipe():
    gt = GroundTruth.from_json(table([[0.1, 0.2]]))
    cfg = Config(data=DATA, retrain=RECIPE, train=TrainConfig(steps=7))
    cfg = load_config("tiny", [])
    from attrs import evolve

    same = evolve(cfg, data=DATA, retrain=evolve(RECIPE, seed=4, checkpoint_every=3),
                  model=evolve(cfg.model, exclude_ops=("dfconv3x3", "dfconv5x5")))
    assert gt.mismatch(same) is None  # the retraining seed and checkpoints do not matter
    assert "retrain.steps" in gt.mismatch(evolve(same, retrain=evolve(same.retrain, steps=51)))
    assert "retrain.init_from_supernet" in gt.mismatch(evolve(same, retrain=evolve(same.retrain, init_from_supernet=True)))
    assert "data.synthetic_style" in gt.mismatch(evolve(same, data=evolve(DATA, synthetic_style="basic")))
    assert "sampling space" in gt.mismatch(evolve(same, model=evolve(same.model, exclude_ops=())))
    assert "data.root" in gt.mismatch(evolve(same, data=evolve(DATA, root="/x")))


def test_bad_tables_are_refused_with_the_file_named(tmp_path):
    p = tmp_path / "t.json"
    with pytest.raises(DataError, match="cannot read"):
        GroundTruth.load(p)
    p.write_text("{")
    with pytest.raises(DataError, match="t.json: not a JSON"):
        GroundTruth.load(p)
    p.write_text(json.dumps({**table([[0.1]]), "format": 9}))
    with pytest.raises(DataError, match="format 9"):
        GroundTruth.load(p)
    bad = table([[0.1]])
    bad["architectures"][0]["runs"][0]["pq"] = "high"
    p.write_text(json.dumps(bad))
    with pytest.raises(DataError, match="not a ground-truth table"):
        GroundTruth.load(p)


def test_holdout_val_keeps_the_validation_images_out_of_supernet_training():
    cfg = load_config("tiny", ["data.synthetic_images=40", "train.holdout_val=false"])
    splits = make_splits(40, cfg.data, calib_images=4)
    assert supernet_pool(cfg, splits) == splits.train
    held = supernet_pool(load_config("tiny", ["data.synthetic_images=40", "train.holdout_val=true"]), splits)
    assert set(held) == set(splits.train) - set(splits.val) and not set(held) & set(splits.val)


def test_path_loss_and_naswot_measure_the_path_they_are_given():
    from autopanoptic.data import write_synthetic
    from autopanoptic.engine.datasets import load_batch, open_dataset
    from autopanoptic.engine.search import calibration_batches, path_loss
    from autopanoptic.nn import build_network, build_supernet
    from autopanoptic.nn.proxies import naswot_score
    import tempfile

    root = tempfile.mkdtemp()
    write_synthetic(root, 6, size=32, seed=1, style="hard")
    ds = open_dataset(root, "images", "panoptic.json", "panoptic", "coco")
    torch.manual_seed(0)
    sup = build_supernet("tiny", ds.categories.num_things, ds.categories.num_stuff)
    a, b = sup.search_space.sample(1), sup.search_space.sample(2)
    calib = calibration_batches(ds, [0, 1], 1, 2, "cpu")
    la = path_loss(sup, a, ds, [2, 3, 4], calib, batch_size=2)
    assert np.isfinite(la) and la > 0
    state = torch.random.get_rng_state()
    assert path_loss(sup, a, ds, [2, 3, 4], calib, batch_size=2) == la  # deterministic
    assert torch.equal(torch.random.get_rng_state(), state)  # and the caller's random state is untouched
    assert path_loss(sup, b, ds, [2, 3, 4], calib) != pytest.approx(la, rel=1e-6)
    imgs = load_batch(ds, [0, 1, 2, 3])[0]
    net = build_network("tiny", a, ds.categories.num_things, ds.categories.num_stuff)
    s1 = naswot_score(net, imgs)
    assert np.isfinite(s1) and s1 == naswot_score(net, imgs)
    assert naswot_score(net, [imgs[0]] * 4) == float("-inf")  # identical images cannot be told apart
    with pytest.raises(ValueError):
        naswot_score(net, imgs[:1])


def test_the_report_compares_with_the_ground_truth_only_when_the_settings_match(tmp_path):
    from attrs import evolve

    from autopanoptic.engine.report import write_report
    from autopanoptic.engine.runs import RunDir

    cfg = load_config("tiny", ["retrain.init_from_supernet=false", "retrain.steps=50"])
    d = config_to_dict(cfg)
    t = table([[0.30, 0.32], [0.40, 0.42], [0.50, 0.52]])
    t["data"], t["recipe"], t["exclude_ops"] = d["data"], d["retrain"], list(cfg.model.exclude_ops)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(t))
    run_dir = tmp_path / "run"
    (run_dir / "eval").mkdir(parents=True)
    g = {"pq": 0.45, "sq": 0.7, "rq": 0.6, "n": 9}
    c = {**g, "pq": 0.31}
    (run_dir / "eval" / "metrics.json").write_text(json.dumps(
        {"All": g, "Things": g, "Stuff": g, "per_class": {}, "n_images": 4, "retrain_steps": 50,
         "controls": [{"index": 0, "arch": [0], "All": c, "Things": c, "Stuff": c, "params": None}]}))

    def report(c) -> str:
        with RunDir(run_dir) as run:
            return write_report(run, c).read_text()

    text = report(evolve(cfg, eval=evolve(cfg.eval, ground_truth=str(path))))
    assert "beats 67% of the table's 6 single trainings" in text and "67% of its 3 architecture means" in text
    assert "Random control 1 (PQ 31.0) beats 17% of those single trainings" in text
    assert "| random control 1 | 31.0 |" in text and "Chosen minus the controls' mean: **+14.0 PQ**" in text
    other = evolve(cfg, retrain=evolve(cfg.retrain, steps=60), eval=evolve(cfg.eval, ground_truth=str(path)))
    text = report(other)
    assert "does not apply: retrain.steps is 60 in the run, 50 in the table" in text
    assert "beats 67%" not in text and "beats 17%" not in text
    assert "no comparison" in report(evolve(cfg, eval=evolve(cfg.eval, ground_truth=None)))
    assert "Against the ground truth" not in report(None)  # no config, no claim


@pytest.mark.slow
def test_search_with_the_loss_fitness_journals_apart_and_prefers_lower_loss(tmp_path):
    from click.testing import CliRunner

    from autopanoptic_cli.main import main

    out = tmp_path / "run"
    common = ["--out", str(out), "--device", "cpu", "--no-progress",
              "--set", "data.synthetic_images=12", "--set", "data.synthetic_size=40", "--set", "data.val_fraction=0.3",
              "--set", "train.steps=2", "--set", "train.batch_size=1", "--set", "search.policy=random",
              "--set", "search.evaluations=3", "--set", "search.calib_batches=1", "--set", "search.calib_batch_size=2",
              "--set", "model.exclude_ops=[dfconv3x3, dfconv5x5]", "--set", "search.fitness=pq"]
    run = lambda *a: CliRunner().invoke(main, [*a], catch_exceptions=False)  # noqa: E731
    assert run("train-supernet", *common).exit_code == 0
    res = run("search", *common, "--set", "search.fitness=loss")
    assert res.exit_code == 0
    loss = float(res.output.split("chosen architecture: validation loss ")[1].split()[0])
    assert (out / "search" / "journal-loss.jsonl").is_file() and not (out / "search" / "journal.jsonl").exists()
    cands = json.loads((out / "search" / "candidates.json").read_text())
    assert all(c["fitness"] < 0 for c in cands)  # minus a loss
    arch = json.loads((out / "arch.json").read_text())
    assert arch["fitness"] == max(c["fitness"] for c in cands)  # the lowest loss is chosen
    assert loss == pytest.approx(-arch["fitness"], abs=5e-4)  # printed as the loss, not as a PQ
    assert run("search", *common).exit_code == 0  # the PQ search has its own journal
    assert (out / "search" / "journal.jsonl").is_file()
    # the training-free baseline: NASWOT of each candidate's fresh standalone network, no supernet weights
    res = run("search", *common, "--set", "search.fitness=naswot")
    assert res.exit_code == 0 and "chosen architecture: NASWOT score" in res.output
    assert (out / "search" / "journal-naswot.jsonl").is_file()
    cands = json.loads((out / "search" / "candidates.json").read_text())
    arch = json.loads((out / "arch.json").read_text())
    assert arch["fitness_kind"] == "naswot" and arch["fitness"] == max(c["fitness"] for c in cands)
    from autopanoptic.config import load_config
    from autopanoptic.engine import pipeline
    from autopanoptic.engine.runs import RunDir
    from autopanoptic.engine.search import calibration_batches
    from autopanoptic.nn.proxies import naswot_scores

    sets = [x for k, x in enumerate(common) if k and common[k - 1] == "--set"]
    cfg = load_config("tiny", [*sets, "search.fitness=naswot"])
    with RunDir(out) as r:
        data = pipeline.prepare_data(cfg, r, progress=False)
        sup = pipeline.load_supernet(cfg, r, data)
    calib = calibration_batches(data.train, data.splits.calib, 1, 2, "cpu")
    want = naswot_scores(sup.config, [tuple(c["arch"]) for c in cands], calib, seed=cfg.search.seed)
    assert [c["fitness"] for c in cands] == pytest.approx(want)


@pytest.mark.parametrize("module", ["autopanoptic.engine.ranking", "autopanoptic.engine.fewshot", "autopanoptic.engine.search",
                                    "autopanoptic.engine.truth"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.slow
def test_fewshot_children_train_only_paths_with_their_op():
    import tempfile

    from autopanoptic.config import TrainConfig
    from autopanoptic.data import write_synthetic
    from autopanoptic.engine.datasets import open_dataset
    from autopanoptic.engine.fewshot import train_children
    from autopanoptic.engine.restrict import OpRestriction
    from autopanoptic.nn import build_supernet

    root = tempfile.mkdtemp()
    write_synthetic(root, 4, size=48, seed=2)
    ds = open_dataset(root, "images", "panoptic.json", "panoptic", "coco")
    torch.manual_seed(0)
    sup = build_supernet("tiny", ds.categories.num_things, ds.categories.num_stuff)
    r = OpRestriction.build(sup.search_space, ["dfconv3x3", "dfconv5x5"])
    layer = len(sup.search_space) - 1  # the last attention block: 3 choices
    before = {k: v.clone() for k, v in sup.state_dict().items()}
    kids = train_children(sup, r, layer, ds, [0, 1, 2, 3], TrainConfig(steps=1, batch_size=2), steps=1)
    assert sorted(kids) == [0, 1, 2] and all(k is not sup for k in kids.values())
    assert all(torch.equal(v, before[k]) for k, v in sup.state_dict().items())  # the parent is untouched
    choices = sup.head_layer_choices[-1]
    for c, kid in kids.items():
        moved = [not torch.equal(p, q) for p, q in zip(kid.head_layer_choices[-1].parameters(), choices.parameters())]
        own = [not torch.equal(p, q) for p, q in zip(kid.head_layer_choices[-1][c].parameters(), choices[c].parameters())]
        assert any(own) and sum(moved) == sum(own)  # only the child's own op of the split layer trained


def test_a_table_written_before_new_config_keys_still_matches_while_they_keep_their_defaults():
    from attrs import evolve

    from autopanoptic.engine.truth import same_settings

    cfg = load_config("tiny", ["retrain.init_from_supernet=false"])
    d = config_to_dict(cfg)
    older = {k: v for k, v in d["retrain"].items() if k != "amp"}  # a table that predates retrain.amp
    assert same_settings(older, d["retrain"], "retrain") is None
    bf16 = config_to_dict(evolve(cfg, retrain=evolve(cfg.retrain, amp="bf16")))["retrain"]
    assert "retrain.amp is 'bf16'" in same_settings(older, bf16, "retrain")
    assert same_settings(d["data"], {**d["data"], "loader_workers": 4}, "data") is None  # speed only


def test_a_checkpoint_written_before_new_config_keys_resumes_while_they_keep_their_defaults():
    from autopanoptic.engine.pipeline import _fingerprint
    from autopanoptic.engine.train import _fingerprint_diff

    cfg = load_config("tiny")
    now = _fingerprint(cfg, "train", "model", "data")
    older = {k: v for k, v in now.items() if k not in ("data.min_size", "train.amp")}  # written before those keys
    assert _fingerprint_diff(older, now) is None
    bf16 = _fingerprint(load_config("tiny", ["train.amp=bf16"]), "train", "model", "data")
    assert "train.amp" in _fingerprint_diff(older, bf16)
    assert "train.lr" in _fingerprint_diff({**older, "train.lr": 1.0}, now)


def test_settings_that_do_not_change_the_math_do_not_block_a_resume():
    from autopanoptic.engine.pipeline import _fingerprint
    from autopanoptic.engine.train import _fingerprint_diff

    def fp(*sets):
        return _fingerprint(load_config("tiny", list(sets)), "train", "retrain", "model", "data")

    base = fp()
    for s in ("train.checkpoint_every=7", "retrain.checkpoint_every=9", "retrain.parallel=data",
              "retrain.controls=3", "data.loader_workers=2"):
        assert fp(s) != base, s  # the setting is in the fingerprint ...
        assert _fingerprint_diff(base, fp(s)) is None, s  # ... and ignored by the comparison
    assert "train.steps" in _fingerprint_diff(base, fp("train.steps=7"))


def test_a_scratch_checkpoint_written_before_new_recipe_keys_resumes_while_they_keep_their_defaults():
    from autopanoptic.engine.scratch import scratch_fingerprint
    from autopanoptic.engine.train import _fingerprint_diff

    now = scratch_fingerprint("tiny", (0,) * 21, RECIPE)
    older = {k: v for k, v in now.items() if k not in ("retrain.amp", "retrain.parallel")}
    assert _fingerprint_diff(older, now) is None
    bf16 = scratch_fingerprint("tiny", (0,) * 21, RetrainConfig(init_from_supernet=False, steps=50, amp="bf16"))
    assert "retrain.amp" in _fingerprint_diff(older, bf16)
    assert "retrain.steps" in _fingerprint_diff(older, scratch_fingerprint("tiny", (0,) * 21, RetrainConfig(init_from_supernet=False, steps=9)))
    assert "arch" in _fingerprint_diff(older, scratch_fingerprint("tiny", (1,) * 21, RECIPE))


def test_the_tiny_truth_preset_is_the_tables_setting_and_tiny_is_not():
    from pathlib import Path

    gt = GroundTruth.load(Path(__file__).resolve().parents[2] / "benchmarks" / "ground_truth" / "tiny.json")
    assert gt.mismatch(load_config("tiny-truth")) is None
    assert gt.mismatch(load_config("tiny")).startswith("data.")  # the demo's own data: no comparison
    assert gt.mismatch(load_config("tiny-truth", ["retrain.steps=1000"])) is not None


def test_the_demo_by_default_runs_where_the_comparison_applies_and_its_plan_says_so(tmp_path):
    from click.testing import CliRunner

    from autopanoptic_cli.main import main

    def plan_line(*args: str) -> str:
        res = CliRunner().invoke(main, ["demo", "--dry-run", "--out", str(tmp_path / "p"), *args])
        assert res.exit_code == 0, res.output
        return next(x for x in res.output.splitlines() if x.startswith("report:"))

    assert plan_line().startswith("report: compared with the ground truth `tiny.json`")
    assert "does not apply: data." in plan_line("--config", "tiny")
    assert "does not apply: retrain.steps" in plan_line("--set", "retrain.steps=10")
    assert "no comparison" in plan_line("--set", "eval.ground_truth=null")


def test_a_growing_table_compares_on_the_seeds_every_architecture_has():
    # 30 architectures with 3 seeds; 5 of them already have 2 more (a table growing by --seeds 5)
    rng = np.random.default_rng(1)
    rows = [list(0.4 + rng.normal(0, 0.01, 5 if i < 5 else 3)) for i in range(30)]
    gt = GroundTruth.from_json(table(rows))
    assert len(gt.means(min_seeds=5)[0]) == 5  # only the grown ones: what a comparison must not use
    settled = gt.settled()
    assert [len(rs) for rs in settled.runs] == [3] * 30
    archs, means = settled.means(min_seeds=3)
    assert len(archs) == 30 and means == pytest.approx([np.mean(r[:3]) for r in rows])
    assert settled.with_seeds([0]).table() == [[r[0]] for r in rows]
    first = GroundTruth.from_json(table([[0.1, 0.2], [0.3], []]))  # the first seeds still running
    assert first.settled() is first


def test_a_regular_install_ships_the_tables_and_finds_them(tmp_path):
    """setup.py's build copies the presets' tables into the package; table_for finds that copy where
    no source tree is beside the code (a wheel), and the source tree's where there is one."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    lib = tmp_path / "lib"
    proc = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(lib)], cwd=repo,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shipped = lib / "autopanoptic" / "ground_truth" / "tiny.json"
    assert shipped.read_bytes() == (repo / "benchmarks" / "ground_truth" / "tiny.json").read_bytes()
    code = ("from autopanoptic.config import load_config; from autopanoptic.engine.truth import table_for; "
            "print(table_for(load_config('tiny-truth')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "PYTHONPATH": str(lib)})
    assert out.returncode == 0, out.stderr[-3000:]
    assert Path(out.stdout.strip()) == shipped  # the installed copy, not this checkout's
    from autopanoptic.engine.truth import table_for

    assert table_for(load_config("tiny-truth")) == repo / "benchmarks" / "ground_truth" / "tiny.json"


def test_the_terminal_line_places_a_run_and_its_controls_only_where_the_table_applies():
    from autopanoptic.engine.truth import terminal_line

    line = terminal_line(load_config("tiny-truth"), 0.99, [0.0, 0.99])
    assert "the searched network beats 100%, its controls 0%, 100%" in line and "tiny.json" in line
    assert "its control" not in terminal_line(load_config("tiny-truth"), 0.0)
    assert terminal_line(load_config("tiny"), 0.99) is None  # the former demo's data: the report says why
