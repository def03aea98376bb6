"""Two CPU ranks (gloo, launched with ``torchrun``) against one process: training weights, sharded
evaluation (PQ, AP, mIoU, exported files) and searches agree. One launch runs every library-level
distributed check (see dist_worker.py); one more runs the ``evaluate`` command under ``torchrun``."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("dist_worker", HERE / "dist_worker.py")
W = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(W)


# ``--standalone``: torchrun's own rendezvous store binds a free port itself. (Picking a port here
# and handing it over races with the other test worker, which may be handed the same port.)
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


@pytest.fixture(scope="module")
def dist_run(tmp_path_factory):
    """Synthetic data, then one ``torchrun --nproc_per_node 2`` of dist_worker.py; its outputs."""
    from autopanoptic.data import write_synthetic

    root = tmp_path_factory.mktemp("dist")
    data, out = root / "data", root / "out"
    out.mkdir()
    write_synthetic(data, 7, size=48, seed=3)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [*TORCHRUN, str(HERE / "dist_worker.py"), str(data), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return data, out, json.loads((out / "results_dist.json").read_text())


def test_two_ranks_train_the_same_weights_as_one_process_on_the_global_batch(dist_run):
    _, out, res = dist_run
    torch.set_num_threads(1)
    single, single_res = W.run_training(None)
    dist_weights = torch.load(out / "weights_dist.pt")
    assert res["half_steps"] == 2 and res["resumed_from"] == 2  # rank 0's checkpoint, read by both ranks
    init = W.LinNet()  # a different init (seed 99 was used by the resumed ranks): weights really moved
    for name, w in single.state_dict().items():
        torch.testing.assert_close(dist_weights[name], w, rtol=1e-5, atol=1e-6, msg=name)
    assert any(not torch.allclose(single.state_dict()[n], v) for n, v in init.state_dict().items())
    for a, b in zip(res["losses"], single_res.losses):  # the logged loss is the mean over the ranks
        assert a["step"] == b["step"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)


def _same(a, b) -> bool:
    """Equal to the last bit (floats by repr, ``nan`` equal to ``nan``)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_sharded_evaluation_equals_one_process_exactly(dist_run, tmp_path):
    from autopanoptic.engine.evaluate import evaluate

    from autopanoptic.data import PQStats
    from autopanoptic.data import metrics as M

    data, out, res = dist_run
    ds = W.open_data(data)
    oracle = W.NoisyOracle(ds)
    assert res["eval"]["same_on_every_rank"]
    seen, order_matters = [], {"stats": False, "ap": False}
    rank_order = [0, 1, 4, 5, 2, 3, 6]  # batches of 2 dealt to 2 ranks: rank 0's images, then rank 1's
    for arch in ((0, 1), (2, 0)):
        per_image = []
        single = W.eval_record(evaluate(oracle, ds, range(len(ds)), arch=arch, batch_size=2, branch_metrics=True,
                                        on_image=per_image.append))
        dist = res["eval"][f"oracle{arch}"]
        assert dist["stats"] == single["stats"]  # bit for bit
        assert _same(dist["ap"], single["ap"]) and _same(dist["semantic"], single["semantic"])
        seen.append((single["stats"], single["ap"]["bbox"]["AP"], single["ap"]["segm"]["AP"], single["semantic"]["miou"]))
        # The data is such that combining in rank order would give other bits: the checks above can fail.
        stats = PQStats.zeros(ds.categories)
        for i in rank_order:
            stats = stats + per_image[i].stats
        order_matters["stats"] |= stats.to_array().tolist() != single["stats"]
        ap = M.instance_ap(M.APRecords.concat([per_image[i].ap for i in rank_order]), ds.categories.num_things,
                           names=[ds.categories.name(c) for c in ds.categories.thing_ids])
        order_matters["ap"] |= not _same(ap, single["ap"])
    assert order_matters == {"stats": True, "ap": True}
    for values in zip(*seen):  # non-trivial, arch-dependent PQ, box AP, mask AP and mIoU
        assert values[0] != values[1]
    assert all(0 < v < 1 for _, *vs in seen for v in vs)
    net, r = W.tiny_supernet(ds)
    single = evaluate(net, ds, range(5), arch=r.to_full(tuple(0 for _ in r.sub.layers)), batch_size=2,
                      branch_metrics=True)
    dist = res["eval"]["supernet"]
    assert dist["stats"] == single.stats.to_array().tolist()
    assert _same(dist["ap"], single.ap) and _same(dist["semantic"], single.semantic)
    assert dist["n"] == single.n_images == 5


def test_sharded_export_and_drawings_are_the_single_process_files(dist_run, tmp_path):
    from autopanoptic.engine.evaluate import evaluate

    data, out, res = dist_run
    ds = W.open_data(data)
    single = evaluate(W.NoisyOracle(ds), ds, range(len(ds)), **W.ORACLE_EXPORT, branch_metrics=True,
                      export_dir=tmp_path / "export", draw_dir=tmp_path / "draw")
    dist_files, single_files = _files(out / "export_dist"), _files(tmp_path / "export")
    # predictions.json (annotations in image order), ground_truth.json and every PNG, byte for byte
    assert dist_files == single_files
    assert len(single_files) == len(ds) + 2
    annotations = json.loads(single_files["predictions.json"])["annotations"]
    assert [a["image_id"] for a in annotations] == [ds[i]["image_id"] for i in range(len(ds))]
    assert _files(out / "draw_dist") == _files(tmp_path / "draw") and len(single.drawn) == 3
    dist = res["eval"]["oracle(0, 1)"]
    assert dist["predictions_json"] == str(out / "export_dist" / "predictions.json")
    assert dist["drawn"] == [str(out / "draw_dist" / f"prediction_{k}.png") for k in range(3)]


def test_an_unreadable_image_on_one_rank_stops_every_rank_with_its_message(dist_run):
    _, _, res = dist_run
    on_rank0, on_rank1 = res["eval"]["failure"]
    assert on_rank1 == "DataError: image 2: unreadable"
    assert on_rank0 == "DistributedError: evaluation failed on rank 1: DataError: image 2: unreadable"


def test_distributed_search_gives_the_single_process_result_and_one_journal(dist_run, tmp_path):
    data, out, res = dist_run
    ds = W.open_data(data)
    single = W.search_checks(ds, tmp_path, "single")
    assert res["search"] == single
    assert len({f for _, f in single["oracle"][:-2]}) > 1  # fitnesses differ between candidates
    for name in ("oracle", "real"):
        dist_lines = (out / f"journal_{name}_dist.jsonl").read_text().splitlines()
        single_lines = (tmp_path / f"journal_{name}_single.jsonl").read_text().splitlines()
        assert [json.loads(x) for x in dist_lines][1:] == [json.loads(x) for x in single_lines][1:]
        assert len(dist_lines) == len(single_lines) > 1


def test_without_a_process_group_every_helper_is_the_identity(monkeypatch):
    from autopanoptic.engine import distributed

    monkeypatch.delenv("WORLD_SIZE", raising=False)

    w = distributed.world()
    assert (w.rank, w.size, w.active, w.is_main) == (0, 1, False, True)
    assert distributed.shard([5, 6, 7]) == [5, 6, 7]
    assert distributed.all_gather_objects({"a": 1}) == [{"a": 1}]
    assert distributed.gather_objects({"a": 1}) == [{"a": 1}]
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    assert distributed.reduce_mean({"loss": 2.5}) == {"loss": 2.5}
    with distributed.main_first() as again:
        assert again == w
    assert distributed.init_from_env("cpu") == (w, torch.device("cpu"))  # no WORLD_SIZE: nothing to join


# The evaluate command: 6 evaluation images in batches of 4 (rank 0: 4 images, rank 1: 2), all drawn.
EVAL_SETTINGS = [
    "--set", "data.synthetic_images=12", "--set", "data.synthetic_size=48",
    "--set", "data.eval_fraction=0.5", "--set", "data.val_fraction=0.3",
    "--set", "retrain.steps=8", "--set", "retrain.batch_size=1", "--set", "retrain.init_from_supernet=false",
    "--set", "eval.draw=6", "--set", "model.exclude_ops=[dfconv3x3, dfconv5x5]",
]


@pytest.fixture(scope="module")
def retrained_run(tmp_path_factory):
    """A run folder with a retrained network (a fixed architecture, no supernet: faster) and nothing
    evaluated yet."""
    from click.testing import CliRunner

    from autopanoptic.config import load_config
    from autopanoptic.engine import pipeline
    from autopanoptic.engine.runs import RunDir
    from autopanoptic.search import save_arch
    from autopanoptic_cli.main import main

    out = tmp_path_factory.mktemp("evalcli") / "run"
    cfg = load_config("tiny", [x for x in EVAL_SETTINGS if x != "--set"])
    with RunDir(out) as run:
        space = pipeline.build_supernet_space(cfg, pipeline.prepare_data(cfg, run, progress=False))
    arch = tuple(k % min(4, len(layer.ops)) for k, layer in enumerate(space.layers))  # no deformable conv
    save_arch(space, arch, out.parent / "arch.json")
    res = CliRunner().invoke(main, ["retrain", "--out", str(out), "--device", "cpu", "--no-progress",
                                    "--arch", str(out.parent / "arch.json"), *EVAL_SETTINGS], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return out


def test_the_evaluate_command_under_torchrun_writes_the_single_process_files(retrained_run, tmp_path):
    import shutil

    from click.testing import CliRunner

    from autopanoptic_cli.main import main

    single, dist = tmp_path / "single", tmp_path / "dist"
    shutil.copytree(retrained_run, single)
    shutil.copytree(retrained_run, dist)
    res = CliRunner().invoke(main, ["evaluate", "--out", str(single), "--device", "cpu", "--no-progress",
                                    *EVAL_SETTINGS], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    logs = tmp_path / "logs"  # dist_cli.py: `autopanoptic evaluate`, recording each rank's images and writes
    cmd = [*TORCHRUN, str(HERE / "dist_cli.py"), str(logs), "evaluate", "--out", str(dist),
           "--device", "cpu", "--no-progress", *EVAL_SETTINGS]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.count("metrics: ") == 1 and proc.stdout.count("report: ") == 1  # rank 0 alone prints
    rank0, rank1 = (json.loads((logs / f"rank{r}.json").read_text()) for r in (0, 1))
    eval_split = json.loads((dist / "splits.json").read_text())["eval"]
    assert rank0["evaluated"] == eval_split[:4] and rank1["evaluated"] == eval_split[4:]  # batches of 4, dealt
    assert rank1["written"] == []  # rank 1 writes nothing (every project write goes through autopanoptic.io)
    assert str((dist / "eval" / "metrics.json").resolve()) in rank0["written"]

    metrics = [json.loads((run / "eval" / "metrics.json").read_text()) for run in (single, dist)]
    for m in metrics:
        assert m.pop("seconds") > 0
    assert _same(metrics[1], metrics[0])  # PQ, per class, box / mask AP, mIoU: bit for bit
    # a barely trained network (PQ near 0: exact sums of fractional IoUs are checked by the library test
    # above); its predictions, counts and semantic confusion are not empty
    assert metrics[0]["n_images"] == 6 and metrics[0]["All"]["n"] > 0 and metrics[0]["semantic"]["miou"] > 0
    assert set(metrics[0]["box_ap"]) >= {"AP", "per_class"} and set(metrics[0]["mask_ap"]) >= {"AP", "per_class"}
    files = [_files(run) for run in (single, dist)]
    assert files[1].keys() == files[0].keys()  # no file more or less (no lock, no temporary file)
    exported = [k for k in files[0] if k.startswith(("eval/predictions", "eval/ground_truth", "plots/prediction_"))]
    assert len(exported) == 1 + 6 + 1 + 6  # predictions.json, 6 PNGs, ground_truth.json, 6 drawings
    for run, f in zip((single, dist), files):  # the split's own annotations, pointing at each run's data/ folder
        gt = json.loads(f.pop("eval/ground_truth.json"))
        assert gt.pop("png_folder") == str((run / "data" / "panoptic").resolve())
        f["eval/ground_truth.json"] = json.dumps(gt).encode()
    for k in exported:
        assert files[1][k] == files[0][k], k  # byte for byte
    annotations = json.loads(files[0]["eval/predictions.json"])["annotations"]
    splits = json.loads(files[0]["splits.json"])
    assert len(annotations) == len(splits["eval"]) == 6 and sum(len(a["segments_info"]) for a in annotations) > 0
    assert "report.md" in files[1] and "plots/prediction_5.png" in files[1]


_EXITING = """
import atexit, sys
from autopanoptic.engine.distributed import exit_process
atexit.register(lambda: open(sys.argv[1], "w").write("exit functions ran"))
print("buffered line", end="")
exit_process(eval(sys.argv[2]), joined=eval(sys.argv[3]))
print("not reached")
"""


@pytest.mark.parametrize(("code", "joined", "status", "stderr"), [
    ("0", "True", 0, ""), ("3", "True", 3, ""), ("None", "True", 0, ""), ("'bad news'", "True", 1, "bad news"),
    ("3", "False", 3, ""), ("'bad news'", "False", 1, "bad news"),
])
def test_exit_process_keeps_the_exit_status_runs_the_exit_functions_and_flushes(tmp_path, code, joined, status, stderr):
    # With or without the hard exit of a process that joined a group, the process ends as sys.exit(code)
    # would: same status, same message, exit functions run, buffered output kept.
    marker = tmp_path / "marker"
    proc = subprocess.run([sys.executable, "-c", _EXITING, str(marker), code, joined], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, PYTHONUNBUFFERED=""))
    assert proc.returncode == status, proc.stderr
    assert proc.stdout == "buffered line"
    assert proc.stderr.strip() == stderr
    assert marker.read_text() == "exit functions ran"


def test_the_console_script_ends_through_exit_process():
    # `autopanoptic` is `autopanoptic_cli.main:run` (installed by pyproject.toml), which keeps click's status.
    exe = Path(sys.executable).parent / "autopanoptic"
    assert subprocess.run([str(exe), "--version"], capture_output=True, timeout=120).returncode == 0
    bad = subprocess.run([str(exe), "no-such-command"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no-such-command" in bad.stderr


# The demo as it ships (tiny-truth: a NASWOT search, one random control), shrunk: 10 images, 3 steps.
DEMO_SETTINGS = [
    "--set", "data.synthetic_images=10", "--set", "data.synthetic_size=48",
    "--set", "data.eval_fraction=0.3", "--set", "data.val_fraction=0.3",
    "--set", "search.evaluations=4", "--set", "retrain.steps=3", "--set", "retrain.batch_size=1",
    "--set", "eval.draw=1", "--set", "model.exclude_ops=[dfconv3x3, dfconv5x5]",
]


def test_the_demo_under_torchrun_is_the_demo_on_two_workers(tmp_path):
    """`demo` under ``torchrun`` joins its group instead of starting workers, and gives what ``--workers 2``
    gives (the README's command on a 2-core machine): the same choice, the same network retrained by
    rank 0 and control by rank 1, the same evaluation, one report; rank 0 alone prints."""
    exe = Path(sys.executable).parent / "autopanoptic"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = ["--device", "cpu", "--no-progress", *DEMO_SETTINGS]
    spawned, joined = tmp_path / "workers", tmp_path / "torchrun"
    procs = {
        spawned: subprocess.run([str(exe), "demo", "--out", str(spawned), "--workers", "2", *common],
                                capture_output=True, text=True, env=env, timeout=600),
        joined: subprocess.run([*TORCHRUN, str(HERE / "dist_cli.py"), str(tmp_path / "logs"), "demo",
                                "--out", str(joined), *common], capture_output=True, text=True, env=env, timeout=600),
    }
    for out, proc in procs.items():
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        assert proc.stdout.count("Auto-Panoptic demo (tiny space, random search on NASWOT") == 1, proc.stdout
        assert proc.stdout.count("report: ") == 1 and "(2 workers)" in proc.stdout
    rank0, rank1 = (json.loads((tmp_path / "logs" / f"rank{r}.json").read_text()) for r in (0, 1))
    mine = [Path(p) for p in rank1["written"] if Path(p).is_relative_to(joined.resolve())]
    control = (joined / "retrain" / "controls" / "0").resolve()
    # rank 1 writes only the control it trains (its search journal is a temporary file of its own); rank 0
    # writes the run folder's records, each once
    assert mine and all(p.parent == control for p in mine) and {p.name for p in mine} >= {"checkpoint.pt"}
    for name in ("base_config.txt", "config.yaml", "arch.json", "retrain/arch.json", "retrain/controls/0/arch.json"):
        assert str((joined / name).resolve()) in rank0["written"], name
    runs = {}
    for out in procs:
        metrics = json.loads((out / "eval" / "metrics.json").read_text())
        for key in ("seconds", "timings"):
            metrics.pop(key, None)
        for control in metrics.get("controls", []):
            for key in ("seconds", "timings"):
                control.pop(key, None)
        arch = json.loads((out / "arch.json").read_text())
        runs[out] = (arch, metrics)
    assert runs[spawned][0] == runs[joined][0]
    assert len(runs[spawned][1]["controls"]) == 1  # one control, trained beside the chosen network
    assert _same(runs[joined][1], runs[spawned][1])
    for out in procs:
        assert {"train_supernet"}.isdisjoint(json.loads((out / "eval" / "metrics.json").read_text())["timings"])
        assert (out / "report.md").is_file() and not (out / "supernet").exists()


def test_the_demo_under_torchrun_needs_out(monkeypatch, tmp_path):
    """Each rank would name its own runs/demo-<timestamp>: one line asks for --out, before anything is written."""
    from click.testing import CliRunner

    from autopanoptic_cli.main import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    res = CliRunner().invoke(main, ["demo", "--device", "cpu", "--no-progress", *DEMO_SETTINGS])
    assert res.exit_code == 2 and "under torchrun give --out" in res.output
    assert not (tmp_path / "runs").exists()
