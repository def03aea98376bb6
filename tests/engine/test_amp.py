"""Mixed precision (engine/amp.py) on CPU: bf16 autocast in training and evaluation, the fp16
gradient scaler checkpointed with the run, and the loss / gradient checks under AMP."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import attrs
import pytest
import torch

from autopanoptic.config import TrainConfig
from autopanoptic.engine.checkpoint import load_checkpoint
from autopanoptic.engine.train import MAX_SKIPPED, TrainingError, train

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("train_helpers", HERE / "test_train.py")
T = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(T)

CFG = TrainConfig(steps=12, batch_size=2, lr=0.1, warmup_steps=1, checkpoint_every=2, seed=1, amp="bf16")


class DtypeSpy:
    """Records the dtype of the first conv's output (what autocast made of it)."""

    def __init__(self, module):
        self.seen: set[torch.dtype] = set()
        module.register_forward_hook(lambda m, a, out: self.seen.add(out.dtype))


def _run(cfg, folder=None, stop_after=None, model_cls=None):
    torch.manual_seed(0)
    model = (model_cls or T.ChoiceNet)()
    res = train(model, T.make_dataset(), range(6), cfg, archs_for_step=lambda s: T._cycle(model, seed=cfg.seed)(s),
                checkpoint_path=None if folder is None else folder / "c.pt", stop_after=stop_after, progress=False)
    return model, res


def learnable_dataset():
    """Every pixel of class 0 except a few random ones: learnable in a few steps."""
    data = T.make_dataset()
    for d in data:
        d["semantic"] = d["semantic"] * (d["semantic"] * d["image"][..., 0] > 400)
    return data


def test_bf16_training_runs_in_bf16_and_the_loss_goes_down_as_in_fp32():
    losses = {}
    for mode in ("off", "bf16"):
        torch.manual_seed(0)
        model = T.ChoiceNet()
        spy = DtypeSpy(model.layers[0][0][0])
        res = train(model, learnable_dataset(), range(6), attrs.evolve(CFG, amp=mode),
                    archs_for_step=T._cycle(model, seed=1), progress=False)
        assert spy.seen == {torch.bfloat16 if mode == "bf16" else torch.float32}
        assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32
        losses[mode] = [r["loss"] for r in res.losses]
    first, last = losses["bf16"][0], sum(losses["bf16"][-3:]) / 3
    assert last < 0.8 * first
    assert losses["bf16"] == pytest.approx(losses["off"], abs=0.05)


@pytest.mark.parametrize("mode", ["bf16", "fp16"])
def test_a_resumed_amp_run_is_the_uninterrupted_run(tmp_path, mode):
    cfg = attrs.evolve(CFG, amp=mode, steps=6)
    whole, _ = _run(cfg)
    (tmp_path / "a").mkdir()
    _run(cfg, tmp_path / "a", stop_after=3)
    state = load_checkpoint(tmp_path / "a" / "c.pt")
    assert (state["scaler"] is not None) == (mode == "fp16")
    if mode == "fp16":
        assert state["scaler"]["scale"] > 0
    resumed, res = _run(cfg, tmp_path / "a")
    assert res.resumed_from == 3
    for name, v in whole.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], v), name


class Exploding(T.ChoiceNet):
    """A loss so large that its fp16 gradients overflow at any loss scale."""

    def forward(self, images, targets=None, arch=None):
        return {"loss": 1e30 * super().forward(images, targets, arch)["loss_semantic"]}


def test_fp16_overflow_at_every_step_is_a_clear_error():
    cfg = attrs.evolve(CFG, amp="fp16", steps=MAX_SKIPPED + 5)
    with pytest.raises(TrainingError, match=f"fp16 gradients overflowed at {MAX_SKIPPED} consecutive steps"):
        _run(cfg, model_cls=Exploding)


class InfGrad(T.ChoiceNet):
    """A finite loss whose gradient is infinite (sqrt at 0)."""

    def forward(self, images, targets=None, arch=None):
        out = super().forward(images, targets, arch)
        return {"loss": out["loss_semantic"] + torch.sqrt(self.cls.weight.sum() * 0)}


class NanLoss(T.ChoiceNet):
    def forward(self, images, targets=None, arch=None):
        return {"loss": super().forward(images, targets, arch)["loss_semantic"] * float("nan")}


def test_bf16_non_finite_loss_and_gradient_are_clear_errors():
    with pytest.raises(TrainingError, match="a gradient became non-finite at step 0 under mixed precision"):
        _run(CFG, model_cls=InfGrad)
    with pytest.raises(TrainingError, match="the loss became"):
        _run(CFG, model_cls=NanLoss)


def test_the_panoptic_network_trains_and_evaluates_under_bf16(tmp_path):
    """The tiny supernet: one bf16 step (detector losses, RoIAlign on bf16 features) and a bf16
    evaluation whose post-processing runs in fp32."""
    from autopanoptic.data import PanopticDataset, write_synthetic
    from autopanoptic.engine.evaluate import evaluate
    from autopanoptic.engine.restrict import OpRestriction
    from autopanoptic.engine.train import fair_cycle_for_step
    from autopanoptic.nn import build_supernet

    write_synthetic(tmp_path, 4, size=32, seed=0)
    ds = PanopticDataset(tmp_path / "images", tmp_path / "panoptic.json", tmp_path / "panoptic")
    torch.manual_seed(0)
    net = build_supernet("tiny", ds.categories.num_things, ds.categories.num_stuff)
    r = OpRestriction.build(net.search_space, ("dfconv3x3", "dfconv5x5"))
    spy = DtypeSpy(net.backbone.stem[0])
    res = train(net, ds, range(4), attrs.evolve(CFG, steps=1), progress=False,
                archs_for_step=lambda s: fair_cycle_for_step(r.sub, 0, s, r.to_full)[:2])
    assert spy.seen == {torch.bfloat16} and all(torch.isfinite(torch.tensor(v)) for v in res.losses[0].values())
    arch = fair_cycle_for_step(r.sub, 0, 0, r.to_full)[0]
    spy.seen.clear()
    half = evaluate(net, ds, range(4), arch=arch, amp="bf16", branch_metrics=True)
    assert spy.seen == {torch.bfloat16}
    full = evaluate(net, ds, range(4), arch=arch)
    assert half.n_images == full.n_images == 4
    assert 0.0 <= half.summary()["All"]["pq"] <= 1.0
