"""Backbone candidate ops: shapes at stride 1 and 2 (odd sizes too), structure, shuffle, errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from autopanoptic.errors import AutopanopticError, ConfigError
from autopanoptic.nn.ops.blocks import BACKBONE_KERNELS, ShuffleBlock, channel_shuffle, make_backbone_op
from autopanoptic.search.spaces import BACKBONE_OPS

OPS = st.sampled_from(BACKBONE_OPS)


@settings(max_examples=25)
@given(OPS, st.integers(1, 6).map(lambda h: 2 * h), st.integers(1, 13), st.integers(1, 13), st.integers(1, 3))
def test_stride1_keeps_shape_and_passes_half_through(op, c, h, w, n):
    torch.manual_seed(0)
    block = make_backbone_op(op, c, c, 1).eval()
    x = torch.randn(n, c, h, w)
    y = block(x)
    assert y.shape == x.shape
    # after the two-group shuffle, the even channels are the untouched first half of the input
    assert torch.equal(y[:, 0::2], x[:, : c // 2])
    assert (y[:, 1::2] >= 0).all() if op != "xception3x3" else True


@settings(max_examples=25)
@given(OPS, st.integers(1, 8), st.integers(1, 8), st.integers(1, 13), st.integers(1, 13))
def test_stride2_halves_the_size_and_widens(op, cin, extra, h, w):
    cout = cin + extra + (cin + extra) % 2  # even and > cin
    block = make_backbone_op(op, cin, cout, 2).eval()
    y = block(torch.randn(2, cin, h, w))
    assert y.shape == (2, cout, -(-h // 2), -(-w // 2))


@pytest.mark.parametrize("op", BACKBONE_OPS)
@pytest.mark.parametrize("stride", [1, 2])
def test_structure_follows_the_spec(op, stride):
    cin, cout = (8, 16) if stride == 2 else (16, 16)
    block = make_backbone_op(op, cin, cout, stride)
    convs = [m for m in block.branch if isinstance(m, nn.Conv2d)]
    dws = [m for m in convs if m.groups > 1]
    k = BACKBONE_KERNELS[op]
    branch_in = cin if stride == 2 else cout // 2
    branch_out = cout - cin if stride == 2 else cout // 2
    assert convs[0].in_channels == branch_in and convs[-1].out_channels == branch_out
    assert all(m.bias is None for m in block.modules() if isinstance(m, nn.Conv2d))
    # every conv is followed by its own BatchNorm
    seq = list(block.branch)
    for i, m in enumerate(seq):
        if isinstance(m, nn.Conv2d):
            assert isinstance(seq[i + 1], nn.BatchNorm2d) and seq[i + 1].num_features == m.out_channels
    if op == "xception3x3":
        assert len(dws) == 3 and len(convs) == 6 and all(m.kernel_size == (3, 3) for m in dws)
        assert [m.stride for m in dws] == [(stride, stride), (1, 1), (1, 1)]
        assert sum(isinstance(m, nn.ReLU) for m in seq) == 2  # after the first two 1x1 only
    else:
        assert len(dws) == 1 and len(convs) == 3 and dws[0].kernel_size == (k, k)
        assert convs[0].out_channels == cout // 2 and dws[0].stride == (stride, stride)
        assert isinstance(seq[-1], nn.ReLU)
    if stride == 2:
        pconvs = [m for m in block.proj if isinstance(m, nn.Conv2d)]
        assert pconvs[0].kernel_size == (k, k) and pconvs[0].groups == cin and pconvs[0].stride == (2, 2)
        assert pconvs[1].in_channels == pconvs[1].out_channels == cin
    else:
        assert block.proj is None


@pytest.mark.parametrize("op", BACKBONE_OPS)
def test_every_parameter_of_an_op_gets_a_gradient(op):
    block = make_backbone_op(op, 8, 16, 2)
    block(torch.randn(2, 8, 9, 9)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())


@given(st.integers(1, 12).map(lambda c: 2 * c))
def test_channel_shuffle_is_a_permutation_interleaving_the_halves(c):
    x = torch.arange(float(c)).view(1, c, 1, 1)
    y = channel_shuffle(x, 2).flatten()
    assert sorted(y.tolist()) == x.flatten().tolist()
    assert y[0::2].tolist() == list(range(c // 2)) and y[1::2].tolist() == list(range(c // 2, c))


@pytest.mark.parametrize(
    "args",
    [("conv3x3", 8, 8, 1), ("shuffle3x3", 8, 16, 1), ("shuffle3x3", 16, 8, 2), ("shuffle3x3", 8, 15, 2), ("shuffle3x3", 8, 8, 3)],
)
def test_bad_blocks_raise_a_config_error(args):
    with pytest.raises(ConfigError) as e:
        ShuffleBlock(*args)
    assert isinstance(e.value, AutopanopticError) and isinstance(e.value, ValueError) and "\n" not in str(e.value)
