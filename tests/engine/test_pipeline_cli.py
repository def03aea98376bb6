"""End to end through the CLI on a very small generated dataset: train, search, retrain, evaluate."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from autopanoptic_cli.main import main

pytestmark = pytest.mark.slow

TINY = [
    "--set", "data.synthetic_images=10", "--set", "data.synthetic_size=48",
    "--set", "data.eval_fraction=0.3", "--set", "data.val_fraction=0.3",
    "--set", "train.steps=2", "--set", "train.batch_size=1", "--set", "train.checkpoint_every=1",
    "--set", "search.cycles=1", "--set", "search.calib_batches=1", "--set", "search.calib_batch_size=2",
    "--set", "retrain.steps=2", "--set", "retrain.batch_size=1", "--set", "eval.draw=1",
    "--set", "model.exclude_ops=[dfconv3x3, dfconv5x5]",
    "--set", "search.fitness=pq",  # these tests exercise the supernet's fitness, whatever the preset's default
]


def cli(*args: str):
    res = CliRunner().invoke(main, [*args], catch_exceptions=False)
    return res


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "r"
    common = ["--out", str(out), "--device", "cpu", "--no-progress", *TINY]
    for cmd in ("train-supernet", "search", "retrain", "evaluate"):
        res = cli(cmd, *common)
        assert res.exit_code == 0, (cmd, res.output)
    return out


def test_every_stage_writes_its_files(run_folder):
    for rel in ("config.yaml", "splits.json", "supernet/checkpoint.pt", "supernet/losses.json",
                "search/journal.jsonl", "search/scoreboard.json", "search/candidates.json", "arch.json",
                "retrain/checkpoint.pt", "eval/metrics.json", "eval/predictions.json", "report.md",
                "plots/scoreboard.png", "plots/fitness.png", "plots/losses.png", "plots/prediction_0.png"):
        assert (run_folder / rel).is_file(), rel
    assert not (run_folder / ".lock").exists()
    metrics = json.loads((run_folder / "eval" / "metrics.json").read_text())
    assert set(metrics) >= {"All", "Things", "Stuff", "per_class"}
    arch = json.loads((run_folder / "arch.json").read_text())
    assert "dfconv" not in json.dumps(arch["ops"])  # excluded ops are never chosen
    candidates = json.loads((run_folder / "search" / "candidates.json").read_text())
    assert len(candidates) >= 1 and all(0.0 <= c["fitness"] <= 1.0 for c in candidates)
    splits = json.loads((run_folder / "splits.json").read_text())
    assert not set(splits["eval"]) & set(splits["train"])
    assert set(splits["val"]) <= set(splits["train"])


def test_exported_predictions_are_accepted_by_the_coco_panoptic_api(run_folder):
    from panopticapi.evaluation import pq_compute

    ev = run_folder / "eval"
    gt = json.loads((ev / "ground_truth.json").read_text())
    cwd = os.getcwd()
    try:
        os.chdir(ev)  # panopticapi prints and may write nothing; keep it inside tmp
        res = pq_compute(str(ev / "ground_truth.json"), str(ev / "predictions.json"),
                         gt_folder=gt["png_folder"], pred_folder=str(ev / "predictions"))
    finally:
        os.chdir(cwd)
    metrics = json.loads((ev / "metrics.json").read_text())
    for group in ("All", "Things", "Stuff"):
        assert res[group]["pq"] == pytest.approx(metrics[group]["pq"], abs=1e-9)
        assert res[group]["n"] == metrics[group]["n"]


def test_search_resumes_from_its_journal(run_folder, tmp_path):
    journal = run_folder / "search" / "journal.jsonl"
    lines = journal.read_text().splitlines()
    before = json.loads((run_folder / "arch.json").read_text())
    journal.write_text("\n".join(lines[: 1 + (len(lines) - 1) // 2]) + "\n")  # header + half the evaluations
    res = cli("search", "--out", str(run_folder), "--device", "cpu", "--no-progress", *TINY)
    assert res.exit_code == 0, res.output
    assert journal.read_text().splitlines() == lines
    assert json.loads((run_folder / "arch.json").read_text())["flat"] == before["flat"]


def test_metrics_jsonl_logs_every_step_candidate_and_evaluation_once(run_folder):
    # runs after the search resume above: the resumed search must not have logged anything twice
    from autopanoptic.engine.logs import read_log, record_key

    records = read_log(run_folder / "metrics.jsonl")
    keys = [record_key(r) for r in records]
    assert len(keys) == len(set(keys))
    for stage in ("supernet", "retrain"):
        steps = [r for r in records if r["kind"] == "step" and r["stage"] == stage]
        losses = json.loads((run_folder / stage / "losses.json").read_text())
        assert [r["step"] for r in steps] == [x["step"] for x in losses] == [0, 1]
        for r, x in zip(steps, losses):
            assert r["loss"] == x["loss"] and r["lr"] == x["lr"] and r["images_per_s"] > 0
    candidates = [r for r in records if r["kind"] == "candidate"]
    expected = json.loads((run_folder / "search" / "candidates.json").read_text())
    assert [(r["n"], r["arch"], r["fitness"]) for r in candidates] == [(c["index"], c["arch"], c["fitness"]) for c in expected]
    assert all(r["seconds"] > 0 for r in candidates)
    (ev,) = [r for r in records if r["kind"] == "eval"]
    metrics = json.loads((run_folder / "eval" / "metrics.json").read_text())
    assert (ev["PQ"], ev["SQ_Things"], ev["RQ_Stuff"]) == (metrics["All"]["pq"], metrics["Things"]["sq"], metrics["Stuff"]["rq"])
    assert ev["retrain_steps"] == 2 and ev["n_images"] == metrics["n_images"]
    report = (run_folder / "report.md").read_text()
    assert "plots/candidates.png" in report and (run_folder / "plots" / "candidates.png").is_file()


def test_tensorboard_without_the_extra_is_one_line_saying_how_to_install_it(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorboard", None)
    res = CliRunner().invoke(main, ["evaluate", "--out", str(tmp_path / "x"), "--no-progress", *TINY,
                                    "--set", "log.tensorboard=true"])
    assert res.exit_code == 2, res.output
    assert res.output.strip().splitlines() == [res.output.strip()]
    assert "pip install 'autopanoptic[tensorboard]'" in res.output


def test_arch_show_lists_every_layer_with_its_op_and_the_totals(run_folder):
    res = cli("arch", "show", str(run_folder / "arch.json"), *TINY)
    assert res.exit_code == 0, res.output
    arch = json.loads((run_folder / "arch.json").read_text())
    for group, layers in arch["ops"].items():
        for name, op in layers.items():
            assert any(line.split()[:3] == [group, name, op] for line in res.output.splitlines()), (name, op)
    assert "M parameters" in res.output and "GMACs at 64x64 px" in res.output


def test_bad_config_value_is_one_clear_line(tmp_path):
    res = cli("train-supernet", "--out", str(tmp_path / "x"), "--set", "train.lr=-0.1", "--no-progress")
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [res.output.strip()]
    assert "train.lr" in res.output and "must be > 0" in res.output


def test_missing_dataset_folder_is_a_clear_error(tmp_path):
    res = cli("train-supernet", "--out", str(tmp_path / "x"), "--set", f"data.root={tmp_path / 'nope'}", "--dry-run")
    assert res.exit_code == 2
    assert "does not exist" in res.output and str(tmp_path / "nope") in res.output


def test_architecture_that_does_not_fit_the_space_is_refused(run_folder, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"flat": [0, 1, 2]}))
    res = cli("retrain", "--out", str(run_folder), "--arch", str(bad), "--device", "cpu", "--no-progress", *TINY)
    assert res.exit_code == 2
    assert "3 choices but search space" in res.output


def test_retraining_an_op_the_supernet_never_trained_is_refused(run_folder, tmp_path):
    arch = json.loads((run_folder / "arch.json").read_text())
    arch["ops"]["head"]["mask.0"] = "dfconv3x3"  # excluded from sampling by TINY
    bad = tmp_path / "dfconv.json"
    bad.write_text(json.dumps(arch["ops"]))
    res = cli("retrain", "--out", str(run_folder), "--arch", str(bad), "--device", "cpu", "--no-progress", *TINY)
    assert res.exit_code == 2
    assert "dfconv3x3" in res.output and "init_from_supernet=false" in res.output


def test_a_locked_run_folder_is_refused(tmp_path):
    from autopanoptic.engine.runs import RunDir

    with RunDir(tmp_path / "busy"):
        res = cli("train-supernet", "--out", str(tmp_path / "busy"), "--no-progress")
    assert res.exit_code == 2
    assert "in use" in res.output


def test_a_lock_held_by_a_zombie_is_taken_over(tmp_path):
    """A killed process stays a zombie until its parent reaps it (forever, when init does not reap
    orphans, as in some containers): its lock is stale all the same."""
    import socket
    import subprocess
    import time

    from autopanoptic.engine.runs import RunDir

    child = subprocess.Popen(["true"])  # not waited for: a zombie once it exits
    try:
        while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            time.sleep(0.01)
        os.kill(child.pid, 0)  # the pid still exists
        folder = tmp_path / "z"
        folder.mkdir()
        (folder / ".lock").write_text(json.dumps({"pid": child.pid, "host": socket.gethostname()}))
        with RunDir(folder):
            assert json.loads((folder / ".lock").read_text())["pid"] == os.getpid()
    finally:
        child.wait()


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    res = cli("train-supernet", "--out", str(tmp_path / "plan"), "--dry-run", *TINY)
    assert res.exit_code == 0, res.output
    assert "train-supernet: 2 steps" in res.output
    assert not (tmp_path / "plan").exists()


@pytest.mark.parametrize(("fitness", "words"), [("pq", "each PQ on"), ("loss", "each the supernet's loss on"),
                                                ("naswot", "each the NASWOT score of the freshly initialised network")])
def test_the_dry_run_says_what_the_search_scores(tmp_path, fitness, words):
    res = cli("search", "--out", str(tmp_path / "plan"), "--dry-run", *TINY, "--set", f"search.fitness={fitness}")
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if x.startswith("search:"))
    assert words in line and ("validation images" in line) == (fitness != "naswot")
    assert "mask head" not in line
    res = cli("search", "--out", str(tmp_path / "plan"), "--dry-run", *TINY, "--set", "search.fitness=naswot",
              "--set", "search.naswot_mask_head=true")
    assert "(mask head included)" in next(x for x in res.output.splitlines() if x.startswith("search:"))


def test_full_demo_prints_pq_and_the_report(tmp_path):
    out = tmp_path / "demo"
    res = cli("demo", "--out", str(out), "--device", "cpu", "--no-progress", *TINY)
    assert res.exit_code == 0, res.output
    for label in ("PQ", "All", "Things", "Stuff", "untrained", "search on the supernet's PQ", str(out / "report.md")):
        assert label in res.output
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert set(metrics["timings"]) >= {"train_supernet", "search", "retrain", "evaluate", "total"}
    assert "## Evaluation" in (out / "report.md").read_text()


def test_a_training_free_search_with_a_from_scratch_retraining_trains_no_supernet(tmp_path):
    free = [*TINY, "--set", "search.fitness=naswot", "--set", "retrain.init_from_supernet=false"]
    plan = cli("demo", "--out", str(tmp_path / "plan"), "--dry-run", *free)
    assert plan.exit_code == 0, plan.output
    assert "train-supernet: skipped" in plan.output
    assert "train-supernet: skipped" not in cli("demo", "--out", str(tmp_path / "plan"), "--dry-run", *TINY).output
    out = tmp_path / "demo"
    res = cli("demo", "--out", str(out), "--device", "cpu", "--no-progress", *free)
    assert res.exit_code == 0, res.output
    assert not (out / "supernet").exists()
    timings = json.loads((out / "eval" / "metrics.json").read_text())["timings"]
    assert "train_supernet" not in timings and {"search", "retrain", "evaluate"} <= set(timings)
    assert json.loads((out / "arch.json").read_text())["fitness_kind"] == "naswot"
    assert "No supernet was trained" in (out / "report.md").read_text()
    assert "random search on NASWOT, no supernet" in res.output  # tiny-truth's policy (the demo's config)
    # the search command alone needs no supernet either; a supernet fitness still does, in one line
    res = cli("search", "--out", str(tmp_path / "s"), "--device", "cpu", "--no-progress", *free)
    assert res.exit_code == 0 and (tmp_path / "s" / "arch.json").is_file(), res.output
    res = CliRunner().invoke(main, ["search", "--out", str(tmp_path / "p"), "--no-progress", *TINY])
    assert res.exit_code != 0 and "no trained supernet" in res.output and not (tmp_path / "p").exists()


def test_pretrained_backbone_weights_initialise_the_supernet(tmp_path):
    import torch

    from autopanoptic.config import load_config
    from autopanoptic.engine import pipeline
    from autopanoptic.engine.checkpoint import load_checkpoint
    from autopanoptic.engine.pretrain import save_backbone
    from autopanoptic.engine.runs import RunDir
    from autopanoptic.nn.backbone import ShuffleNetSupernet

    torch.manual_seed(5)
    pretrained = ShuffleNetSupernet((1, 1, 2, 1), (16, 32, 64, 128, 256))
    weights = save_backbone(pretrained, tmp_path / "backbone.pt")
    sets = [a for a in TINY if a != "--set"] + [f"model.backbone_weights={weights}"]
    cfg = load_config("tiny", sets)
    with RunDir(tmp_path / "run") as run:
        pipeline.train_supernet(cfg, run, progress=False, stop_after=0)  # initialise and checkpoint, no step
    state = load_checkpoint(tmp_path / "run" / "supernet" / "checkpoint.pt")["model"]
    for name, value in pretrained.state_dict().items():
        assert torch.equal(state[f"backbone.{name}"], value), name


def test_evaluate_reports_ap_and_miou_beside_pq(run_folder):
    m = json.loads((run_folder / "eval" / "metrics.json").read_text())
    for key in ("box_ap", "mask_ap"):
        assert set(m[key]) >= {"AP", "AP50", "AP75", "per_class", "n"}
    assert m["semantic"]["n"] >= 1 and 0.0 <= m["semantic"]["miou"] <= 1.0
    assert "mask AP" in (run_folder / "report.md").read_text()


def test_eval_batch_size_sets_the_forward_batches(run_folder, tmp_path, monkeypatch):
    import shutil

    from autopanoptic.engine import evaluate as E

    seen = []
    real = E.evaluate

    def spy(*args, **kwargs):
        seen.append(kwargs["batch_size"])
        return real(*args, **kwargs)

    monkeypatch.setattr(E, "evaluate", spy)
    out = tmp_path / "r"
    shutil.copytree(run_folder, out)
    res = cli("evaluate", "--out", str(out), "--device", "cpu", "--no-progress", *TINY, "--set", "eval.batch_size=3")
    assert res.exit_code == 0, res.output
    assert seen == [3]
    before = json.loads((run_folder / "eval" / "metrics.json").read_text())
    after = json.loads((out / "eval" / "metrics.json").read_text())
    for group in ("All", "Things", "Stuff"):
        assert after[group] == pytest.approx(before[group], abs=1e-9), group


def _drop_categories(src: Path, dst: Path, drop: set[str]) -> dict:
    """Copy the COCO-panoptic dataset ``src`` to ``dst`` without the categories named in ``drop``
    (their pixels become void): a dataset with other classes, for the transfer test."""
    import shutil

    from autopanoptic.data.format import read_panoptic_png, write_panoptic_png

    shutil.copytree(src / "images", dst / "images")
    js = json.loads((src / "panoptic.json").read_text())
    gone = {c["id"] for c in js["categories"] if c["name"] in drop}
    js["categories"] = [c for c in js["categories"] if c["id"] not in gone]
    for ann in js["annotations"]:
        ids = read_panoptic_png(src / "panoptic" / ann["file_name"])
        for seg in ann["segments_info"]:
            if seg["category_id"] in gone:
                ids[ids == seg["id"]] = 0
        ann["segments_info"] = [s for s in ann["segments_info"] if s["category_id"] not in gone]
        write_panoptic_png(dst / "panoptic" / ann["file_name"], ids)
    (dst / "panoptic.json").write_text(json.dumps(js))
    return js


def test_an_architecture_searched_on_one_dataset_retrains_on_another_with_other_classes(run_folder, tmp_path):
    # paper Table 6: search on a source dataset, retrain and evaluate on a target with other classes
    source = tmp_path / "source"
    assert cli("data", "synth", str(source), "--images", "10", "--size", "48", "--seed", "3",
               "--no-progress").exit_code == 0
    target = _drop_categories(source, tmp_path / "target", {"ring", "sand"})
    n_things = sum(c["isthing"] for c in target["categories"])
    assert (n_things, len(target["categories"]) - n_things) == (3, 4)  # source: 4 things, 5 stuff

    arch = json.loads((run_folder / "arch.json").read_text())
    assert set(arch["arch"]) == {"backbone", "head", "inter"}  # indices only, no class counts
    out = tmp_path / "transfer"
    common = ["--out", str(out), "--device", "cpu", "--no-progress", *TINY,
              "--set", f"data.root={tmp_path / 'target'}"]
    res = cli("retrain", *common, "--arch", str(run_folder / "arch.json"),
              "--set", "retrain.init_from_supernet=false")
    assert res.exit_code == 0, res.output
    assert cli("evaluate", *common).exit_code == 0
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["arch"] == arch["flat"]
    names = {v["name"] for v in metrics["per_class"].values()}
    assert "ring" not in names and "sand" not in names
    # the class-dependent layers were rebuilt for the target: 3 thing classes, 4 stuff + "things"
    assert sorted(metrics["box_ap"]["per_class"]) == ["circle", "square", "triangle"]
    assert len(metrics["semantic"]["per_class"]) == 5


def test_search_under_a_latency_budget_writes_the_front_and_retrain_picks_a_point(run_folder, tmp_path):
    import shutil

    from autopanoptic.nn.latency import LatencyTable

    table = tmp_path / "lat.json"
    res = cli("latency", "build", "--out", str(table), "--warmup", "0", "--repeats", "1", "--calibrate", "0",
              "--image-size", "48", "48", "--no-progress", *TINY)
    assert res.exit_code == 0, res.output
    lat = LatencyTable.load(table)
    run = tmp_path / "r"
    shutil.copytree(run_folder, run, ignore=shutil.ignore_patterns("search", "retrain", "eval", ".lock"))
    budget = sorted(lat.predict(lat_arch) for lat_arch in _candidate_archs(run_folder))[-2]  # excludes the slowest
    extra = ["--set", f"search.latency_table={table}", "--set", f"search.max_latency_ms={budget}",
             "--set", "search.objectives=[fitness, latency, macs]", "--set", "search.policy=random",
             "--set", "search.evaluations=6"]
    res = cli("search", "--out", str(run), "--device", "cpu", "--no-progress", *TINY, *extra)
    assert res.exit_code == 0, res.output
    assert "Pareto front of fitness, latency, macs" in res.output
    front = json.loads((run / "search" / "pareto.json").read_text())
    assert len(front["candidates"]) == 6 and all(c["latency"] <= budget for c in front["candidates"])
    res = cli("retrain", "--out", str(run), "--device", "cpu", "--no-progress", "--pick", "1", *TINY, *extra)
    assert res.exit_code == 0, res.output
    picked = json.loads((run / "retrain" / "arch.json").read_text())["flat"]
    assert picked == front["candidates"][front["front"][0]]["arch"]
    res = cli("retrain", "--out", str(run), "--device", "cpu", "--no-progress", "--pick", "99", *TINY, *extra)
    assert res.exit_code == 2 and "--pick 99" in res.output


def _candidate_archs(run_folder):
    return [c["arch"] for c in json.loads((run_folder / "search" / "candidates.json").read_text())]


def test_a_run_goes_on_with_the_config_it_was_started_with(tmp_path):
    out = tmp_path / "r"
    res = cli("train-supernet", "--out", str(out), "--config", "tiny-truth", "--device", "cpu", "--no-progress",
              *TINY)
    assert res.exit_code == 0, res.output
    assert (out / "base_config.txt").read_text().strip() == "tiny-truth"

    def retrain_plan(*args: str) -> str:
        res = cli("retrain", "--out", str(out), "--dry-run", *TINY, *args)
        assert res.exit_code == 0, res.output
        return next(x for x in res.output.splitlines() if x.startswith("retrain:"))

    assert "fresh init" in retrain_plan()  # tiny-truth's retraining, without --config
    assert "from the supernet weights" in retrain_plan("--config", "tiny")  # an explicit --config wins
    assert "from the supernet weights" in retrain_plan("--set", "retrain.init_from_supernet=true")
    assert "fresh init" in retrain_plan()  # --set is not remembered, nor a one-off --config
    assert (out / "base_config.txt").read_text().strip() == "tiny-truth"
    # a YAML config is remembered by its absolute path, so the run goes on from any folder
    other = tmp_path / "y"
    (tmp_path / "mine.yaml").write_text("preset: tiny-truth\nretrain:\n  steps: 7\n")
    res = cli("train-supernet", "--out", str(other), "--config", str(tmp_path / "mine.yaml"), "--device", "cpu",
              "--no-progress", *TINY)
    assert res.exit_code == 0, res.output
    assert Path((other / "base_config.txt").read_text().strip()) == (tmp_path / "mine.yaml").resolve()
    sets = [a for a in TINY[1::2] if not a.startswith("retrain.steps")]
    res = cli("retrain", "--out", str(other), "--dry-run", *[x for a in sets for x in ("--set", a)])
    assert "retrain: preset tiny, 7 steps" in res.output and "fresh init" in res.output
