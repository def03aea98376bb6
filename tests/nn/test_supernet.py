"""The panoptic supernet: presets, search space alignment, losses, predictions, gradient isolation."""

from __future__ import annotations

import math

import attrs
import pytest
import torch
from hypothesis import given, settings, strategies as st

from autopanoptic.errors import ArchitectureError, ConfigError
from autopanoptic.nn.supernet import (
    PRESETS,
    SupernetConfig,
    build_supernet,
    load_config,
    make_config,
    save_config,
)
from autopanoptic.search.spaces import auto_panoptic
from panoptic_batches import NUM_STUFF, NUM_THINGS, make_batch
from strategies import archs_of

TINY_SPACE = auto_panoptic((1, 1, 2, 1))
INSTANCE_LOSSES = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask"}


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_supernet("tiny", NUM_THINGS, NUM_STUFF)


def test_tiny_space_and_layer_choices_are_aligned(tiny):
    assert tiny.search_space == TINY_SPACE
    assert len(tiny.layer_choices) == len(TINY_SPACE)
    assert [len(c) for c in tiny.layer_choices] == list(TINY_SPACE.n_choices)
    # every candidate module appears once, and all candidates are distinct modules
    ids = [id(m) for layer in tiny.layer_choices for m in layer]
    assert len(ids) == len(set(ids))


def test_paper_presets_have_the_papers_space():
    for name, widths in (("paper-search", (48, 96, 240, 480, 960)), ("paper-retrain", (72, 172, 432, 864, 1728))):
        cfg = make_config(name, 80, 53)
        assert cfg.widths == widths and cfg.stage_blocks == (8, 8, 16, 8)
        assert cfg.search_space() == auto_panoptic()
        assert (cfg.fpn_channels, cfg.semantic_channels, cfg.box_head_dim) == (256, 128, 1024)


def test_paper_search_supernet_layer_choices():
    net = build_supernet("paper-search", 80, 53)
    assert net.search_space == auto_panoptic()
    assert len(net.layer_choices) == 56
    assert [len(c) for c in net.layer_choices] == list(auto_panoptic().n_choices)
    f2b, b2f = net.f2b.layers[0][0], net.b2f.layers[0][0]
    assert (f2b.in_channels, f2b.out_channels) == (5 * 256, 128)
    assert (b2f.in_channels, b2f.out_channels) == (4 * 128, 256)
    assert net.semantic_classifier.conv.out_channels == 54


@settings(max_examples=20, deadline=None)
@given(
    preset=st.sampled_from(sorted(PRESETS)),
    things=st.integers(1, 200),
    stuff=st.integers(1, 200),
    fpn=st.integers(1, 512),
    blocks=st.tuples(*[st.integers(1, 20)] * 4),
    weight=st.floats(0, 10, allow_nan=False),
    suffix=st.sampled_from([".yaml", ".yml", ".json"]),
)
def test_config_files_round_trip(tmp_path_factory, preset, things, stuff, fpn, blocks, weight, suffix):
    cfg = make_config(preset, things, stuff, fpn_channels=fpn, stage_blocks=blocks, semantic_loss_weight=weight)
    path = save_config(cfg, tmp_path_factory.mktemp("cfg") / f"config{suffix}")
    back = load_config(path)
    assert back == cfg and SupernetConfig.from_dict(cfg.to_dict()) == cfg
    assert back.search_space() == auto_panoptic(blocks)


def test_config_round_trips_and_rejects_bad_values(tmp_path):
    cfg = make_config("tiny", 4, 5, fpn_channels=24)
    for name in ("c.yaml", "c.json"):
        save_config(cfg, tmp_path / name)
        assert load_config(tmp_path / name) == cfg
    with pytest.raises(ConfigError, match="unknown supernet preset"):
        make_config("huge", 1, 1)
    with pytest.raises(ConfigError, match="unknown field"):
        build_supernet("tiny", 1, 1, fpn_chanels=3)
    with pytest.raises(ConfigError, match="widths"):
        make_config("tiny", 1, 1, widths=(16, 32, 64, 128))
    (tmp_path / "bad.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(tmp_path / "bad.yaml")
    assert set(PRESETS) >= {"tiny", "paper-search", "paper-retrain"}


def test_training_returns_weighted_losses_with_an_empty_image(tiny):
    arch = TINY_SPACE.sample(1)
    images, targets = make_batch(0)
    tiny.train()
    torch.manual_seed(0)
    losses = tiny(images, targets, arch=arch)
    assert set(losses) == INSTANCE_LOSSES | {"loss_semantic"}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    # the semantic loss carries its weight 0.3: recompute it at weight 1 from the same path
    tiny.config = attrs.evolve(tiny.config, semantic_loss_weight=1.0)
    try:
        torch.manual_seed(0)
        unweighted = tiny(images, targets, arch=arch)["loss_semantic"]
    finally:
        tiny.config = attrs.evolve(tiny.config, semantic_loss_weight=0.3)
    torch.testing.assert_close(losses["loss_semantic"], 0.3 * unweighted)


def test_all_images_without_instances(tiny):
    images, targets = make_batch(3)
    targets[0] = {**targets[1], "semantic": targets[0]["semantic"]}
    targets[0]["masks"] = torch.zeros(0, 64, 64, dtype=torch.uint8)
    tiny.train()
    losses = tiny(images, targets, arch=TINY_SPACE.sample(2))
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    tiny.zero_grad(set_to_none=True)


def test_eval_predictions_at_the_original_size(tiny):
    tiny.eval()
    images, _ = make_batch(1)
    with torch.no_grad():
        out = tiny(images, arch=TINY_SPACE.sample(3))
    assert len(out) == 2
    for img, pred in zip(images, out):
        h, w = img.shape[1:]
        assert pred["panoptic"].shape == (h, w) and pred["panoptic"].dtype == torch.int32
        assert pred["semantic"].shape == (h, w)
        ids = {s["id"] for s in pred["segments"]}
        assert set(torch.unique(pred["panoptic"]).tolist()) - {0} == ids
        for s in pred["segments"]:
            assert set(s) == {"id", "label", "isthing", "score"}
            assert 0 <= s["label"] < (NUM_THINGS if s["isthing"] else NUM_STUFF)


def test_bad_calls_give_clear_errors(tiny):
    images, targets = make_batch(0)
    tiny.eval()
    with pytest.raises(ArchitectureError, match="needs arch"):
        tiny(images)
    with pytest.raises(ArchitectureError, match="has 21 layers"):
        tiny(images, arch=(0,) * 20)
    with pytest.raises(ArchitectureError, match="got index 6"):
        tiny(images, arch=(0,) * 5 + (6,) + (0,) * 15)
    with pytest.raises(ValueError, match="3 x H x W"):
        tiny([torch.zeros(1, 8, 8)], arch=(0,) * 21)
    tiny.train()
    with pytest.raises(ValueError, match="needs targets"):
        tiny(images, arch=(0,) * 21)
    with pytest.raises(ValueError, match="lacks"):
        tiny(images, [{"boxes": t["boxes"]} for t in targets], arch=(0,) * 21)


def _param_owner_sets(net, arch):
    """(active, inactive) parameter ids for the path ``arch``: the chosen candidates (and all shared
    parameters) versus the other candidates."""
    searchable = set()
    chosen = set()
    for layer, c in zip(net.layer_choices, arch):
        for i, cand in enumerate(layer):
            ids = {id(p) for p in cand.parameters()}
            searchable |= ids
            if i == c:
                chosen |= ids
    return searchable, chosen


@settings(max_examples=6, deadline=None)
@given(arch=archs_of(TINY_SPACE))
def test_only_the_path_gets_gradients(tiny, arch):
    tiny.train()
    tiny.zero_grad(set_to_none=True)
    images, targets = make_batch(2, size=(64, 64), empty_second=False)
    losses = tiny(images, targets, arch=arch)
    sum(losses.values()).backward()
    searchable, chosen = _param_owner_sets(tiny, arch)
    for name, p in tiny.named_parameters():
        if id(p) in searchable and id(p) not in chosen:
            assert p.grad is None, f"{name} is off the path but got a gradient"
        else:
            assert p.grad is not None, f"{name} is on the path (or shared) but got no gradient"
    tiny.zero_grad(set_to_none=True)


def test_one_training_step_lowers_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    net = build_supernet("tiny", NUM_THINGS, NUM_STUFF).train()
    arch = TINY_SPACE.sample(4)
    images, targets = make_batch(5, empty_second=False)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.0)

    def loss():
        torch.manual_seed(123)  # the same proposal sampling for both evaluations
        return sum(net(images, targets, arch=arch).values())

    before = loss()
    before.backward()
    opt.step()
    opt.zero_grad()
    with torch.no_grad():
        after = loss()
    assert math.isfinite(float(after)) and float(after) < float(before.detach())


def _direct_macs(net, image_size):
    """An independent MAC count: hooks on every Conv2d / Linear / ConvTranspose2d / count_macs op of
    ``net`` during its ``cost_forward``."""
    from autopanoptic.nn.ops.heads import ModulatedDeformConv2d

    total = [0]

    def hook(m, inputs, out):
        if isinstance(m, torch.nn.ConvTranspose2d):
            total[0] += inputs[0].numel() * m.out_channels * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, torch.nn.Conv2d):
            total[0] += out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, torch.nn.Linear):
            total[0] += out.numel() * m.in_features
        elif isinstance(m, ModulatedDeformConv2d):
            total[0] += out.numel() * m.in_channels * m.kernel_size**2

    handles = [m.register_forward_hook(hook) for m in net.modules()]
    try:
        net.cost_forward(None, image_size)
    finally:
        for h in handles:
            h.remove()
    return total[0]


@settings(max_examples=4, deadline=None)
@given(arch=archs_of(TINY_SPACE))
def test_counts_agree_with_direct_counts_on_the_extracted_network(tiny, arch):
    from autopanoptic.nn import count, extract

    params, macs = count(tiny, arch, 128)
    net = extract(tiny, arch)
    assert params == sum(p.numel() for p in net.parameters())
    assert macs == _direct_macs(net, 128)
    assert count(net, arch, 128) == (params, macs)
    assert count("tiny", arch, 128, num_thing_classes=NUM_THINGS, num_stuff_classes=NUM_STUFF) == (params, macs)


def test_counts_grow_with_the_image_and_the_ops():
    from autopanoptic.nn import count

    small = (0,) * 21
    big = (3,) * 5 + (3,) * 7 + (0,) * 9  # xception backbone, atconv5x5 heads
    assert count("tiny", small, 256, num_thing_classes=2, num_stuff_classes=3)[1] > count(
        "tiny", small, 128, num_thing_classes=2, num_stuff_classes=3
    )[1]
    p_small, m_small = count("tiny", small, 128, num_thing_classes=2, num_stuff_classes=3)
    p_big, m_big = count("tiny", big, 128, num_thing_classes=2, num_stuff_classes=3)
    assert p_big > p_small and m_big > m_small


def test_bn_recalibration_of_a_path_matches_the_extracted_network():
    from autopanoptic.nn import extract, recalibrate_bn
    from torch.nn.modules.batchnorm import _BatchNorm

    torch.manual_seed(0)
    sup = build_supernet("tiny", NUM_THINGS, NUM_STUFF)
    arch = TINY_SPACE.sample(5)
    plain = extract(sup, arch)
    batches = [make_batch(s)[0] for s in range(2)]
    recalibrate_bn(sup, arch, batches)
    recalibrate_bn(plain, None, batches)
    assert not sup.training
    on_path = {id(m) for layer, c in zip(sup.backbone.layer_choices, arch) for m in layer[c].modules()}
    on_path |= {id(m) for m in sup.backbone.stem.modules()}
    for m in sup.modules():
        if isinstance(m, _BatchNorm):
            assert int(m.num_batches_tracked) == (2 if id(m) in on_path else 0)
    after = extract(sup, arch)
    for (name, a), b in zip(after.named_buffers(), plain.buffers()):
        torch.testing.assert_close(a, b, msg=name)
    images, _ = make_batch(11)
    with torch.no_grad():
        torch.testing.assert_close(sup.raw_outputs(images, arch)["semantic_logits"], plain.raw_outputs(images)["semantic_logits"])


def test_eval_without_any_detection_gives_stuff_only():
    torch.manual_seed(0)
    net = build_supernet("tiny", NUM_THINGS, NUM_STUFF, box_score_thresh=1.0).eval()
    images, _ = make_batch(4)
    with torch.no_grad():
        out = net(images, arch=TINY_SPACE.sample(6))
    for img, pred in zip(images, out):
        assert pred["panoptic"].shape == img.shape[1:]
        assert all(not s["isthing"] for s in pred["segments"])
        sem = pred["semantic"]
        for s in pred["segments"]:
            assert (sem[pred["panoptic"] == s["id"]] == s["label"]).all()
