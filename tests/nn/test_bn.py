"""BatchNorm recalibration of one path: exact cumulative statistics, other paths untouched,
momentum restored, eval mode, failure leaves the statistics as they were."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from torch import nn

from autopanoptic.errors import ConfigError
from autopanoptic.nn.backbone import ShuffleNetSupernet
from autopanoptic.nn.bn import recalibrate_bn
from autopanoptic.search.spaces import auto_panoptic
from tests.strategies import archs_of

BLOCKS = (1, 1, 2, 1)
WIDTHS = (8, 16, 24, 32, 48)
SPACE = auto_panoptic(backbone_blocks=BLOCKS).subspace("backbone")


def _scrambled_supernet(seed: int = 0) -> ShuffleNetSupernet:
    """A supernet whose BN statistics are arbitrary (as after training many paths)."""
    g = torch.Generator().manual_seed(seed)
    net = ShuffleNetSupernet(BLOCKS, WIDTHS)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.num_batches_tracked.fill_(17)
            m.momentum = 0.3
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g))
    return net


def _bn_state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items() if "running" in k or "num_batches" in k}


def _bn_inputs(net: ShuffleNetSupernet, batches, arch):
    """Per-BN inputs of every batch, with BN in training mode (batch statistics) and running
    statistics frozen (momentum 0): exactly what the recalibration forwards see."""
    seen: dict[nn.Module, list[torch.Tensor]] = {}
    hooks, momenta = [], {}
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            momenta[m] = m.momentum
            m.momentum = 0.0
            m.train()
            hooks.append(m.register_forward_pre_hook(lambda mod, inp: seen.setdefault(mod, []).append(inp[0].clone())))
    with torch.no_grad():
        for b in batches:
            net(b, arch)
    for h in hooks:
        h.remove()
    for m, mom in momenta.items():
        m.momentum = mom
    net.eval()
    return seen


def _batches(n: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(4, 3, 48, 40, generator=g) * 2 - 0.5 for _ in range(n)]


@settings(max_examples=6)
@given(archs_of(SPACE))
def test_path_statistics_are_the_cumulative_average_and_others_untouched(arch):
    net = _scrambled_supernet()
    before = _bn_state(net)
    batches = _batches(3)
    assert recalibrate_bn(net, arch, batches) is net
    assert not net.training and all(not m.training for m in net.modules())
    tracked = {m: int(m.num_batches_tracked) for m in net.modules() if isinstance(m, nn.BatchNorm2d)}
    inputs = _bn_inputs(net, batches, arch)
    on_path = set(inputs)
    for name, m in net.named_modules():
        if not isinstance(m, nn.BatchNorm2d):
            continue
        assert m.momentum == 0.3
        if m in on_path:
            xs = inputs[m]
            means = torch.stack([x.mean(dim=(0, 2, 3)) for x in xs])
            vars_ = torch.stack([x.transpose(0, 1).flatten(1).var(dim=1, unbiased=True) for x in xs])
            torch.testing.assert_close(m.running_mean, means.mean(0), rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(m.running_var, vars_.mean(0), rtol=1e-4, atol=1e-5)
            # equal batch sizes: the running mean is the exact mean over all calibration data
            exact = torch.cat(xs).mean(dim=(0, 2, 3))
            torch.testing.assert_close(m.running_mean, exact, rtol=1e-4, atol=1e-5)
            assert tracked[m] == 3
        else:
            for k in ("running_mean", "running_var"):
                assert torch.equal(getattr(m, k), before[f"{name}.{k}"])
            assert tracked[m] == 17
    # the active path is the stem plus exactly the chosen candidates
    chosen = {m for layer, c in zip(net.layer_choices, arch) for m in layer[c].modules()}
    assert on_path == {m for m in net.modules() if isinstance(m, nn.BatchNorm2d) and (m in chosen or m in set(net.stem))}


def test_one_batch_gives_the_exact_mean_and_variance():
    net = _scrambled_supernet(2)
    arch = (3, 0, 2, 1, 3)
    batch = _batches(1, seed=5)
    recalibrate_bn(net, arch, batch)
    stem_bn = net.stem[1]
    x = net.stem[0](batch[0])
    torch.testing.assert_close(stem_bn.running_mean, x.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(stem_bn.running_var, x.var(dim=(0, 2, 3), unbiased=True), rtol=1e-4, atol=1e-5)


def test_recalibration_is_idempotent_and_independent_of_old_statistics():
    a, b = _scrambled_supernet(0), _scrambled_supernet(9)
    b.load_state_dict({k: v for k, v in a.state_dict().items() if "running" not in k and "num_batches" not in k}, strict=False)
    arch, batches = (1, 2, 3, 0, 1), _batches(2)
    recalibrate_bn(a, arch, batches)
    recalibrate_bn(b, arch, batches)
    recalibrate_bn(b, arch, batches)
    x = torch.rand(2, 3, 32, 32)
    assert all(torch.allclose(u, v, atol=1e-6) for u, v in zip(a(x, arch), b(x, arch)))


def test_a_failing_forward_restores_the_statistics():
    net = _scrambled_supernet()
    before = _bn_state(net)
    calls = []

    def forward(model, batch, arch):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return model(batch, arch)

    with pytest.raises(RuntimeError, match="boom"):
        recalibrate_bn(net, (0, 0, 0, 0, 0), _batches(3), forward=forward)
    after = _bn_state(net)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(m.momentum == 0.3 for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    assert not net.training


def test_no_batches_is_an_error():
    net = _scrambled_supernet()
    before = _bn_state(net)
    with pytest.raises(ConfigError, match="at least one"):
        recalibrate_bn(net, (0,) * 5, [])
    assert all(torch.equal(before[k], v) for k, v in _bn_state(net).items())


def test_panoptic_supernet_default_forward_uses_the_backbone():
    from autopanoptic.nn import build_supernet

    torch.manual_seed(0)
    net = build_supernet("tiny", 2, 2, stage_blocks=(1, 1, 1, 1))
    arch = net.search_space.sample(3)
    images = [[torch.rand(3, 64, 64), torch.rand(3, 64, 48)] for _ in range(2)]
    recalibrate_bn(net, arch, images)
    assert not net.training
    bb = net.backbone
    assert int(bb.stem[1].num_batches_tracked) == 2
    for layer, c in zip(bb.layer_choices, arch[:4]):
        for j, cand in enumerate(layer):
            counts = {int(m.num_batches_tracked) for m in cand.modules() if isinstance(m, nn.BatchNorm2d)}
            assert counts == ({2} if j == c else {0})
