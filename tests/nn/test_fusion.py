"""Panoptic fusion rules (SPEC.md section 4) on hand-made and generated inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from autopanoptic.nn.fusion import COCO_REFERENCE_AREA, min_stuff_area, panoptic_fusion


def _box_mask(h, w, y0, y1, x0, x1):
    m = torch.zeros(h, w, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def test_score_threshold_keeps_exactly_half_and_above():
    masks = torch.stack([_box_mask(8, 8, 0, 2, 0, 8), _box_mask(8, 8, 4, 6, 0, 8)])
    sem = torch.full((8, 8), 1)  # "thing" class (num_stuff = 1): no stuff
    pan, segs = panoptic_fusion(masks, [0.5, 0.4999], [0, 1], sem, num_stuff=1, stuff_area=0)
    assert [s["label"] for s in segs] == [0]
    assert (pan[0:2] == 1).all() and (pan[2:] == 0).all()


def test_higher_score_pasted_first_and_owns_overlap():
    a = _box_mask(8, 8, 0, 4, 0, 8)  # 32 px
    b = _box_mask(8, 8, 2, 8, 0, 8)  # 48 px, 16 overlap with a (33%)
    sem = torch.full((8, 8), 3)
    pan, segs = panoptic_fusion(torch.stack([a, b]), [0.6, 0.9], [4, 7], sem, num_stuff=3, stuff_area=0)
    # b has the higher score: it is pasted whole, a only gets its free rows 0..1 (50% covered: kept).
    assert segs[0]["label"] == 7 and segs[0]["id"] == 1
    assert (pan[2:] == 1).all()
    assert segs[1]["label"] == 4 and (pan[:2] == 2).all()


def test_instance_more_than_half_covered_is_skipped():
    big = _box_mask(10, 10, 0, 10, 0, 10)
    small = _box_mask(10, 10, 0, 5, 0, 3)  # fully covered by big
    sem = torch.full((10, 10), 2)
    pan, segs = panoptic_fusion(torch.stack([big, small]), [0.9, 0.8], [0, 1], sem, num_stuff=2, stuff_area=0)
    assert len(segs) == 1 and (pan == 1).all()
    # `covered` of the second instance's 10 pixels lie under the first one: skipped above 50%.
    for covered, kept in ((6, False), (5, True), (4, True)):
        first = _box_mask(1, 20, 0, 1, 0, covered)
        second = _box_mask(1, 20, 0, 1, 0, 10)
        pan, segs = panoptic_fusion(
            torch.stack([first, second]), [0.9, 0.8], [0, 1], torch.full((1, 20), 2), num_stuff=2, stuff_area=0
        )
        assert (len(segs) == 2) == kept
        if kept:
            assert (pan[0, covered:10] == 2).all() and (pan[0, :covered] == 1).all()
        else:
            assert (pan[0, covered:] == 0).all()


def test_small_stuff_dropped_with_area_scaled_to_the_image():
    h = w = 64  # min area = 4096 * 4096 / 307200 = 54.6 pixels
    sem = torch.zeros(h, w, dtype=torch.int64)
    sem[:5, :10] = 1  # 50 px of stuff 1: too small
    sem[10:20, :10] = 2  # 100 px of stuff 2: kept
    sem[30:, :] = 3  # 3 = things class (num_stuff = 3): never stuff
    pan, segs = panoptic_fusion(torch.zeros(0, h, w), [], [], sem, num_stuff=3)
    labels = {s["label"]: s for s in segs}
    assert set(labels) == {0, 2}
    assert all(not s["isthing"] for s in segs)
    assert (pan[:5, :10] == 0).all()  # dropped stuff is void
    assert (pan[30:] == 0).all()  # "thing" pixels without an instance are void
    assert (pan[10:20, :10] == labels[2]["id"]).all()
    assert min_stuff_area(h, w) == pytest.approx(4096 * h * w / COCO_REFERENCE_AREA)
    # The same layout at a reference area of the image itself needs 4096 px: everything dropped.
    pan, segs = panoptic_fusion(torch.zeros(0, h, w), [], [], sem, num_stuff=3, reference_area=h * w)
    assert segs == [] and (pan == 0).all()


def test_stuff_fills_only_free_pixels():
    inst = _box_mask(6, 6, 0, 3, 0, 6)
    sem = torch.zeros(6, 6, dtype=torch.int64)
    pan, segs = panoptic_fusion(inst[None], [0.7], [5], sem, num_stuff=2, stuff_area=0)
    assert (pan[:3] == 1).all() and (pan[3:] == 2).all()
    assert segs == [
        {"id": 1, "label": 5, "isthing": True, "score": pytest.approx(0.7)},
        {"id": 2, "label": 0, "isthing": False, "score": 1.0},
    ]


def test_bad_shapes_are_reported():
    with pytest.raises(ValueError, match="masks must be"):
        panoptic_fusion(torch.zeros(1, 3, 3), [0.9], [0], torch.zeros(4, 4), num_stuff=1)
    with pytest.raises(ValueError, match="semantic must be"):
        panoptic_fusion(torch.zeros(0, 3, 3), [], [], torch.zeros(1, 4, 4), num_stuff=1)


@given(
    data=st.data(),
    n=st.integers(0, 6),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    num_stuff=st.integers(1, 4),
    stuff_area=st.sampled_from([0, 50, 4096]),
)
def test_fusion_invariants(data, n, h, w, num_stuff, stuff_area):
    seed = data.draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    masks = rng.random((n, h, w)) < rng.random((n, 1, 1))
    scores = rng.random(n)
    labels = rng.integers(0, 5, n)
    sem = rng.integers(0, num_stuff + 1, (h, w))
    pan, segs = panoptic_fusion(masks, scores, labels, sem, num_stuff, stuff_area=stuff_area)
    pan = pan.numpy()
    assert pan.dtype == np.int32 and pan.shape == (h, w)
    ids = [s["id"] for s in segs]
    assert ids == list(range(1, len(segs) + 1))
    assert set(np.unique(pan)) - {0} == set(ids)  # every segment has pixels, no stray ids
    min_area = min_stuff_area(h, w, stuff_area)
    for s in segs:
        region = pan == s["id"]
        if s["isthing"]:
            i = [j for j in range(n) if labels[j] == s["label"] and masks[j][region].all() and np.float32(scores[j]) == np.float32(s["score"])]
            assert i, "a thing segment lies inside the mask of an instance with its label and score"
            assert s["score"] >= 0.5
            # more than half of that instance's mask is its own segment
            assert any(region.sum() >= 0.5 * masks[j].sum() for j in i)
        else:
            assert 0 <= s["label"] < num_stuff
            assert (sem[region] == s["label"]).all()
            assert region.sum() >= min_area
    # things first, in non-increasing score order
    thing_scores = [s["score"] for s in segs if s["isthing"]]
    assert thing_scores == sorted(thing_scores, reverse=True)
    kinds = [s["isthing"] for s in segs]
    assert kinds == sorted(kinds, reverse=True)
