"""The searchable backbone: shapes and strides, gradient isolation, extraction, standalone widths."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

from autopanoptic.errors import ArchitectureError, ConfigError
from autopanoptic.nn.backbone import (
    RETRAIN_WIDTHS,
    SEARCH_WIDTHS,
    ShuffleNetBackbone,
    ShuffleNetClassifier,
    ShuffleNetSupernet,
)
from autopanoptic.search.spaces import auto_panoptic
from tests.strategies import archs_of

BLOCKS = (1, 1, 2, 1)
WIDTHS = (8, 16, 24, 32, 48)
SPACE = auto_panoptic(backbone_blocks=BLOCKS).subspace("backbone")


@pytest.fixture(scope="module")
def sup() -> ShuffleNetSupernet:
    torch.manual_seed(0)
    return ShuffleNetSupernet(BLOCKS, WIDTHS)


def test_layer_choices_seam(sup):
    assert len(sup.layer_choices) == 5 and all(len(layer) == 4 for layer in sup.layer_choices)
    assert [type(m).__name__ for m in sup.layer_choices[0]] == ["ShuffleBlock"] * 4
    assert [m.op for m in sup.layer_choices[2]] == list(SPACE.layers[2].ops)
    # no weight sharing: every parameter tensor belongs to exactly one candidate
    ids = [id(p) for layer in sup.layer_choices for m in layer for p in m.parameters()]
    assert len(ids) == len(set(ids))
    assert sup.search_space == SPACE
    assert sup.out_channels == [16, 24, 32, 48]
    assert [layer[0].stride for layer in sup.layer_choices] == [2, 2, 2, 1, 2]


def test_paper_backbone_has_40_layers():
    net = ShuffleNetSupernet()
    assert len(net.layer_choices) == 40 and net.widths == SEARCH_WIDTHS
    assert net.search_space == auto_panoptic().subspace("backbone")


@settings(max_examples=10)
@given(archs_of(SPACE), st.integers(16, 70), st.integers(16, 70))
def test_stage_outputs_have_the_widths_and_strides(sup, arch, h, w):
    feats = sup(torch.randn(2, 3, h, w), arch)
    sizes = [(h, w)]
    for _ in range(5):
        sizes.append((-(-sizes[-1][0] // 2), -(-sizes[-1][1] // 2)))
    assert [tuple(f.shape) for f in feats] == [(2, c, *s) for c, s in zip(WIDTHS[1:], sizes[2:])]


@settings(max_examples=8)
@given(archs_of(SPACE))
def test_only_the_chosen_path_gets_gradients(sup, arch):
    sup.zero_grad(set_to_none=True)
    feats = sup(torch.randn(2, 3, 32, 32), arch)
    sum(f.square().mean() for f in feats).backward()
    assert all(p.grad is not None for p in sup.stem.parameters())
    for layer, c in zip(sup.layer_choices, arch):
        for j, m in enumerate(layer):
            grads = [p.grad for p in m.parameters()]
            if j == c:
                assert all(g is not None for g in grads)
            else:
                assert all(g is None for g in grads)


@settings(max_examples=8)
@given(archs_of(SPACE), st.booleans())
def test_extract_gives_the_same_outputs_and_copies(sup, arch, training):
    x = torch.randn(2, 3, 40, 36)
    sup.train(training)
    with torch.no_grad():
        net = sup.extract(arch)
        assert net.training == training and net.choices == arch
        a, b = sup(x, arch), net(x)
    assert all(torch.allclose(u, v, atol=1e-6) for u, v in zip(a, b))
    own = {id(p) for p in sup.parameters()}
    assert not own & {id(p) for p in net.parameters()}
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in sup.stem.parameters()) + sum(
        p.numel() for layer, c in zip(sup.layer_choices, arch) for p in layer[c].parameters()
    )
    sup.train(True)


def test_extracted_state_dict_loads_into_a_fresh_standalone(sup):
    arch = (3, 2, 1, 0, 1)
    net = sup.extract(arch).eval()
    fresh = ShuffleNetBackbone(arch, BLOCKS, WIDTHS).eval()
    fresh.load_state_dict(net.state_dict())
    x = torch.randn(1, 3, 32, 32)
    assert all(torch.equal(u, v) for u, v in zip(net(x), fresh(x)))


def test_standalone_at_another_width():
    arch = (0, 3, 2, 1, 0)
    net = ShuffleNetBackbone(arch, BLOCKS, (12, 20, 28, 40, 56))
    assert net.ops == ("shuffle3x3", "xception3x3", "shuffle7x7", "shuffle5x5", "shuffle3x3")
    assert [f.shape[1] for f in net(torch.randn(2, 3, 33, 31))] == [20, 28, 40, 56]


def test_paper_imagenet_form_parameter_counts():
    """SPEC.md: uniform shuffle3x3 24.7 M, uniform xception3x3 34.5 M at the 3.8G width."""
    for choice, expected in [(0, 24.7e6), (3, 34.5e6)]:
        net = ShuffleNetClassifier((choice,) * 40, (8, 8, 16, 8), RETRAIN_WIDTHS)
        n = sum(p.numel() for p in net.parameters())
        assert abs(n - expected) < 0.05e6


@pytest.mark.parametrize("bad", [(0,) * 4, (0,) * 6, (0, 0, 4, 0, 0), (0, -1, 0, 0, 0), "abc"])
def test_bad_choices_raise_architecture_error(sup, bad):
    with pytest.raises(ArchitectureError):
        sup(torch.zeros(1, 3, 32, 32), bad)
    with pytest.raises(ArchitectureError):
        ShuffleNetBackbone(bad, BLOCKS, WIDTHS)


@pytest.mark.parametrize(
    "blocks,widths", [((1, 1, 1), WIDTHS), ((1, 0, 1, 1), WIDTHS), (BLOCKS, (8, 16, 16, 32, 48)), (BLOCKS, (8, 15, 24, 32, 48))]
)
def test_bad_shapes_raise_config_error(blocks, widths):
    with pytest.raises(ConfigError):
        ShuffleNetSupernet(blocks, widths)


@pytest.mark.parametrize(
    "module",
    ["autopanoptic.nn.ops.blocks", "autopanoptic.nn.backbone", "autopanoptic.nn.counting", "autopanoptic.nn.bn", "autopanoptic.nn.device",
     "autopanoptic.nn.proxies"],
)
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_choose_device():
    from autopanoptic.nn.device import choose_device, to_device

    assert choose_device("cpu") == torch.device("cpu")
    assert choose_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError):
        choose_device("nonsense")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            choose_device("cuda")
    moved = to_device({"a": [torch.zeros(1), (torch.ones(2), 3)], "b": "x"}, "cpu")
    assert moved["b"] == "x" and moved["a"][1][1] == 3 and torch.equal(moved["a"][1][0], torch.ones(2))
