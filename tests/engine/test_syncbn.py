"""parallel: sync -- BatchNorm over the whole batch when every worker holds a slice of it
(engine.syncbn): forward, input and parameter gradients and running statistics of the slices
equal one BatchNorm on the whole batch, for equal and unequal slices."""

from __future__ import annotations

import torch

from autopanoptic.engine import distributed, workers
from autopanoptic.engine.syncbn import synced_batchnorm

SLICES = {"equal": (2, 2), "unequal": (3, 1)}


def _setup():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5, 5) * 2 + 1
    grad = torch.randn(4, 3, 5, 5)
    bn = torch.nn.BatchNorm2d(3, momentum=0.3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 1.5, -1.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    return x, grad, bn


def _one_step(bn, x, grad, passes=2):
    outs = []
    for _ in range(passes):  # two steps: the running statistics of the second build on the first
        leaf = x.detach().clone().requires_grad_(True)
        y = bn(leaf)
        (y * grad).sum().backward()
        outs.append((y.detach(), leaf.grad))
    return outs


def rank_work(kind: str):
    x, grad, bn = _setup()
    w = distributed.world()
    sizes = SLICES[kind]
    start = sum(sizes[: w.rank])
    sl = slice(start, start + sizes[w.rank])
    with synced_batchnorm(bn):
        outs = _one_step(bn, x[sl], grad[sl])
    mine = {"outs": outs, "dw": bn.weight.grad.clone(), "db": bn.bias.grad.clone(),
            "running": (bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked))}
    return distributed.all_gather_objects(mine)


def test_slices_with_synced_batchnorm_are_one_batchnorm_on_the_whole_batch():
    x, grad, ref = _setup()
    want = _one_step(ref, x, grad)
    for kind in SLICES:
        got = workers.launch(2, rank_work, (kind,))
        for step, (y, dx) in enumerate(want):
            torch.testing.assert_close(torch.cat([r["outs"][step][0] for r in got]), y, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(torch.cat([r["outs"][step][1] for r in got]), dx, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(sum(r["dw"] for r in got), ref.weight.grad, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(sum(r["db"] for r in got), ref.bias.grad, rtol=1e-5, atol=1e-5)
        for r in got:
            torch.testing.assert_close(r["running"][0], ref.running_mean, rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(r["running"][1], ref.running_var, rtol=1e-6, atol=1e-6)
            assert r["running"][2] == int(ref.num_batches_tracked) == 2


def test_without_a_process_group_or_in_eval_mode_it_is_plain_batchnorm():
    x, grad, bn = _setup()
    _, _, ref = _setup()
    with synced_batchnorm(bn):
        a = _one_step(bn, x, grad)
        bn.eval()
        e = bn(x)
    b = _one_step(ref, x, grad)
    ref.eval()
    for (ya, da), (yb, db) in zip(a, b):
        assert torch.equal(ya, yb) and torch.equal(da, db)
    assert torch.equal(e, ref(x))
    assert "forward" not in bn.__dict__  # restored after the block


def test_plain_batchnorm_on_slices_is_not_the_whole_batch():
    """The failure synced BatchNorm removes (so the test above is not vacuous)."""
    x, grad, ref = _setup()
    y = ref(x)
    _, _, bn = _setup()
    assert not torch.allclose(torch.cat([bn(x[:2]), bn(x[2:])]), y, atol=1e-3)


def test_retraining_on_two_workers_with_sync_sees_the_batchnorm_statistics_of_one(tmp_path):
    """Through the command: one retraining step of a tiny network on 1 worker and on 2 with ``sync``.
    The backbone's BatchNorm running statistics after the step come from its forward pass only (no
    random sampling before the backbone): ``sync`` gives one worker's. (With ``data`` each worker
    would normalise its one image: the pooled attention context, 1 x 1 per channel, makes BatchNorm
    refuse that outright.)"""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from autopanoptic.engine.checkpoint import load_checkpoint
    from autopanoptic.nn.supernet import make_config
    from autopanoptic.search import save_arch

    exe = Path(sys.executable).parent / "autopanoptic"
    space = make_config("tiny", 2, 2).search_space()
    arch_file = save_arch(space, tuple(0 for _ in space.layers), tmp_path / "arch.json")
    sets = ["--set", "data.synthetic_images=8", "--set", "data.synthetic_size=32", "--set", "retrain.steps=1",
            "--set", "model.exclude_ops=[dfconv3x3, dfconv5x5]", "--set", "retrain.init_from_supernet=false"]
    stats = {}
    for name, n, mode in (("one", 1, "sync"), ("sync", 2, "sync")):
        proc = subprocess.run([str(exe), "retrain", "--arch", str(arch_file), "--device", "cpu", "--no-progress", *sets,
                               "--set", f"retrain.parallel={mode}", "--out", str(tmp_path / name), "--workers", str(n)],
                              capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        state = load_checkpoint(tmp_path / name / "retrain" / "checkpoint.pt")["model"]
        stats[name] = {k: v for k, v in state.items() if k.startswith("backbone") and k.endswith("running_var")}
    assert stats["one"] and stats["one"].keys() == stats["sync"].keys()
    for k, v in stats["one"].items():
        torch.testing.assert_close(stats["sync"][k], v, rtol=1e-4, atol=1e-6, msg=k)
