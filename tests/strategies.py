"""Hypothesis strategies shared by all property tests."""

from __future__ import annotations

from hypothesis import strategies as st

from autopanoptic.search.space import Layer, SearchSpace

GROUPS = ("backbone", "head", "inter")


@st.composite
def search_spaces(draw, min_layers: int = 1, max_layers: int = 60, max_choices: int = 8) -> SearchSpace:
    """Random search spaces: 1..60 layers with 1..8 choices each, groups in blocks."""
    n = draw(st.integers(min_layers, max_layers))
    counts = draw(st.lists(st.integers(1, max_choices), min_size=n, max_size=n))
    group_of = sorted(draw(st.lists(st.sampled_from(GROUPS), min_size=n, max_size=n)), key=GROUPS.index)
    layers = [
        Layer(f"layer{i}", tuple(f"op{j}" for j in range(c)), group_of[i]) for i, c in enumerate(counts)
    ]
    return SearchSpace(layers, name=draw(st.sampled_from(["custom", "test-space"])))


@st.composite
def spaces_and_archs(draw, **kwargs):
    """A random space and a valid architecture of it."""
    space = draw(search_spaces(**kwargs))
    arch = tuple(draw(st.integers(0, n - 1)) for n in space.n_choices)
    return space, arch


def archs_of(space: SearchSpace):
    """Valid architectures of a given ``space`` (shrinking towards choice 0 everywhere)."""
    return st.tuples(*(st.integers(0, n - 1) for n in space.n_choices))


# --- panoptic data (autopanoptic.data) ---------------------------------------------------------

PANOPTIC_CATEGORIES = (
    {"id": 1, "name": "thing-a", "isthing": 1, "color": [220, 20, 60]},
    {"id": 4, "name": "thing-b", "isthing": 1, "color": [0, 0, 142]},
    {"id": 7, "name": "stuff-a", "isthing": 0, "color": [70, 130, 180]},
    {"id": 9, "name": "stuff-b", "isthing": 0},
)
"""Categories with gaps (like COCO): two things, two stuff, one without a colour."""


@st.composite
def _segment_map(draw, h: int, w: int, n_max: int, *, crowd: bool, void: bool):
    """A map painted with rectangles, its segments_info (ids in 1..2**24-1, areas, crowd)."""
    import numpy as np

    n = draw(st.integers(0, n_max))
    ids = sorted(draw(st.sets(st.integers(1, 256**3 - 1), min_size=n, max_size=n)))
    cats = [c["id"] for c in PANOPTIC_CATEGORIES]
    pan = np.zeros((h, w), np.int64)
    background = draw(st.sampled_from([0] + ids)) if ids else 0
    pan[:] = background
    for sid in ids:
        y0, y1 = sorted(draw(st.tuples(st.integers(0, h), st.integers(0, h))))
        x0, x1 = sorted(draw(st.tuples(st.integers(0, w), st.integers(0, w))))
        pan[y0 : y1 + 1, x0 : x1 + 1] = sid
    if void and draw(st.booleans()):
        y0, y1 = sorted(draw(st.tuples(st.integers(0, h - 1), st.integers(0, h - 1))))
        x = draw(st.integers(0, w - 1))
        pan[y0 : y1 + 1, x] = 0
    present, counts = np.unique(pan, return_counts=True)
    area = dict(zip(present.tolist(), counts.tolist()))
    crowd_cats: set[int] = set()
    segments = []
    for sid in ids:
        if sid not in area:
            continue
        cid = draw(st.sampled_from(cats))
        is_crowd = 0
        if crowd and cid in (1, 4) and cid not in crowd_cats and draw(st.integers(0, 3)) == 0:
            is_crowd = 1
            crowd_cats.add(cid)  # at most one crowd region per category, as in COCO
        segments.append({"id": sid, "category_id": cid, "area": area[sid], "iscrowd": is_crowd})
    return pan.astype(np.int32), segments


@st.composite
def panoptic_pairs(draw, max_size: int = 12, max_segments: int = 6):
    """``(gt_map, gt_segments, pred_map, pred_segments)``: ground truth with void and crowd; a
    prediction that is either independent, or the ground truth shifted / relabelled / with
    segments dropped, so that every branch of the PQ rules is exercised."""
    import numpy as np

    h = draw(st.integers(2, max_size))
    w = draw(st.integers(2, max_size))
    gt, gt_segs = draw(_segment_map(h, w, max_segments, crowd=True, void=True))
    mode = draw(st.sampled_from(["independent", "derived"]))
    if mode == "independent" or not gt_segs:
        pred, pred_segs = draw(_segment_map(h, w, max_segments, crowd=False, void=True))
        for s in pred_segs:
            s.pop("iscrowd")
            s.pop("area")
        return gt, gt_segs, pred, pred_segs
    dy = draw(st.integers(-2, 2))
    dx = draw(st.integers(-2, 2))
    pred = np.roll(np.roll(gt, dy, axis=0), dx, axis=1).astype(np.int64)
    cats = [c["id"] for c in PANOPTIC_CATEGORIES]
    pred_segs = []
    for s in gt_segs:
        fate = draw(st.sampled_from(["keep", "keep", "relabel", "drop", "void"]))
        if fate in ("drop", "void"):
            pred[pred == s["id"]] = 0 if fate == "void" else 0
            continue
        cid = s["category_id"] if fate == "keep" else draw(st.sampled_from(cats))
        pred_segs.append({"id": s["id"], "category_id": cid})
    present = set(np.unique(pred).tolist())
    pred_segs = [s for s in pred_segs if s["id"] in present]
    return gt, gt_segs, pred.astype(np.int32), pred_segs


def single_byte_changes(path, seed: int):
    """Change each byte of the file ``path`` in turn, in place, to another value (drawn from ``seed``),
    yielding ``(position, xor)`` while the change is on disk; the original byte is put back after each.

    The property tests of checksums load the file at every yield (one in-place write per change,
    not a rewrite of the whole file).
    """
    import os
    import random

    blob = open(path, "rb").read()
    rng = random.Random(seed)
    fd = os.open(path, os.O_WRONLY)
    try:
        for i, byte in enumerate(blob):
            xor = rng.randrange(1, 256)
            os.pwrite(fd, bytes([byte ^ xor]), i)
            try:
                yield i, xor
            finally:
                os.pwrite(fd, bytes([byte]), i)
    finally:
        os.close(fd)
