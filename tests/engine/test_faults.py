"""Faults: SIGKILL at random moments (CLI subprocesses), torn files, a busy run folder, NaN losses.

One uninterrupted reference run (in process) and one run whose supernet training, search and
retraining are each SIGKILLed part-way (after a random number of checkpointed steps / journaled
evaluations) and then resumed: the resumed run must end bit-identical to the reference.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from autopanoptic.engine.checkpoint import load_checkpoint
from autopanoptic.engine.runs import _pid_alive
from autopanoptic_cli.main import main

pytestmark = pytest.mark.slow

SETTINGS = [
    "--set", "data.synthetic_images=10", "--set", "data.synthetic_size=48",
    "--set", "data.eval_fraction=0.3", "--set", "data.val_fraction=0.3",
    "--set", "train.steps=6", "--set", "train.batch_size=1", "--set", "train.checkpoint_every=1",
    "--set", "search.policy=random", "--set", "search.evaluations=30", "--set", "search.calib_batches=1",
    "--set", "search.calib_batch_size=2",
    "--set", "retrain.steps=6", "--set", "retrain.batch_size=1", "--set", "retrain.checkpoint_every=1",
    "--set", "model.exclude_ops=[dfconv3x3, dfconv5x5]",
    "--set", "search.fitness=pq",  # the search reads the supernet (what these faults interrupt)
]
EXE = str(Path(sys.executable).parent / "autopanoptic")
# ``--standalone``: torchrun's own rendezvous store binds a free port itself (no port picked here that
# the other test worker could be handed too).
TORCHRUN = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--no-python", EXE)


def cli(*args: str):
    return CliRunner().invoke(main, [*args], catch_exceptions=False)


def stage(cmd: str, out: Path, *extra: str):
    return cli(cmd, "--out", str(out), "--device", "cpu", "--no-progress", *SETTINGS, *extra)


def _count(path: Path, kind: str) -> int:
    try:
        if kind == "losses":
            return len(json.loads(path.read_text()))
        return max(0, len(path.read_text().splitlines()) - 1)  # journal: minus the header
    except (OSError, ValueError):
        return 0


def _job(pid: int) -> list[int]:
    """``pid`` and every process below it (read from /proc): a ``torchrun`` agent and all its ranks."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
            children.setdefault(ppid, []).append(int(d.name))
    job, todo = [pid], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            job.append(c)
            todo.append(c)
    return job


def kill_part_way(cmd: str, out: Path, progress_file: Path, kind: str, at_least: int, deadline: float = 240,
                  extra: tuple[str, ...] = (), launcher: tuple[str, ...] = (EXE,)) -> int:
    """Start ``autopanoptic cmd`` (with the ``extra`` options; under ``launcher``, e.g. ``TORCHRUN``) in a
    subprocess, SIGKILL it -- the whole job: the launcher and every rank -- as soon as ``progress_file``
    shows ``at_least`` steps / evaluations; return how many it had then. While it runs, a second
    command into the same folder must be refused."""
    proc = subprocess.Popen([*launcher, cmd, "--out", str(out), "--device", "cpu", "--no-progress", *SETTINGS, *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    refused = False
    job = [proc.pid]
    try:
        t0 = time.monotonic()
        while _count(progress_file, kind) < at_least:
            assert proc.poll() is None, f"{cmd} ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() - t0 < deadline
            if not refused and (out / ".lock").exists():
                busy = stage(cmd, out, *extra)
                assert busy.exit_code == 2 and "in use" in busy.output, busy.output
                refused = True
            time.sleep(0.002)
        job = _job(proc.pid)
        for pid in job:
            os.kill(pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    while any(_pid_alive(pid) for pid in job):  # ranks are reparented; wait until none runs any more
        time.sleep(0.01)
    assert refused
    assert (out / ".lock").exists()  # left behind by the killed process: taken over on resume
    return _count(progress_file, kind)


def _weights(path: Path) -> dict:
    return load_checkpoint(path)


def _assert_same_checkpoint(a: Path, b: Path) -> None:
    sa, sb = _weights(a), _weights(b)
    assert sa["step"] == sb["step"]
    assert sa["losses"] == sb["losses"]
    assert sa["model"].keys() == sb["model"].keys()
    for k in sa["model"]:
        assert torch.equal(sa["model"][k], sb["model"][k]), k


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    ref, killed = root / "ref", root / "killed"
    for cmd in ("train-supernet", "search", "retrain"):
        res = stage(cmd, ref)
        assert res.exit_code == 0, (cmd, res.output)
    return ref, killed


def test_sigkilled_stages_resume_to_the_uninterrupted_result(runs):
    ref, out = runs
    rng = random.Random(int(os.environ.get("FAULT_SEED", "6")))
    seen = {}
    for cmd, progress_file, kind, total, unit in (
        ("train-supernet", out / "supernet" / "losses.json", "losses", 6, 1),
        ("search", out / "search" / "journal.jsonl", "journal", 30, 10),  # random search journals per batch of 10
        ("retrain", out / "retrain" / "losses.json", "losses", 6, 1),
    ):
        at_least = rng.randrange(unit, total, unit)
        had = kill_part_way(cmd, out, progress_file, kind, at_least)
        assert at_least <= had < total, (cmd, had)
        seen[cmd] = had
        res = stage(cmd, out)  # resume (takes over the dead process's lock)
        assert res.exit_code == 0, (cmd, res.output)
        if kind == "losses":
            assert f"resumed from {had}" in res.output, res.output
    _assert_same_checkpoint(ref / "supernet" / "checkpoint.pt", out / "supernet" / "checkpoint.pt")
    _assert_same_checkpoint(ref / "retrain" / "checkpoint.pt", out / "retrain" / "checkpoint.pt")
    assert (ref / "search" / "journal.jsonl").read_text() == (out / "search" / "journal.jsonl").read_text()
    assert json.loads((ref / "arch.json").read_text()) == json.loads((out / "arch.json").read_text())
    assert not (out / ".lock").exists()
    assert _logged(out) == _logged(ref)  # the run log: every record once, none lost, same values


def _logged(run: Path) -> list:
    """metrics.jsonl without its timings (wall-clock time, images/s, seconds)."""
    from autopanoptic.engine.logs import read_log

    drop = {"time", "images_per_s", "seconds"}
    return [{k: v for k, v in r.items() if k not in drop} for r in read_log(run / "metrics.jsonl")]


def test_truncated_checkpoint_and_torn_journal_are_reported_and_left_alone(runs, tmp_path):
    ref, _ = runs
    import shutil

    work = tmp_path / "r"
    shutil.copytree(ref, work)
    ckpt = work / "supernet" / "checkpoint.pt"
    blob = ckpt.read_bytes()
    ckpt.write_bytes(blob[: len(blob) // 3])
    before = ckpt.read_bytes()
    res = stage("train-supernet", work)
    assert res.exit_code == 2 and "truncated or corrupt" in res.output, res.output
    assert ckpt.read_bytes() == before
    res = stage("search", work)  # reads the supernet: same clear error
    assert res.exit_code == 2 and "truncated or corrupt" in res.output, res.output
    ckpt.write_bytes(blob)
    journal = work / "search" / "journal.jsonl"
    text = journal.read_text()
    journal.write_text(text[: len(text) - 7])  # a torn last line, as a crash mid-write leaves it
    torn = journal.read_bytes()
    res = stage("search", work)
    assert res.exit_code == 2 and str(journal) in res.output, res.output
    assert journal.read_bytes() == torn


def test_nan_loss_stops_training_with_a_clear_message_and_a_usable_checkpoint(tmp_path):
    out = tmp_path / "nan"
    res = stage("train-supernet", out, "--set", "train.lr=1e12", "--set", "train.warmup_steps=0")
    assert res.exit_code == 2, res.output
    assert "lower the learning rate" in res.output and res.output.count("\n") <= 2
    state = load_checkpoint(out / "supernet" / "checkpoint.pt")
    assert 0 < state["step"] < 6
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (out / ".lock").exists()


def test_search_under_torchrun_resumes_a_journal_and_matches_one_process(runs, tmp_path):
    # torchrun resumes the journal of one process (10 evaluations), is SIGKILLed as a whole job (agent
    # and both ranks) once 20 are journaled, and a second torchrun finishes it: the journal and the
    # architecture are those of one uninterrupted process.
    import shutil

    ref, _ = runs
    work = tmp_path / "r"
    shutil.copytree(ref, work)
    (work / "arch.json").unlink()
    journal = work / "search" / "journal.jsonl"
    journal.write_text("".join(journal.read_text().splitlines(keepends=True)[:11]))  # header + 10 evaluations
    had = kill_part_way("search", work, journal, "journal", 20, launcher=TORCHRUN)
    assert 20 <= had < 30 and not (work / "arch.json").exists()
    _torchrun("search", work)
    assert journal.read_text() == (ref / "search" / "journal.jsonl").read_text()
    assert json.loads((work / "arch.json").read_text()) == json.loads((ref / "arch.json").read_text())
    assert not (work / ".lock").exists()


def test_out_of_memory_stops_training_with_a_clear_message_and_keeps_the_checkpoint(tmp_path):
    import importlib.util

    from autopanoptic.engine.train import TrainingError, train

    spec = importlib.util.spec_from_file_location("dist_worker", Path(__file__).with_name("dist_worker.py"))
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)

    class Greedy(helpers.LinNet):
        """Runs out of memory at its 4th forward pass (as a too large batch would on a GPU)."""

        calls = 0

        def forward(self, *args, **kwargs):
            Greedy.calls += 1
            if Greedy.calls == 4:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
            return super().forward(*args, **kwargs)

    model = Greedy()
    cfg = helpers.TRAIN_CFG
    archs = lambda step: [(0, 1)]  # noqa: E731
    with pytest.raises(TrainingError, match=r"out of memory at step 3 on cpu .*lower batch_size \(4\)"):
        train(model, helpers.train_data(), range(8), cfg, archs_for_step=archs, checkpoint_path=tmp_path / "c.pt",
              progress=False)
    state = load_checkpoint(tmp_path / "c.pt")
    assert state["step"] == 3
    fresh = helpers.LinNet()
    fresh.load_state_dict(state["model"])  # usable
    res = train(fresh, helpers.train_data(), range(8), cfg, archs_for_step=archs, checkpoint_path=tmp_path / "c.pt",
                progress=False)
    assert res.resumed_from == 3 and res.steps == cfg.steps


def _torchrun(cmd: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """``torchrun`` (two CPU ranks) of one stage; it must succeed."""
    args = [*TORCHRUN, cmd, "--out", str(out), "--device", "cpu", "--no-progress", *SETTINGS, *extra]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


TWO_IMAGES = ("--set", "train.batch_size=2")  # the global batch of train-supernet: one image per rank


@pytest.fixture(scope="module")
def torchrun_supernet(tmp_path_factory) -> Path:
    """An uninterrupted ``torchrun`` supernet training (two ranks, one image each)."""
    out = tmp_path_factory.mktemp("dist") / "run"
    proc = _torchrun("train-supernet", out, *TWO_IMAGES)
    assert proc.stdout.count("supernet: 6 steps") == 1  # rank 0 reports (both ranks trained: the step is collective)
    return out


def test_train_supernet_under_torchrun_writes_one_checkpoint_that_one_process_resumes(torchrun_supernet, tmp_path):
    import shutil

    out = tmp_path / "dist"
    shutil.copytree(torchrun_supernet, out)
    state = load_checkpoint(out / "supernet" / "checkpoint.pt")
    assert state["step"] == 6 and len(json.loads((out / "supernet" / "losses.json").read_text())) == 6
    assert [r["step"] for r in _logged(out)] == list(range(6))  # rank 0 alone logged each step
    assert not (out / ".lock").exists()
    assert not [p for p in out.rglob("*.tmp")]  # no half-written file of a second writer
    res = stage("train-supernet", out, *TWO_IMAGES)  # the same run, one process: nothing left to do
    assert res.exit_code == 0 and "resumed from 6" in res.output, res.output


def test_a_sigkilled_torchrun_training_resumes_under_torchrun_to_the_uninterrupted_result(torchrun_supernet, tmp_path):
    # The whole job (the torchrun agent and both ranks) is killed after a random number of checkpointed
    # steps; a second torchrun continues from rank 0's checkpoint and ends bit-identical.
    out = tmp_path / "killed"
    at_least = random.Random(int(os.environ.get("FAULT_SEED", "6"))).randrange(1, 6)
    had = kill_part_way("train-supernet", out, out / "supernet" / "losses.json", "losses", at_least,
                        extra=TWO_IMAGES, launcher=TORCHRUN)
    assert at_least <= had < 6
    proc = _torchrun("train-supernet", out, *TWO_IMAGES)
    resumed = [int(x) for x in re.findall(r"supernet: 6 steps \(resumed from (\d+)\)", proc.stdout)]
    assert len(resumed) == 1 and had <= resumed[0] < 6, proc.stdout  # rank 0 reports (both ranks trained)
    _assert_same_checkpoint(torchrun_supernet / "supernet" / "checkpoint.pt", out / "supernet" / "checkpoint.pt")
    assert (out / "supernet" / "losses.json").read_text() == (torchrun_supernet / "supernet" / "losses.json").read_text()
    assert not (out / ".lock").exists()


def test_retrain_under_torchrun_resumes_a_killed_single_process_and_writes_one_checkpoint(runs, tmp_path):
    # One process retrains part-way (SIGKILLed after 2 checkpointed steps), two ranks finish it,
    # one process then finds nothing left to do.
    import shutil

    ref, _ = runs
    work = tmp_path / "r"
    shutil.copytree(ref, work)
    shutil.rmtree(work / "retrain")
    two_images = ("--set", "retrain.batch_size=2")  # the global batch: one image per rank
    kill_part_way("retrain", work, work / "retrain" / "losses.json", "losses", 2, extra=two_images)
    done = load_checkpoint(work / "retrain" / "checkpoint.pt")["step"]
    assert 2 <= done < 6
    res = _torchrun("retrain", work, *two_images)
    assert res.stdout.count(f"retrain: 6 steps (resumed from {done})") == 1, res.stdout  # rank 0 reports
    state = load_checkpoint(work / "retrain" / "checkpoint.pt")
    assert state["step"] == 6 and len(state["losses"]) == 6
    assert not (work / ".lock").exists()
    assert not [p for p in work.rglob("*.tmp")]  # no half-written file of a second writer
    again = stage("retrain", work, *two_images)
    assert again.exit_code == 0 and "resumed from 6" in again.output, again.output
