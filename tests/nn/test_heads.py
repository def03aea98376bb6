"""Head candidate ops, the mask head, the semantic subnet/classifier and the semantic loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, strategies as st

from autopanoptic.nn.heads import MaskHead, SearchableStack, SemanticClassifier, SemanticSubnet, semantic_loss
from autopanoptic.nn.ops.heads import DeformConv, ModulatedDeformConv2d, gn_groups, make_head_op
from autopanoptic.search.spaces import HEAD_OPS


@pytest.mark.parametrize("name", HEAD_OPS)
@pytest.mark.parametrize("cin,cout", [(8, 8), (6, 4), (16, 32)])
def test_every_head_op_keeps_the_size_and_maps_channels(name, cin, cout):
    torch.manual_seed(0)
    op = make_head_op(name, cin, cout)
    x = torch.randn(2, cin, 9, 7, requires_grad=True)
    y = op(x)
    assert y.shape == (2, cout, 9, 7)
    assert (y >= 0).all()  # ends with ReLU
    y.sum().backward()
    assert all(p.grad is not None for p in op.parameters())
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", HEAD_OPS)
def test_head_ops_accept_an_empty_batch(name):
    op = make_head_op(name, 8, 8)
    assert op(torch.zeros(0, 8, 14, 14)).shape == (0, 8, 14, 14)


def test_op_kinds_follow_the_names():
    dw = make_head_op("dwconv5x5", 8, 4)
    assert dw.depthwise.groups == 8 and dw.depthwise.kernel_size == (5, 5) and dw.pointwise.kernel_size == (1, 1)
    at = make_head_op("atconv3x3", 8, 4)
    assert at.conv.dilation == (2, 2) and at.conv.groups == 1 and at.conv.padding == (2, 2)
    df = make_head_op("dfconv5x5", 8, 4)
    assert df.offset.out_channels == 3 * 25 and df.conv.weight.shape == (4, 8, 5, 5)
    with pytest.raises(ValueError, match="unknown head op"):
        make_head_op("conv3x3", 8, 8)


@given(st.integers(1, 600))
def test_gn_groups_divides_and_caps(c):
    g = gn_groups(c)
    assert c % g == 0 and 1 <= g <= 32
    assert g == 1 or c // g >= 2


@pytest.mark.parametrize("k", [3, 5])
def test_zero_initialised_deformable_conv_is_a_regular_conv_at_start(k):
    """Offsets 0 and mask sigmoid(0) = 0.5 give half a plain convolution, which GroupNorm undoes."""
    torch.manual_seed(1)
    op = DeformConv(4, 8, k).eval()
    x = torch.randn(1, 4, 10, 10)
    plain = F.conv2d(x, op.conv.weight, padding=k // 2)
    core = op.conv(x, torch.zeros(1, 2 * k * k, 10, 10), torch.full((1, k * k, 10, 10), 0.5))
    torch.testing.assert_close(core, 0.5 * plain, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(op(x), torch.relu(op.norm(plain)), rtol=1e-3, atol=1e-4)


def test_deformable_offsets_are_learnable():
    torch.manual_seed(2)
    op = DeformConv(4, 4, 3)
    op(torch.randn(2, 4, 6, 6)).pow(2).sum().backward()
    assert op.offset.weight.grad.abs().sum() > 0


def test_deformable_count_macs_matches_an_equal_plain_conv():
    m = ModulatedDeformConv2d(6, 10, 5)
    out = torch.zeros(3, 10, 7, 9)
    assert m.count_macs((), out) == 3 * 7 * 9 * 10 * 6 * 25


def test_searchable_stack_runs_only_the_chosen_op():
    torch.manual_seed(3)
    stack = SearchableStack([4, 8, 8], [HEAD_OPS, HEAD_OPS])
    x = torch.randn(1, 4, 6, 6)
    stack(x, (2, 0)).sum().backward()
    used = {id(p) for p in (*stack.layers[0][2].parameters(), *stack.layers[1][0].parameters())}
    for p in stack.parameters():
        assert (p.grad is not None) == (id(p) in used)
    with pytest.raises(ValueError, match="expected 2 choices"):
        stack(x, (0,))


def test_mask_head_uses_active_choices_and_explicit_ones_win():
    torch.manual_seed(4)
    head = MaskHead(8, [HEAD_OPS] * 4)
    x = torch.randn(3, 8, 14, 14)
    with pytest.raises(RuntimeError, match="no active architecture"):
        head(x)
    head.active = (0, 1, 2, 3)
    torch.testing.assert_close(head(x), head(x, (0, 1, 2, 3)))
    assert not torch.allclose(head(x), head(x, (1, 1, 1, 1)))


def test_semantic_subnet_shares_one_set_of_weights_across_levels():
    torch.manual_seed(5)
    sub = SemanticSubnet([8, 4, 4, 4], [HEAD_OPS] * 3)
    feats = [torch.randn(2, 8, 32 // 2**i, 24 // 2**i) for i in range(4)]
    choices = (1, 2, 3)
    outs = sub(feats, choices)
    assert [o.shape for o in outs] == [torch.Size([2, 4, 32, 24])] * 4
    for f, o in zip(feats, outs):
        direct = SearchableStack.forward(sub, f, choices)
        if direct.shape[-2:] != o.shape[-2:]:
            direct = F.interpolate(direct, size=o.shape[-2:], mode="bilinear", align_corners=False)
        torch.testing.assert_close(o, direct)
    # the parameter count does not depend on the number of levels: one stack of 3 layers
    assert len(sub.layers) == 3


def test_semantic_classifier_upsamples_to_the_input_resolution():
    clf = SemanticClassifier(4 * 5, 7)
    assert clf([torch.zeros(2, 5, 8, 6)] * 4).shape == (2, 7, 32, 24)


def test_semantic_loss_is_normalised_by_labelled_pixels():
    torch.manual_seed(6)
    logits = torch.randn(2, 4, 5, 5, requires_grad=True)
    target = torch.randint(0, 4, (2, 5, 5))
    target[0, :2] = 255
    expected = F.cross_entropy(logits, target, ignore_index=255, reduction="sum") / (target != 255).sum()
    torch.testing.assert_close(semantic_loss(logits, target), expected)
    # nothing labelled: zero, but still differentiable
    empty = semantic_loss(logits, torch.full((2, 5, 5), 255))
    assert float(empty.detach()) == 0.0
    empty.backward()
    assert logits.grad is not None


def test_semantic_loss_handles_padded_logits():
    logits = torch.zeros(1, 3, 8, 8)
    logits[:, 1] = 10.0
    target = torch.ones(1, 6, 5, dtype=torch.int64)
    assert float(semantic_loss(logits, target)) < 1e-3
