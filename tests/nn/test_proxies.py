"""Training-free proxies (nn/proxies.py) for many architectures at once."""

from __future__ import annotations

import pytest
import torch


def test_naswot_baseline_scores_fresh_networks_and_leaves_the_global_rng_alone():
    from autopanoptic.nn import build_network, build_supernet
    from autopanoptic.nn.proxies import naswot_score, naswot_scores

    config = build_supernet("tiny", 2, 2).config
    space = build_supernet("tiny", 2, 2).search_space
    archs = [space.sample(k) for k in range(3)]
    g = torch.Generator().manual_seed(0)
    batches = [[torch.rand(3, 32, 32, generator=g) for _ in range(3)] for _ in range(2)]  # 6 images
    torch.manual_seed(123)
    before = torch.get_rng_state()
    got = naswot_scores(config, archs, batches, seed=4, images=5)
    assert torch.equal(torch.get_rng_state(), before)
    assert got == naswot_scores(config, archs, batches, seed=4, images=5)  # deterministic
    torch.manual_seed(4)
    want = naswot_score(build_network(config, archs[1]), [x for b in batches for x in b][:5])
    assert got[1] == pytest.approx(want)
    assert len(set(got)) == 3  # the architectures differ


def test_naswot_skips_repeated_images_of_a_small_calibration_split():
    """A calibration split smaller than its batches repeats images; two equal images would make every
    score -inf (the kernel matrix is singular), so each image counts once."""
    from autopanoptic.nn import build_network, build_supernet
    from autopanoptic.nn.proxies import naswot_score, naswot_scores

    sup = build_supernet("tiny", 2, 2)
    arch = sup.search_space.sample(0)
    g = torch.Generator().manual_seed(1)
    distinct = [torch.rand(3, 32, 32, generator=g) for _ in range(3)]
    repeated = [[distinct[0], distinct[1]], [distinct[2].clone(), distinct[0].clone()]]  # 3 distinct of 4
    torch.manual_seed(0)
    assert naswot_score(build_network(sup.config, arch), [x for b in repeated for x in b]) == float("-inf")
    got = naswot_scores(sup.config, [arch], repeated, seed=0, images=8)[0]
    torch.manual_seed(0)
    assert got == pytest.approx(naswot_score(build_network(sup.config, arch), distinct)) and got > float("-inf")
    with pytest.raises(ValueError, match="2 distinct images"):
        naswot_scores(sup.config, [arch], [[distinct[0], distinct[0].clone()]], seed=0)


def test_naswot_with_the_mask_head_tells_apart_what_differs_only_in_the_mask_head():
    """The dense score cannot see the mask head's searchable layers; ``mask_head=True`` adds their
    units (one whole-image RoI per image) to every image's code."""
    from autopanoptic.nn import build_supernet
    from autopanoptic.nn.proxies import naswot_scores

    sup = build_supernet("tiny", 2, 2)
    space = sup.search_space
    a = list(space.sample(0))
    b = list(a)
    masks = [i for i, layer in enumerate(space.layers) if layer.name.startswith("mask.")]
    assert masks
    for i in masks:  # another op in every mask-head layer, nothing else changed
        b[i] = (a[i] + 1) % space.n_choices[i]
    g = torch.Generator().manual_seed(2)
    images = [[torch.rand(3, 32, 32, generator=g) for _ in range(6)]]
    dense = naswot_scores(sup.config, [a, b], images, seed=0)
    full = naswot_scores(sup.config, [a, b], images, seed=0, mask_head=True)
    assert dense[0] == pytest.approx(dense[1])
    assert full[0] != pytest.approx(full[1])
    assert all(f > float("-inf") for f in full) and full != dense


def test_the_search_config_chooses_the_naswot_variant(tmp_path):
    from autopanoptic.config import load_config
    from autopanoptic.engine.search import candidate_fitness
    from autopanoptic.nn import build_supernet
    from autopanoptic.nn.proxies import naswot_scores

    assert load_config("tiny").search.naswot_mask_head is False
    assert load_config("tiny", ["search.naswot_mask_head=true"]).search.naswot_mask_head is True
    sup = build_supernet("tiny", 2, 2)
    arch = sup.search_space.sample(3)
    g = torch.Generator().manual_seed(5)
    calib = [[torch.rand(3, 32, 32, generator=g) for _ in range(4)]]
    for flag in (False, True):
        got = candidate_fitness("naswot", sup, arch, None, [], calib, seed=1, naswot_mask_head=flag)
        assert got == naswot_scores(sup.config, [arch], calib, seed=1, mask_head=flag)[0]


def test_zico_scores_fresh_networks_on_their_training_loss_and_leaves_the_global_rng_alone(tmp_path):
    from autopanoptic.data import PanopticDataset
    from autopanoptic.data.synthetic import write_synthetic
    from autopanoptic.engine.datasets import load_batch
    from autopanoptic.nn import build_network, build_supernet
    from autopanoptic.nn.proxies import zico_score, zico_scores

    write_synthetic(tmp_path, 6, size=32, seed=0)
    ds = PanopticDataset(tmp_path / "images", tmp_path / "panoptic.json", tmp_path / "panoptic")
    batches = [load_batch(ds, [0, 1, 2]), load_batch(ds, [3, 4, 5])]
    cats = ds.categories
    sup = build_supernet("tiny", cats.num_things, cats.num_stuff)
    archs = [sup.search_space.sample(k) for k in range(3)]
    torch.manual_seed(7)
    before = torch.get_rng_state()
    got = zico_scores(sup.config, archs, batches, seed=2)
    assert torch.equal(torch.get_rng_state(), before)
    assert got == zico_scores(sup.config, archs, batches, seed=2)  # deterministic
    assert len(set(got)) == 3 and all(abs(g) < float("inf") for g in got)
    torch.manual_seed(2)
    net = build_network(sup.config, archs[0])
    assert zico_score(net, batches, seed=2) == pytest.approx(got[0])
    assert all(p.grad is None for p in net.parameters())  # its gradients are cleared
    with pytest.raises(ValueError, match="at least 2 batches"):
        zico_score(net, batches[:1])
