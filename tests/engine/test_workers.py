"""The local process group (engine/workers.py) and the cycle-parallel strict-fair step
(engine/parallel.py): dealing a cycle's passes to 2 or 4 ranks (uneven shares) is the single-process
step -- weights and BatchNorm statistics within float tolerance, usage counts exactly -- and the
``--workers`` commands write the single process's supernet."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import torch

from autopanoptic.config import TrainConfig
from autopanoptic.engine import distributed, parallel, workers
from autopanoptic.engine.checkpoint import load_checkpoint
from autopanoptic.engine.restrict import OpRestriction
from autopanoptic.engine.train import UsageCounter, fair_cycle_for_step, train

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("dist_worker", HERE / "dist_worker.py")
W = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(W)

CFG = TrainConfig(steps=3, batch_size=4, lr=0.1, momentum=0.9, weight_decay=1e-3, warmup_steps=1, seed=5)
DATA_CFG = attrs.evolve(CFG, batch_size=6)  # data mode on 4 ranks: slices of 2 on 3 ranks, one waits


class BNNet(W.LinNet):
    """LinNet whose every op ends in its own BatchNorm: the BatchNorm layers of an op are used by
    some passes of a cycle and not others (what BatchNormReplay must get right)."""

    def __init__(self):
        super().__init__()
        for layer in self.layers:
            for j in range(len(layer)):
                layer[j] = torch.nn.Sequential(layer[j], torch.nn.BatchNorm2d(layer[j].out_channels))


def _train(cls, parallel_mode="cycle", cfg=CFG):
    torch.manual_seed(0)
    model = cls()
    r = OpRestriction.build(model.search_space, ())
    res = train(model, W.train_data(), range(8), cfg, archs_for_step=lambda s: fair_cycle_for_step(r.sub, CFG.seed, s),
                progress=False, parallel=parallel_mode)
    return model, res


def _step_counts(cls):
    """One step's passes (this rank's share), summed gradients and usage counts, by parameter name."""
    from autopanoptic.engine.datasets import batch_indices, load_batch

    torch.manual_seed(0)
    model = cls()
    r = OpRestriction.build(model.search_space, ())
    archs = fair_cycle_for_step(r.sub, CFG.seed, 0)
    w = distributed.world()
    data = W.train_data()
    with UsageCounter(model) as usage:
        for j in parallel.my_passes(len(archs), w) if w.active else range(len(archs)):
            images, targets = load_batch(data, batch_indices(range(8), 4, j, seed=CFG.seed))
            sum(model(images, targets, arch=archs[j]).values()).backward()
            usage.end_pass()
        if w.active:
            counts = distributed.reduce_gradients(usage.params, usage.counts, torch.device("cpu"))
        else:
            usage.normalise()
            counts = dict(usage.counts)
    names = {id(p): n for n, p in model.named_parameters()}
    return ({names[i]: c for i, c in counts.items()},
            {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})


def rank_work():
    """What every rank computes; rank 0's answer goes back to the test."""
    out = {"world": distributed.world().size}
    for cls in (W.LinNet, BNNet):
        model, res = _train(cls)
        out[cls.__name__] = ({k: v.clone() for k, v in model.state_dict().items()}, res.losses)
    out["counts"], out["grads"] = _step_counts(BNNet)
    model, res = _train(W.LinNet, "data", DATA_CFG)
    out["data"] = ({k: v.clone() for k, v in model.state_dict().items()}, res.losses)
    return out


def fail_on_rank(bad: int):
    if distributed.world().rank == bad:
        raise ValueError(f"image 3 of rank {bad} is unreadable")
    distributed.barrier()  # the healthy rank waits for the failed one: the launcher must end it


@pytest.fixture(scope="module")
def single():
    torch.set_num_threads(1)
    trained = {cls.__name__: _train(cls) for cls in (W.LinNet, BNNet)}
    trained["data"] = _train(W.LinNet, "data", DATA_CFG)
    return trained, _step_counts(BNNet)


@pytest.mark.parametrize("ranks", [2, 4])  # the 6-pass cycle: 3 + 3, and 2 + 2 + 1 + 1 (uneven)
def test_dealing_the_cycle_to_ranks_is_the_single_process_step(single, ranks):
    trained, (counts, grads) = single
    got = workers.launch(ranks, rank_work)
    assert got["world"] == ranks
    assert got["counts"] == counts  # exactly: every pass counted once, wherever it ran
    assert len(set(counts.values())) > 1  # some parameters used by more passes than others
    for name, g in grads.items():
        torch.testing.assert_close(got["grads"][name], g, rtol=1e-5, atol=1e-7, msg=name)
    for cls in ("LinNet", "BNNet", "data"):  # data: every pass sliced over 2 ranks, or 3 of 4
        model, res = trained[cls]
        weights, losses = got[cls]
        assert weights.keys() == model.state_dict().keys()
        for name, v in model.state_dict().items():  # BatchNorm running statistics included
            torch.testing.assert_close(weights[name], v, rtol=1e-5, atol=1e-6, msg=f"{cls}.{name}")
        assert [r["loss"] for r in losses] == pytest.approx([r["loss"] for r in res.losses], rel=1e-6)
    moved = BNNet()  # a fresh init differs from the trained one: the comparison above is not vacuous
    assert any(not torch.allclose(v, trained["BNNet"][0].state_dict()[n]) for n, v in moved.state_dict().items()
               if v.is_floating_point())


def unequal_work(wait: str):
    """Rank 0 works longer than the group's timeout for collectives, then every rank meets."""
    import time

    if distributed.world().rank == 0:
        time.sleep(4)
    (distributed.wait_for_all if wait == "long" else distributed.barrier)()
    return distributed.all_gather_objects(distributed.world().rank)


def test_a_rank_that_finished_early_waits_for_the_others_beyond_the_collective_timeout():
    """What retrain.parallel=single and check-ranking need: on GPUs NCCL's default timeout is 10
    minutes, less than one retraining at paper scale."""
    from datetime import timedelta

    short = timedelta(seconds=1.5)
    assert workers.launch(2, unequal_work, ("long",), timeout=short) == [0, 1]
    with pytest.raises(workers.WorkerError):  # the plain barrier times out: the test can fail
        workers.launch(2, unequal_work, ("plain",), timeout=short)


def test_a_failing_rank_ends_every_worker_with_its_message():
    with pytest.raises(workers.WorkerError, match="image 3 of rank 1 is unreadable"):
        workers.launch(2, fail_on_rank, (1,))


def test_shares_of_a_step():
    w = distributed.World
    assert [parallel.my_passes(6, w(r, 4)) for r in range(4)] == [[0, 4], [1, 5], [2], [3]]
    assert parallel.my_passes(3, w(4, 5)) == []  # more ranks than passes: some wait
    assert [parallel.data_shards(b, 3) for b in (1, 2, 3, 4, 6)] == [1, 2, 3, 2, 3]
    assert parallel.pass_seed(1, 2, 3) != parallel.pass_seed(1, 2, 3, rank=1)


def test_the_supernet_trained_by_two_workers_is_the_single_process_supernet(tmp_path):
    """Through the commands: the tiny supernet (BatchNorm, the RPN's random sampling), one step, and a
    retraining with ``retrain.parallel: single`` (the tiny preset's: rank 0 retrains, the other trains
    the random control of ``retrain.controls: auto``, which one worker trains after the chosen network).
    (Over more supernet steps the two float orders drift apart as any two would: the detector's
    discrete choices -- top-k proposals, NMS, RoI sampling -- turn rounding differences into
    different choices.)"""
    from autopanoptic.config import load_config
    from autopanoptic.nn.supernet import make_config
    from autopanoptic.search import save_arch

    exe = Path(sys.executable).parent / "autopanoptic"
    sets = ["--set", "data.synthetic_images=8", "--set", "data.synthetic_size=32", "--set", "train.steps=1",
            "--set", "model.exclude_ops=[dfconv3x3, dfconv5x5]", "--set", "retrain.steps=2",
            "--set", "retrain.init_from_supernet=false"]
    assert load_config("tiny").retrain.parallel == "single"
    space = make_config("tiny", 2, 2).search_space()
    arch_file = save_arch(space, tuple(0 for _ in space.layers), tmp_path / "arch.json")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    states, retrained = {}, {}
    for n in (1, 2):
        for stage in (["train-supernet"], ["retrain", "--arch", str(arch_file)]):
            one = ["--set", "retrain.controls=1"] if n == 1 else []  # two workers: `auto` gives one
            proc = subprocess.run([str(exe), *stage, "--device", "cpu", "--no-progress", *sets, *one,
                                   "--out", str(tmp_path / f"w{n}"), "--workers", str(n)],
                                  capture_output=True, text=True, env=env, timeout=300)
            assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
            assert proc.stdout.count("supernet: 1 steps" if stage[0] == "train-supernet" else "retrain: 2 steps") == 1
        states[n] = load_checkpoint(tmp_path / f"w{n}" / "supernet" / "checkpoint.pt")
        retrained[n] = load_checkpoint(tmp_path / f"w{n}" / "retrain" / "checkpoint.pt")
        retrained[n, "control"] = load_checkpoint(tmp_path / f"w{n}" / "retrain" / "controls" / "0" / "checkpoint.pt")
    for one, two in zip(states[1]["losses"], states[2]["losses"], strict=True):
        assert one == pytest.approx(two, rel=1e-5)
    for name, v in states[1]["model"].items():
        torch.testing.assert_close(states[2]["model"][name], v, rtol=1e-4, atol=1e-5, msg=name)
    for key in ((1, 2), ((1, "control"), (2, "control"))):  # each network trained by one worker: the same run
        one, two = (retrained[k] for k in key)
        assert one["losses"] == two["losses"] and one["step"] == 2
        for name, v in one["model"].items():
            assert torch.equal(two["model"][name], v), name
    assert retrained[1]["losses"] != retrained[1, "control"]["losses"]  # the control is another network


def test_the_default_workers_stop_at_what_supernet_training_keeps_busy(monkeypatch):
    from autopanoptic.config import load_config
    from autopanoptic.engine import workers as W
    from autopanoptic.engine.restrict import OpRestriction
    from autopanoptic.nn.supernet import make_config
    from autopanoptic_cli.pipeline import workers_for

    cfg = load_config("tiny-truth")
    cycle = OpRestriction.build(make_config("tiny", 7, 5).search_space(), cfg.model.exclude_ops).sub.cycle_length
    assert W.useful_workers(cfg) == cycle > 2
    monkeypatch.setattr(W, "usable_cpus", lambda: 64)  # a big CPU server: no 52 idle ranks, no 63 controls
    assert workers_for(0, "cpu", cfg) == cycle
    assert workers_for(20, "cpu", cfg) == 20  # asked for: given
    assert workers_for(0, "cpu", busy=3) == 3  # pretraining: what one step keeps busy
    assert workers_for(0, "cpu", busy=0) == 1
    assert workers_for(0, "cpu") == 64
    assert workers_for(0, "cpu", load_config("tiny-truth", ["train.parallel=data"])) == cfg.train.batch_size
    monkeypatch.setattr(W, "usable_cpus", lambda: 2)
    assert workers_for(0, "cpu", cfg) == 2
