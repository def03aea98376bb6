"""Inter-modular attention blocks (SPEC.md section 1)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, strategies as st

from autopanoptic.nn.attention import AttentionLayers, SEAttention, pooled_context
from autopanoptic.search.spaces import INTER_RATIOS


@given(
    cin=st.integers(1, 40),
    cout=st.integers(1, 40),
    ratio=st.sampled_from(INTER_RATIOS),
    n=st.integers(1, 3),
    seed=st.integers(0, 1000),
)
def test_gain_lies_between_one_and_two(cin, cout, ratio, n, seed):
    torch.manual_seed(seed)
    block = SEAttention(cin, cout, ratio)
    assert block.down.out_features == max(1, cout // ratio) == block.up.in_features
    ctx = torch.randn(n, cin) * 5
    a = block.gain(ctx)
    assert a.shape == (n, cout) and (a >= 0).all() and (a <= 1).all()
    x = torch.rand(n, cout, 3, 2)
    y = block(ctx, x)
    torch.testing.assert_close(y, x * (1 + a[:, :, None, None]))


def test_gain_formula():
    torch.manual_seed(0)
    block = SEAttention(6, 8, 4)
    ctx = torch.randn(2, 6)
    expected = 1 - torch.sigmoid(block.up(torch.relu(block.down(ctx))))
    torch.testing.assert_close(block.gain(ctx), expected)


def test_pooled_context_is_the_global_average():
    feats = [torch.arange(8.0).view(1, 2, 2, 2), torch.ones(1, 3, 5, 5)]
    ctx = pooled_context(feats)
    torch.testing.assert_close(ctx, torch.tensor([[1.5, 5.5, 1.0, 1.0, 1.0]]))


def test_attention_layers_one_choice_per_target_and_gradient_isolation():
    torch.manual_seed(1)
    layers = AttentionLayers(10, 6, [INTER_RATIOS] * 4)
    ctx = torch.randn(2, 10)
    targets = [torch.rand(2, 6, 4, 4) for _ in range(4)]
    choices = (0, 2, 1, 1)
    outs = layers(ctx, targets, choices)
    for layer, c, x, y in zip(layers.layers, choices, targets, outs):
        torch.testing.assert_close(y, layer[c](ctx, x))
    sum(o.sum() for o in outs).backward()
    for layer, c in zip(layers.layers, choices):
        for i, cand in enumerate(layer):
            assert all((p.grad is not None) == (i == c) for p in cand.parameters())
    with pytest.raises(ValueError, match="expected 4"):
        layers(ctx, targets[:3], choices[:3])


def test_bottleneck_width_per_ratio_at_paper_width():
    f2b = AttentionLayers(5 * 256, 128, [INTER_RATIOS])
    b2f = AttentionLayers(4 * 128, 256, [INTER_RATIOS])
    assert [c.down.out_features for c in f2b.layers[0]] == [32, 16, 8]
    assert [c.down.out_features for c in b2f.layers[0]] == [64, 32, 16]
    assert f2b.layers[0][0].down.in_features == 1280 and b2f.layers[0][0].down.in_features == 512
