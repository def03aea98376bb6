"""The strict-fair training loop on a tiny choice network (CPU, milliseconds per step)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autopanoptic.config import TrainConfig
from autopanoptic.engine.checkpoint import load_checkpoint
from autopanoptic.engine.datasets import batch_indices, flips_for, load_batch
from autopanoptic.engine.restrict import OpRestriction
from autopanoptic.engine.train import TrainingError, fair_cycle_for_step, train
from autopanoptic.errors import CheckpointError, ConfigError
from autopanoptic.search.space import Layer, SearchSpace


class ChoiceNet(torch.nn.Module):
    """A tiny supernet: per layer, choices of conv + BN; a shared 1x1 classifier on top."""

    def __init__(self, n_choices=(2, 3, 2), width=4, classes=3):
        super().__init__()
        self.search_space = SearchSpace(
            [Layer(f"l{i}", tuple(f"k{2 * j + 1}" for j in range(n))) for i, n in enumerate(n_choices)]
        )
        layers, c_in = [], 3
        for n in n_choices:
            layers.append(
                torch.nn.ModuleList(
                    torch.nn.Sequential(torch.nn.Conv2d(c_in, width, 2 * j + 1, padding=j), torch.nn.BatchNorm2d(width))
                    for j in range(n)
                )
            )
            c_in = width
        self.layers = torch.nn.ModuleList(layers)
        self.cls = torch.nn.Conv2d(width, classes, 1)

    def forward(self, images, targets=None, arch=None):
        x = torch.stack(images)
        for layer, c in zip(self.layers, arch):
            x = torch.relu(layer[c](x))
        logits = self.cls(x)
        sem = torch.stack([t["semantic"] for t in targets])
        return {"loss_semantic": torch.nn.functional.cross_entropy(logits, sem)}


def make_dataset(n=6, size=8, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        sem = rng.integers(0, 3, (size, size))
        out.append(
            {
                "image": (rng.random((size, size, 3)) * 255).astype(np.uint8),
                "instances": {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64),
                              "masks": np.zeros((0, size, size), np.uint8)},
                "semantic": sem.astype(np.int64),
            }
        )
    return out


def _cycle(model, restriction=None, seed=0):
    r = restriction or OpRestriction.build(model.search_space)
    return lambda step: fair_cycle_for_step(r.sub, seed, step, r.to_full)


def test_gradient_of_each_parameter_is_the_mean_over_the_passes_that_used_it():
    torch.manual_seed(0)
    model, data = ChoiceNet(), make_dataset()
    cfg = TrainConfig(steps=1, batch_size=2, lr=1.0, momentum=0.0, weight_decay=0.0, schedule="constant", seed=3)
    archs = _cycle(model)(0)
    # Expected: per pass gradients, summed per parameter, divided by the number of passes using it.
    ref = ChoiceNet()
    ref.load_state_dict(model.state_dict())
    ref.train()
    sums = {n: torch.zeros_like(p) for n, p in ref.named_parameters()}
    uses = {n: 0 for n in sums}
    for j, arch in enumerate(archs):
        ref.zero_grad(set_to_none=True)
        idx = batch_indices(range(len(data)), 2, j, seed=3)
        images, targets = load_batch(data, idx, flips=flips_for(j, 2, seed=3))
        sum(ref(images, targets, arch=arch).values()).backward()
        for n, p in ref.named_parameters():
            if p.grad is not None:
                sums[n] += p.grad
                uses[n] += 1
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train(model, data, range(len(data)), cfg, archs_for_step=_cycle(model), progress=False)
    after = dict(model.named_parameters())
    assert set(uses.values()) == {2, 3, 6}  # m = 6: 2-way choices 3 times, 3-way 2 times, head 6
    for n in sums:
        if uses[n] == 0:
            assert torch.equal(after[n], before[n]), n
        else:
            expected = before[n] - sums[n] / uses[n]
            torch.testing.assert_close(after[n].detach(), expected, rtol=1e-5, atol=1e-6, msg=n)


def test_resumed_run_gives_identical_weights(tmp_path):
    cfg = TrainConfig(steps=4, batch_size=2, lr=0.05, warmup_steps=2, checkpoint_every=1, seed=1)
    data = make_dataset()

    def run(folder, stop_after=None, init_seed=0):
        torch.manual_seed(init_seed)
        model = ChoiceNet()
        res = train(model, data, range(len(data)), cfg, archs_for_step=_cycle(model, seed=1),
                    checkpoint_path=folder / "ckpt.pt", losses_path=folder / "losses.json",
                    stop_after=stop_after, progress=False)
        return model, res

    full, res_full = run(tmp_path / "a")
    torch.manual_seed(123)
    torch.rand(7)  # disturb the global generator between the two halves
    _, half = run(tmp_path / "b", stop_after=2)
    assert half.steps == 2
    resumed, res = run(tmp_path / "b", init_seed=99)  # a different init: everything must come from the checkpoint
    assert res.resumed_from == 2 and res.steps == 4
    for (n, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), n
    assert res.losses == res_full.losses
    assert load_checkpoint(tmp_path / "b" / "ckpt.pt")["step"] == 4


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    cfg = TrainConfig(steps=1, batch_size=2, checkpoint_every=1)
    data = make_dataset()
    model = ChoiceNet()
    ckpt = tmp_path / "ckpt.pt"
    train(model, data, range(6), cfg, archs_for_step=_cycle(model), checkpoint_path=ckpt, progress=False)
    blob = ckpt.read_bytes()
    ckpt.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        train(model, data, range(6), cfg, archs_for_step=_cycle(model), checkpoint_path=ckpt, progress=False)


def test_checkpoint_of_another_config_is_refused(tmp_path):
    data = make_dataset()
    model = ChoiceNet()
    ckpt = tmp_path / "ckpt.pt"
    cfg = TrainConfig(steps=1, batch_size=2)
    train(model, data, range(6), cfg, archs_for_step=_cycle(model), checkpoint_path=ckpt,
          fingerprint={"lr": 0.02}, progress=False)
    with pytest.raises(CheckpointError, match="another configuration"):
        train(model, data, range(6), cfg, archs_for_step=_cycle(model), checkpoint_path=ckpt,
              fingerprint={"lr": 0.01}, progress=False)


def test_divergence_is_reported():
    data = make_dataset()
    model = ChoiceNet()
    with torch.no_grad():
        model.cls.weight.fill_(float("nan"))
    with pytest.raises(TrainingError, match="lower the learning rate"):
        train(model, data, range(6), TrainConfig(steps=1), archs_for_step=_cycle(model), progress=False)


@settings(max_examples=15)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=6), st.data())
def test_restricted_cycles_are_strictly_fair_over_the_allowed_ops(counts, data):
    space = SearchSpace([Layer(f"l{i}", tuple(f"op{j}" for j in range(n))) for i, n in enumerate(counts)])
    ops = sorted({op for layer in space.layers for op in layer.ops})
    excluded = data.draw(st.lists(st.sampled_from(ops), unique=True, max_size=len(ops)))
    if any(all(op in excluded for op in layer.ops) for layer in space.layers):
        with pytest.raises(ConfigError):
            OpRestriction.build(space, excluded)
        return
    r = OpRestriction.build(space, excluded)
    cycle = fair_cycle_for_step(r.sub, 5, data.draw(st.integers(0, 100)), r.to_full)
    m = r.sub.cycle_length
    assert len(cycle) == m
    for i, layer in enumerate(space.layers):
        used = [a[i] for a in cycle]
        allowed = [j for j, op in enumerate(layer.ops) if op not in excluded]
        assert sorted(set(used)) == allowed
        assert all(used.count(j) == m // len(allowed) for j in allowed)
        assert r.to_sub(cycle[0]) is not None


def test_a_parameter_used_several_times_in_one_pass_counts_once():
    from autopanoptic.engine.train import UsageCounter

    shared, unused = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    model = torch.nn.ModuleDict({"shared": shared, "unused": unused})
    with UsageCounter(model) as usage:
        for _ in range(3):
            x = torch.ones(1, 3)
            shared(shared(shared(x))).sum().backward()  # like the semantic subnet shared by P2..P5
            usage.end_pass()
    assert usage.counts[id(shared.weight)] == 3 and usage.counts[id(shared.bias)] == 3
    assert id(unused.weight) not in usage.counts


def test_a_pass_too_small_for_batchnorm_is_one_line_saying_what_to_change(tmp_path):
    """One 32-px image reaches the deepest stage as 1 x 1: BatchNorm refuses it in training."""
    from click.testing import CliRunner

    from autopanoptic.nn.supernet import make_config
    from autopanoptic.search import save_arch
    from autopanoptic_cli.main import main

    space = make_config("tiny", 2, 2).search_space()
    arch = save_arch(space, tuple(0 for _ in space.layers), tmp_path / "arch.json")
    res = CliRunner().invoke(main, ["retrain", "--out", str(tmp_path / "r"), "--arch", str(arch), "--no-progress",
                                    "--set", "data.synthetic_images=8", "--set", "data.synthetic_size=32",
                                    "--set", "retrain.batch_size=1", "--set", "retrain.steps=2",
                                    "--set", "retrain.init_from_supernet=false"])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "BatchNorm got one value per channel at step 0" in res.output and "batch_size" in res.output
    assert len(res.output.strip().splitlines()) == 1
