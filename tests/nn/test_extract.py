"""Standalone networks: extraction equivalence, only the chosen ops, JSON round trip, other widths."""

from __future__ import annotations

import pytest
import torch

from autopanoptic.nn.standalone import PanopticNetwork, build_network, extract
from autopanoptic.nn.supernet import build_supernet
from autopanoptic.search import load_arch, save_arch
from autopanoptic.search.spaces import HEAD_OPS, INTER_RATIOS, auto_panoptic
from panoptic_batches import NUM_STUFF, NUM_THINGS, make_batch

TINY_SPACE = auto_panoptic((1, 1, 2, 1))


@pytest.fixture(scope="module")
def trained_tiny():
    """A tiny supernet with non-trivial weights and BatchNorm statistics."""
    torch.manual_seed(0)
    net = build_supernet("tiny", NUM_THINGS, NUM_STUFF)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for name, buf in net.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
    return net.eval()


def _archs():
    """Architectures covering every head op and every ratio, plus random backbones."""
    rng_archs = []
    for i in range(len(HEAD_OPS)):
        arch = list(TINY_SPACE.sample(i))
        for j in range(5, 12):
            arch[j] = (i + j) % len(HEAD_OPS)
        for j in range(12, 21):
            arch[j] = (i + j) % len(INTER_RATIOS)
        rng_archs.append(tuple(arch))
    return rng_archs


def _assert_same_raw(a, b):
    torch.testing.assert_close(a["semantic_logits"], b["semantic_logits"], rtol=1e-5, atol=1e-5)
    for da, db in zip(a["detections"], b["detections"]):
        assert set(da) == set(db)
        for k in da:
            torch.testing.assert_close(da[k], db[k], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", _archs(), ids=lambda a: "".join(map(str, a)))
def test_extracted_network_gives_the_supernets_outputs(trained_tiny, arch):
    net = extract(trained_tiny, arch)
    assert not net.training
    images, _ = make_batch(7)
    with torch.no_grad():
        _assert_same_raw(net.raw_outputs(images), trained_tiny.raw_outputs(images, arch))
        for p, q in zip(net(images), trained_tiny(images, arch=arch)):
            assert torch.equal(p["panoptic"], q["panoptic"])
            assert p["segments"] == q["segments"]


def test_extracted_network_holds_only_the_chosen_ops(trained_tiny):
    arch = _archs()[2]
    net = extract(trained_tiny, arch)
    total = sum(p.numel() for p in trained_tiny.parameters())
    unused = sum(
        p.numel()
        for layer, c in zip(trained_tiny.layer_choices, arch)
        for i, cand in enumerate(layer)
        if i != c
        for p in cand.parameters()
    )
    assert sum(p.numel() for p in net.parameters()) == total - unused
    for layer, c in zip(net.head_layer_choices[:7], arch[5:12]):
        assert len(layer) == 1
        name = HEAD_OPS[c]
        expected = {"dw": "DepthwiseSeparableConv", "at": "AtrousConv", "df": "DeformConv"}[name[:2]]
        assert type(layer[0]).__name__ == expected
    for layer, c in zip(net.head_layer_choices[7:], arch[12:]):
        assert len(layer) == 1 and layer[0].ratio == INTER_RATIOS[c]


def test_extracted_weights_are_copies(trained_tiny):
    arch = _archs()[0]
    net = extract(trained_tiny, arch)
    theirs = {p.data_ptr() for p in trained_tiny.parameters()}
    assert all(p.data_ptr() not in theirs for p in net.parameters())
    before = [p.clone() for p in trained_tiny.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    assert all(torch.equal(a, b) for a, b in zip(before, trained_tiny.parameters()))


def test_architecture_json_loads_back_into_the_same_network(trained_tiny, tmp_path):
    arch = _archs()[4]
    path = save_arch(trained_tiny.search_space, arch, tmp_path / "arch.json", fitness=0.5)
    loaded = load_arch(trained_tiny.search_space, path)
    assert loaded == arch
    a, b = extract(trained_tiny, arch), extract(trained_tiny, loaded)
    images, _ = make_batch(8)
    with torch.no_grad():
        _assert_same_raw(a.raw_outputs(images), b.raw_outputs(images))


def test_standalone_trains_and_every_parameter_gets_a_gradient(trained_tiny):
    net = extract(trained_tiny, _archs()[1]).train()
    images, targets = make_batch(9, empty_second=False)
    losses = net(images, targets)
    sum(losses.values()).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert missing == []


def test_standalone_at_another_width_for_retraining():
    arch = _archs()[3]
    wide = build_network("tiny", arch, NUM_THINGS, NUM_STUFF, widths=(24, 48, 96, 192, 384), fpn_channels=48)
    assert isinstance(wide, PanopticNetwork) and wide.arch == arch
    assert wide.config.widths == (24, 48, 96, 192, 384)
    assert wide.fpn.inner_blocks[-1][0].in_channels == 384
    narrow = build_network("tiny", arch, NUM_THINGS, NUM_STUFF)
    assert sum(p.numel() for p in wide.parameters()) > sum(p.numel() for p in narrow.parameters())
    images, targets = make_batch(10)
    losses = wide.train()(images, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    with pytest.raises(ValueError, match="num_thing_classes"):
        build_network("tiny", arch)
