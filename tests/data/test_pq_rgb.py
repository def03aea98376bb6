"""The PNG fast path of ``pq_compute``: raw RGB bytes (libspng or Pillow) against the id maps."""

from __future__ import annotations

import numpy as np
import pytest

from autopanoptic.data import pq as P
from autopanoptic.data.format import id2rgb, read_panoptic_png, write_panoptic_png
from autopanoptic.errors import DataError


def _maps(seed: int, h: int = 9, w: int = 13):
    rng = np.random.default_rng(seed)
    # Ids that differ in one byte only (R, G or B) next to each other, and void.
    choices = np.array([0, 1, 256, 65536, 65537, 3 * 65536 + 2, 255, 70000])
    gt = choices[rng.integers(0, len(choices), (h, w))]
    gt[:, :4] = gt[:, :1]  # some runs
    pred = choices[rng.integers(0, len(choices), (h, w))]
    pred[2:5] = gt[2:5]
    return gt, pred


@pytest.mark.parametrize("seed", range(6))
def test_rgb_runs_match_the_id_map_path(seed):
    gt, pred = _maps(seed)
    cats = {1: 0, 2: 1}
    gseg = [{"id": int(i), "category_id": 1 + k % 2, "iscrowd": int(k == 3)} for k, i in enumerate(np.unique(gt)) if i]
    pseg = [{"id": int(i), "category_id": 1 + k % 2} for k, i in enumerate(np.unique(pred)) if i]
    out = []
    for fn, a, b in ((P._accumulate, gt, pred), (P._accumulate_rgb, id2rgb(gt), id2rgb(pred))):
        st = [np.zeros(2, np.int64), np.zeros(2, np.int64), np.zeros(2, np.int64), np.zeros(2)]
        fn(a, gseg, b, pseg, cats, *st, "x")
        out.append(st)
    for x, y in zip(*out):
        assert np.array_equal(x, y)
    starts = P._run_starts_rgb(id2rgb(gt), id2rgb(pred))
    g, p = gt.ravel(), pred.ravel()
    want = np.flatnonzero(np.r_[True, (g[1:] != g[:-1]) | (p[1:] != p[:-1])])
    assert np.array_equal(starts, want)


def test_read_rgb_spng_and_pillow_agree(tmp_path, monkeypatch):
    gt, _ = _maps(0)
    path = write_panoptic_png(tmp_path / "a.png", gt)
    fast = P._read_rgb(str(path))
    monkeypatch.setattr(P, "_spng", None)
    slow = P._read_rgb(str(path))
    assert fast.shape == slow.shape == gt.shape + (3,)
    assert np.array_equal(fast, slow)
    assert np.array_equal(P._ids_at(fast, np.arange(gt.size) * 3), read_panoptic_png(path).ravel())


def test_rgb_path_errors_are_clear(tmp_path):
    gt, pred = _maps(1)
    gseg = [{"id": int(i), "category_id": 1} for i in np.unique(gt) if i]
    pseg = [{"id": int(i), "category_id": 1} for i in np.unique(pred) if i][1:]  # one id missing
    st = [np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1)]
    with pytest.raises(DataError, match="absent from segments_info"):
        P._accumulate_rgb(id2rgb(gt), gseg, id2rgb(pred), pseg, {1: 0}, *st, "img")
    with pytest.raises(DataError, match="not found"):
        P._read_rgb(str(tmp_path / "missing.png"))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError):
        P._read_rgb(str(tmp_path / "bad.png"))
