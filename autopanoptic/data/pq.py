"""Panoptic quality (PQ), computed exactly as the COCO panoptic API does, and fast.

Rules (SPEC.md section 4), per category:

- a predicted and a ground-truth segment of the same category match when IoU > 0.5 (so matches
  are unique); the union leaves out the prediction's pixels on ground-truth void;
- crowd ground-truth segments are never matched and never false negatives;
- an unmatched prediction is not a false positive when more than half of it lies on void or on
  the crowd region of its category (the last crowd segment of that category listed in the
  image's ``segments_info``, as the API does);
- PQ = sum IoU / (TP + FP/2 + FN/2), SQ = sum IoU / TP, RQ = TP / (TP + FP/2 + FN/2); All,
  Things and Stuff average over categories with TP + FP + FN > 0 (``n``; ``n = 0`` gives 0.0);
- ground-truth areas come from the JSON, predicted areas from the prediction's pixels.

Two forms: :func:`pq_stats` works on in-memory segment maps and returns :class:`PQStats`, which
add across images and processes; :func:`pq_compute` reads JSON + PNG folders like the API.

>>> import numpy as np
>>> from autopanoptic.data.format import CategoryMap
>>> cats = CategoryMap.from_json([{"id": 1, "name": "a", "isthing": 1}])
>>> gt = np.array([[1, 1], [1, 0]]); pred = np.array([[5, 5], [0, 0]])
>>> st = pq_stats(gt, [{"id": 1, "category_id": 1, "area": 3, "iscrowd": 0}],
...               pred, [{"id": 5, "category_id": 1}], cats)
>>> st.tp.tolist(), st.fp.tolist(), st.fn.tolist(), round(float(st.iou[0]), 4)
([1], [0], [0], 0.6667)
>>> st.summary()["All"]["n"]
1
"""

from __future__ import annotations

import json
import math
import os
import threading
import zlib
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from autopanoptic.data.format import (
    MAX_PIXELS,
    CategoryMap,
    check_pixels,
    read_panoptic_png,
    validate_panoptic_json,
)
from autopanoptic.errors import DataError

__all__ = ["PQStats", "pq_stats", "pq_compute", "pq_compute_stats", "pq_backend", "format_pq_table",
           "segments_from_labels"]

GROUPS = (("All", None), ("Things", True), ("Stuff", False))


def _as_category_map(categories: CategoryMap | Iterable[Mapping[str, Any]]) -> CategoryMap:
    if isinstance(categories, CategoryMap):
        return categories
    return CategoryMap.from_json(categories)


@attrs.frozen(eq=False)
class PQStats:
    """Per-category PQ statistics: ``tp``, ``fp``, ``fn`` (int64) and ``iou`` sums (float64).

    Arrays follow ``category_ids`` (the order of the dataset's ``categories``). Stats add with
    ``+`` (across images, batches, processes) and convert to / from one flat ``float64`` array
    for ``torch.distributed.all_reduce`` (counts stay exact below 2**53).

    >>> cats = CategoryMap.from_json([{"id": 3, "name": "x", "isthing": 0}])
    >>> a = PQStats.zeros(cats)
    >>> b = PQStats.from_array(a.to_array() + 1, cats)
    >>> (a + b + b).tp.tolist(), (a + b).summary()["Stuff"]["pq"]
    ([2], 0.5)
    """

    category_ids: tuple[int, ...] = attrs.field(converter=lambda v: tuple(int(x) for x in v))
    isthing: tuple[bool, ...] = attrs.field(converter=lambda v: tuple(bool(x) for x in v))
    tp: np.ndarray = attrs.field(converter=lambda a: np.asarray(a, dtype=np.int64))
    fp: np.ndarray = attrs.field(converter=lambda a: np.asarray(a, dtype=np.int64))
    fn: np.ndarray = attrs.field(converter=lambda a: np.asarray(a, dtype=np.int64))
    iou: np.ndarray = attrs.field(converter=lambda a: np.asarray(a, dtype=np.float64))

    def __attrs_post_init__(self) -> None:
        n = len(self.category_ids)
        if len(self.isthing) != n or any(a.shape != (n,) for a in (self.tp, self.fp, self.fn, self.iou)):
            raise DataError(f"PQStats: every array must have shape ({n},), one entry per category")
        for a in (self.tp, self.fp, self.fn, self.iou):
            a.setflags(write=False)

    @classmethod
    def zeros(cls, categories: CategoryMap | Iterable[Mapping[str, Any]]) -> "PQStats":
        """Empty statistics for ``categories`` (a :class:`CategoryMap` or the JSON list)."""
        cm = _as_category_map(categories)
        n = len(cm.ids)
        return cls(cm.ids, cm.isthing, np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n))

    def _check_same(self, other: "PQStats") -> None:
        if self.category_ids != other.category_ids or self.isthing != other.isthing:
            raise DataError("cannot add PQStats of different category lists")

    def __add__(self, other: "PQStats") -> "PQStats":
        if not isinstance(other, PQStats):
            return NotImplemented
        self._check_same(other)
        return PQStats(self.category_ids, self.isthing, self.tp + other.tp, self.fp + other.fp,
                       self.fn + other.fn, self.iou + other.iou)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PQStats):
            return NotImplemented
        return (self.category_ids == other.category_ids and self.isthing == other.isthing
                and all(np.array_equal(getattr(self, f), getattr(other, f)) for f in ("tp", "fp", "fn", "iou")))

    __hash__ = None  # type: ignore[assignment]

    def to_array(self) -> np.ndarray:
        """One flat ``float64`` array ``[tp, fp, fn, iou]`` (length ``4 * n_categories``)."""
        return np.concatenate([self.tp, self.fp, self.fn, self.iou]).astype(np.float64)

    @classmethod
    def from_array(cls, array: Any, categories: CategoryMap | Iterable[Mapping[str, Any]]) -> "PQStats":
        """Inverse of :meth:`to_array` (accepts anything ``numpy.asarray`` takes, e.g. a CPU tensor)."""
        cm = _as_category_map(categories)
        n = len(cm.ids)
        a = np.asarray(array, dtype=np.float64).reshape(-1)
        if a.shape != (4 * n,):
            raise DataError(f"PQStats array must have length {4 * n} (4 x {n} categories), got {a.shape[0]}")
        counts = a[: 3 * n]
        if np.any(counts != np.round(counts)):
            raise DataError("PQStats array holds non-integer tp/fp/fn counts")
        return cls(cm.ids, cm.isthing, a[:n], a[n : 2 * n], a[2 * n : 3 * n], a[3 * n :])

    def per_class(self) -> dict[int, dict[str, float]]:
        """``{category id: {pq, sq, rq, tp, fp, fn, iou}}``; 0.0 scores where TP + FP + FN = 0."""
        out = {}
        for k, cid in enumerate(self.category_ids):
            tp, fp, fn, iou = int(self.tp[k]), int(self.fp[k]), int(self.fn[k]), float(self.iou[k])
            if tp + fp + fn == 0:
                pq = sq = rq = 0.0
            else:
                denom = tp + 0.5 * fp + 0.5 * fn
                pq, sq, rq = iou / denom, (iou / tp if tp else 0.0), tp / denom
            out[cid] = {"pq": pq, "sq": sq, "rq": rq, "tp": tp, "fp": fp, "fn": fn, "iou": iou}
        return out

    def summary(self) -> dict[str, Any]:
        """``{"All"|"Things"|"Stuff": {pq, sq, rq, n}, "per_class": {...}}``, scores in [0, 1].

        The shape of the COCO panoptic API's ``pq_compute`` result. A group with no category that
        has TP + FP + FN > 0 reports ``n = 0`` and zero scores.
        """
        per = self.per_class()
        out: dict[str, Any] = {}
        for name, want in GROUPS:
            pq = sq = rq = 0.0
            n = 0
            for k, cid in enumerate(self.category_ids):
                if want is not None and self.isthing[k] != want:
                    continue
                c = per[cid]
                if c["tp"] + c["fp"] + c["fn"] == 0:
                    continue
                n += 1
                pq += c["pq"]
                sq += c["sq"]
                rq += c["rq"]
            out[name] = {"pq": pq / n if n else 0.0, "sq": sq / n if n else 0.0, "rq": rq / n if n else 0.0, "n": n}
        out["per_class"] = per
        return out


_SENTINEL = np.uint16(65535)
_LUT = threading.local()
_INDEX = np.arange(int(_SENTINEL), dtype=np.uint16)


def _lut() -> np.ndarray:
    # A per-thread scratch table id -> segment index over all 2**24 ids (32 MB, allocated once):
    # one np.take per map instead of a sort. Entries are reset after every use.
    lut = getattr(_LUT, "table", None)
    if lut is None:
        lut = _LUT.table = np.full(256**3, _SENTINEL, dtype=np.uint16)
    return lut


def _lookup(ids_map: np.ndarray, seg_ids: np.ndarray, *, what: str, source: str, checked: bool = False) -> np.ndarray:
    """Index of every pixel's id in ``[0] + seg_ids`` (0 = void); error on ids not listed.

    ``ids_map``: flat non-negative ids below 256**3 (``checked=True`` skips that range check).
    """
    if len(seg_ids) >= int(_SENTINEL) - 1:
        raise DataError(f"{source}: more than {int(_SENTINEL) - 2} segments in one image")
    if not checked and ids_map.size and (ids_map.min() < 0 or ids_map.max() >= 256**3):
        raise DataError(f"{source}: {what} segment ids must lie in [0, 256**3)")
    lut = _lut()
    sid = np.asarray(seg_ids, dtype=np.intp)
    lut[0] = 0
    lut[sid] = _INDEX[1 : len(sid) + 1]
    try:
        idx = lut.take(ids_map)
    finally:
        lut[0] = _SENTINEL
        lut[sid] = _SENTINEL
    if idx.size and idx.max() == _SENTINEL:  # valid indices are all below the sentinel
        bad = np.unique(ids_map[idx == _SENTINEL])
        raise DataError(
            f"{source}: {what} PNG has segment id(s) {bad[:5].tolist()} absent from segments_info"
        )
    return idx


def _segment_arrays(segments: Sequence[Mapping[str, Any]], cat_pos: dict[int, int], *, what: str, source: str):
    """``(ids, category indices)`` of ``segments_info`` as lists of ints, checked."""
    try:
        ids = [int(s["id"]) for s in segments]
        cats = [s["category_id"] for s in segments]
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{source}: every {what} segment needs an integer 'id' and a 'category_id'") from None
    if ids:
        if len(set(ids)) != len(ids):
            raise DataError(f"{source}: {what} segments_info has duplicate segment ids")
        if min(ids) <= 0:
            raise DataError(f"{source}: {what} segment id 0 (void) or negative in segments_info")
        if max(ids) >= 256**3:
            raise DataError(f"{source}: segment ids in segments_info must be below 256**3")
    try:
        cidx = [cat_pos[c] for c in cats]
    except (KeyError, TypeError):
        bad = next(c for c in cats if not isinstance(c, int) or c not in cat_pos)
        raise DataError(f"{source}: {what} segment has unknown category {bad!r}") from None
    return ids, cidx


def _accumulate(gt_map, gt_segments, pred_map, pred_segments, cat_pos, tp, fp, fn, iou_sum, source) -> None:
    gt_map = np.asarray(gt_map)
    pred_map = np.asarray(pred_map)
    if gt_map.ndim != 2 or gt_map.shape != pred_map.shape:
        raise DataError(
            f"{source}: ground truth {gt_map.shape} and prediction {pred_map.shape} maps differ in size"
        )
    if gt_map.dtype.kind not in "iu" or pred_map.dtype.kind not in "iu":
        raise DataError(f"{source}: segment maps must hold integer ids")
    gt_ids, gt_cat = _segment_arrays(gt_segments, cat_pos, what="ground-truth", source=source)
    pr_ids, pr_cat = _segment_arrays(pred_segments, cat_pos, what="predicted", source=source)
    # Run-length encode the (ground truth, prediction) pair along the flat image: runs are
    # constant in both maps, so the per-pixel work is two comparisons; everything after works on
    # the (far fewer) runs.
    g = gt_map.ravel()
    p = pred_map.ravel()
    n_pix = g.size
    change = np.empty(n_pix, dtype=bool)
    if n_pix:
        change[0] = True
        np.not_equal(g[1:], g[:-1], out=change[1:])
        change[1:] |= p[1:] != p[:-1]
    starts = np.flatnonzero(change)
    lengths = np.diff(starts, append=n_pix)
    gi = _lookup(g[starts], gt_ids, what="ground-truth", source=source)
    pi = _lookup(p[starts], pr_ids, what="predicted", source=source)
    counts = _pair_counts(gi, pi, lengths, len(gt_ids) + 1, len(pr_ids) + 1)
    _match(counts, gt_ids, gt_cat, gt_segments, pr_ids, pr_cat, tp, fp, fn, iou_sum, source)


def _run_starts_rgb(gt_rgb: np.ndarray, pred_rgb: np.ndarray) -> np.ndarray:
    """Start pixel of every run of equal (ground truth, prediction) pairs in two ``H x W x 3`` maps.

    Works on the raw bytes: no ids are built per pixel. Byte ``3k + c`` differs from byte
    ``3(k+1) + c`` in either map exactly when pixel ``k + 1`` starts a new run.
    """
    x = gt_rgb.reshape(-1)
    y = pred_rgb.reshape(-1)
    m = x.size - 3
    padded = (m + 7) & ~7
    scratch = getattr(_LUT, "scratch", None)
    if scratch is None or scratch.shape[1] < padded:
        scratch = _LUT.scratch = np.empty((2, padded), dtype=bool)  # reused: no fresh pages per image
    d, e = scratch[0, :m], scratch[1, :m]
    np.not_equal(x[3:], x[:-3], out=d)
    np.not_equal(y[3:], y[:-3], out=e)
    np.bitwise_or(d, e, out=d)
    scratch[0, m:padded] = False
    # np.flatnonzero over ~200k bools is the slowest step: find the non-zero 8-byte words first
    # (few), then the set bytes inside them.
    words = scratch[0, :padded].view(np.uint64)
    nzw = np.flatnonzero(words != 0)
    inner = np.flatnonzero(words[nzw].view(np.bool_))
    nz = nzw[inner >> 3]
    nz <<= 3
    nz += inner & 7
    nz //= 3
    starts = np.empty(len(nz) + 1, dtype=nz.dtype)
    starts[0] = 0
    if len(nz):
        keep = np.empty(len(nz), dtype=bool)
        keep[0] = True
        np.not_equal(nz[1:], nz[:-1], out=keep[1:])
        nz = nz[keep]
        starts = starts[: len(nz) + 1]
        np.add(nz, 1, out=starts[1:])
    return starts


def _ids_at(rgb: np.ndarray, byte_pos: np.ndarray) -> np.ndarray:
    """Segment ids (``uint32``) of the pixels whose R bytes are at ``byte_pos`` in an ``H x W x 3`` map."""
    x = rgb.reshape(-1)
    ids = x[byte_pos + 2].astype(np.uint32)
    ids <<= 8
    ids |= x[byte_pos + 1]
    ids <<= 8
    ids |= x[byte_pos]
    return ids


def _runs_rgb(gt_rgb: np.ndarray, pred_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of equal (ground truth, prediction) pairs along two flat ``H x W x 3`` maps:
    ``(gt ids, pred ids, lengths)`` (``uint32``, ``uint32``, ``intp``), one entry per run."""
    n_pix = gt_rgb.shape[0] * gt_rgb.shape[1]
    if n_pix:
        starts = _run_starts_rgb(gt_rgb, pred_rgb)
    else:
        starts = np.zeros(0, dtype=np.intp)
    lengths = np.empty_like(starts)
    np.subtract(starts[1:], starts[:-1], out=lengths[:-1])
    if n_pix:
        lengths[-1] = n_pix - starts[-1]
    byte_pos = starts * 3
    return _ids_at(gt_rgb, byte_pos), _ids_at(pred_rgb, byte_pos), lengths


def _accumulate_rgb(gt_rgb, gt_segments, pred_rgb, pred_segments, cat_pos, tp, fp, fn, iou_sum, source) -> None:
    """:func:`_accumulate` on two decoded panoptic PNGs (``H x W x 3`` uint8, C order, same size).

    One C loop (:mod:`autopanoptic.data._fastpq`) counts the (ground truth, prediction) pairs when
    the extension is built; else numpy finds the runs and ``bincount`` counts them.
    """
    gt_ids, gt_cat = _segment_arrays(gt_segments, cat_pos, what="ground-truth", source=source)
    pr_ids, pr_cat = _segment_arrays(pred_segments, cat_pos, what="predicted", source=source)
    counts = None
    if _fastpq is not None:
        counts = np.zeros((len(gt_ids) + 1, len(pr_ids) + 1), dtype=np.int64)
        if _fastpq.pair_counts(gt_rgb, pred_rgb, np.array(gt_ids, np.uint32), np.array(pr_ids, np.uint32),
                               counts) is not None:
            counts = None  # an id is not listed: the numpy path below names them all
    if counts is None:
        gs, ps, lengths = _runs_rgb(gt_rgb, pred_rgb)
        gi = _lookup(gs, gt_ids, what="ground-truth", source=source, checked=True)
        pi = _lookup(ps, pr_ids, what="predicted", source=source, checked=True)
        counts = _pair_counts(gi, pi, lengths, len(gt_ids) + 1, len(pr_ids) + 1)
    _match(counts, gt_ids, gt_cat, gt_segments, pr_ids, pr_cat, tp, fp, fn, iou_sum, source)


def _pair_counts(gi: np.ndarray, pi: np.ndarray, lengths: np.ndarray, ng: int, npr: int) -> np.ndarray:
    """``ng x npr`` pixel counts of runs with ground-truth index ``gi`` and predicted index ``pi``."""
    key = gi.astype(np.intp)
    key *= npr
    key += pi
    return np.bincount(key, weights=lengths, minlength=ng * npr).astype(np.int64).reshape(ng, npr)


def _match(counts, gt_ids, gt_cat, gt_segments, pr_ids, pr_cat, tp, fp, fn, iou_sum, source) -> None:
    """Add one image's matches to ``tp`` / ``fp`` / ``fn`` / ``iou_sum`` from its ``counts``: pixels
    of every (ground truth, prediction) segment pair, row / column 0 = void."""
    # From here on everything is per segment (a handful per image): plain Python is faster than
    # many tiny numpy calls.
    gt_pix = counts.sum(axis=1).tolist()[1:]
    pr_area = counts.sum(axis=0).tolist()[1:]
    if 0 in gt_pix:
        bad = [int(i) for i, a in zip(gt_ids, gt_pix) if a == 0][:5]
        raise DataError(f"{source}: ground-truth segment(s) {bad} in segments_info are absent from the PNG")
    if 0 in pr_area:
        bad = [int(i) for i, a in zip(pr_ids, pr_area) if a == 0][:5]
        raise DataError(f"{source}: predicted segment(s) {bad} in segments_info are absent from the PNG")
    crowd = [s.get("iscrowd", 0) == 1 for s in gt_segments]
    if all("area" in s for s in gt_segments):
        gt_area = [s["area"] for s in gt_segments]
        if not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in gt_area):
            raise DataError(f"{source}: ground-truth areas must be numbers")
    else:
        gt_area = gt_pix
    gcat = gt_cat
    pcat = pr_cat
    on_void = counts[0].tolist()[1:]
    inter = counts[1:, 1:]
    rows, cols = np.nonzero(inter)
    gt_matched = [False] * len(gcat)
    pr_matched = [False] * len(pcat)
    # Matches: same category, ground truth not crowd, IoU > 0.5 with the union leaving out the
    # prediction's pixels on void (the API's arithmetic, in its order).
    for i, j, it in zip(rows.tolist(), cols.tolist(), inter[rows, cols].tolist()):
        c = gcat[i]
        if crowd[i] or c != pcat[j]:
            continue
        union = pr_area[j] + gt_area[i] - it - on_void[j]
        if union <= 0:
            raise DataError(f"{source}: a ground-truth 'area' in the JSON is smaller than its pixels")
        iou = it / union
        if iou > 0.5:
            tp[c] += 1
            iou_sum[c] += iou
            gt_matched[i] = True
            pr_matched[j] = True
    crowd_row: dict[int, int] = {}
    for i, c in enumerate(gcat):
        if crowd[i]:
            crowd_row[c] = i  # the last crowd segment of a category wins, as in the API
        elif not gt_matched[i]:
            fn[c] += 1
    # Unmatched predictions: ignored when more than half of them lies on void or on the crowd
    # region of their category.
    for j, c in enumerate(pcat):
        if pr_matched[j]:
            continue
        ignored = on_void[j]
        r = crowd_row.get(c)
        if r is not None:
            ignored += int(inter[r, j])
        if not ignored / pr_area[j] > 0.5:
            fp[c] += 1


def pq_stats(
    gt_map: np.ndarray,
    gt_segments: Sequence[Mapping[str, Any]],
    pred_map: np.ndarray,
    pred_segments: Sequence[Mapping[str, Any]],
    categories: CategoryMap | Iterable[Mapping[str, Any]],
    *,
    source: str = "image",
) -> PQStats:
    """PQ statistics of one image from in-memory segment maps (no PNG round trip).

    ``gt_map`` / ``pred_map``: integer ``H x W`` segment ids (0 = void). Segments are dicts with
    ``id`` and ``category_id`` (dataset ids); ground truth also ``iscrowd`` and ``area`` (from the
    JSON; the pixel count when any segment lacks it). Every id in a map must be listed and every
    listed segment must have pixels, else :class:`DataError` (``source`` names the image in it).

    >>> cats = [{"id": 1, "name": "a", "isthing": 1}, {"id": 2, "name": "b", "isthing": 0}]
    >>> gt = np.array([[1, 2]]); pred = np.array([[0, 9]])
    >>> s = pq_stats(gt, [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 2}],
    ...              pred, [{"id": 9, "category_id": 2}], cats)
    >>> s.summary()["Things"]["n"], s.summary()["Stuff"]["pq"]
    (1, 1.0)
    """
    cm = _as_category_map(categories)
    n = len(cm.ids)
    tp, fp, fn = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
    iou = np.zeros(n, np.float64)
    cat_pos = {c: k for k, c in enumerate(cm.ids)}
    _accumulate(gt_map, gt_segments, pred_map, pred_segments, cat_pos, tp, fp, fn, iou, source)
    return PQStats(cm.ids, cm.isthing, tp, fp, fn, iou)


def segments_from_labels(segments: Iterable[Mapping[str, Any]], categories: CategoryMap) -> list[dict[str, Any]]:
    """Turn network segments (``id``, contiguous ``label``, ``isthing``) into ``id`` + ``category_id``.

    >>> cm = CategoryMap.from_json([{"id": 4, "name": "a", "isthing": 1}, {"id": 9, "name": "s", "isthing": 0}])
    >>> segments_from_labels([{"id": 1, "label": 0, "isthing": False, "score": 0.9}], cm)
    [{'id': 1, 'category_id': 9, 'isthing': False, 'score': 0.9}]
    """
    out = []
    for s in segments:
        d = {k: v for k, v in s.items() if k != "label"}
        d["id"] = int(s["id"])
        d["category_id"] = categories.to_category_id(int(s["label"]), bool(s["isthing"]))
        out.append({"id": d.pop("id"), "category_id": d.pop("category_id"), **d})
    return out


def _load_json(path: Path, what: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: {what} JSON not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: {what} JSON is not valid JSON ({e})") from None


def _default_folder(json_path: Path) -> Path:
    # As the COCO panoptic API: the JSON path without its extension.
    return json_path.with_suffix("") if json_path.suffix == ".json" else Path(str(json_path).replace(".json", ""))


try:  # libspng decodes PNGs about twice as fast as Pillow; Pillow is the fallback.
    import pyspng as _spng
except ImportError:  # pragma: no cover - depends on the install
    _spng = None

try:  # the optional C extension (setup.py): PNG unfiltering and pair counting
    from autopanoptic.data import _fastpq
except ImportError:  # pragma: no cover - depends on the install (no C compiler)
    _fastpq = None

try:  # zlib-ng inflates PNG data about 4x faster than the standard zlib (same results)
    from zlib_ng import zlib_ng as _inflate
except ImportError:  # pragma: no cover - depends on the install
    _inflate = zlib


def pq_backend() -> str:
    """How :func:`pq_compute` reads PNGs and counts pixels in this install (results never differ).

    ``"C extension + zlib-ng"`` is the fast path; without the extension (no C compiler at install
    time) it is ``"libspng + numpy"`` or ``"Pillow + numpy"``, at about 0.6x the speed.
    """
    if _fastpq is not None:
        return "C extension + " + ("zlib-ng" if _inflate is not zlib else "zlib")
    return ("libspng" if _spng is not None else "Pillow") + " + numpy"


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PIECE = 1 << 16  # bytes inflated at a time: small pieces reuse heap memory instead of fresh pages


def _decode_rgb8(raw: bytes) -> np.ndarray | None:
    """``raw`` as ``uint8 H x W x 3`` when it is a valid 8-bit RGB non-interlaced PNG, else ``None``.

    Chunk CRCs are checked, the IDAT stream is inflated with zlib-ng when installed and unfiltered
    by the C extension, a piece of about 64 kB at a time (inflating a 640 x 480 image in one go
    costs ~370 page faults, more than the inflating itself). ``None`` for anything unusual or
    damaged: the caller then goes through the slower decoders, which explain what is wrong with
    the file.
    """
    if _fastpq is None or raw[:8] != _PNG_SIGNATURE:
        return None
    view = memoryview(raw)
    size = len(raw)
    pos = 8
    shape = None
    idat = []
    while True:
        if pos + 12 > size:
            return None  # no IEND
        length = int.from_bytes(raw[pos : pos + 4], "big")
        end = pos + 12 + length
        if end > size or zlib.crc32(view[pos + 4 : end - 4]) != int.from_bytes(raw[end - 4 : end], "big"):
            return None
        kind = raw[pos + 4 : pos + 8]
        if kind == b"IDAT":
            if shape is None:
                return None  # IDAT before IHDR
            idat.append(view[pos + 8 : end - 4])
        elif kind == b"IHDR":
            if length != 13 or shape is not None or raw[pos + 16 : pos + 21] != b"\x08\x02\x00\x00\x00":
                return None  # not 8-bit RGB, or interlaced, or an unknown method
            shape = (int.from_bytes(raw[pos + 8 : pos + 12], "big"), int.from_bytes(raw[pos + 12 : pos + 16], "big"))
        elif kind == b"IEND":
            break
        pos = end
    if shape is None or not idat or shape[0] * shape[1] > MAX_PIXELS:
        return None  # (too large: the callers refuse it with the file's name)
    w, h = shape
    row = 3 * w + 1
    out = np.empty((h, w, 3), dtype=np.uint8)
    stream = b"".join(idat) if len(idat) > 1 else idat[0]
    step = max(1, _PIECE // row)
    try:
        inflater = _inflate.decompressobj()
        for y in range(0, h, step):
            k = min(step, h - y)
            piece = inflater.decompress(stream, k * row)
            if len(piece) != k * row:
                return None  # the stream ends early
            stream = inflater.unconsumed_tail
            _fastpq.unfilter(piece, out, k, 3 * w, 3, y)
        if inflater.decompress(stream, 1) or not inflater.eof:
            return None  # more data than the image holds, or no proper end
    except Exception:  # noqa: BLE001 - zlib.error / zlib_ng.error (a damaged stream), ValueError (a bad filter)
        return None
    return out


def _read_rgb(path: str) -> np.ndarray:
    """A panoptic PNG as ``uint8 H x W x 3`` (C order): id = R + 256 G + 256**2 B.

    8-bit RGB files (all the COCO panoptic API writes) go through :func:`_decode_rgb8` (zlib-ng and
    the C extension), else libspng when ``pyspng`` is installed, else Pillow; anything else through
    :func:`read_panoptic_png`, which converts what it can and raises the explanatory
    :class:`DataError` otherwise.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: panoptic PNG not found; check the PNG folder") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read the panoptic PNG ({e})") from None
    if raw[:8] == _PNG_SIGNATURE and raw[12:16] == b"IHDR":  # the size, before any decoder allocates it
        check_pixels(path, int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big"))
    if _is_rgb_png(raw):
        arr = _decode_rgb8(raw)
        if arr is not None:
            return arr
        if _spng is not None:
            try:
                arr = _spng.load(raw)
            except Exception:  # noqa: BLE001 - any decoder failure: let Pillow explain the file
                arr = None
            if arr is not None and arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3:
                return np.ascontiguousarray(arr)
        else:
            import io

            from PIL import Image

            try:
                with Image.open(io.BytesIO(raw)) as im:
                    if im.mode == "RGB":
                        im.load()
                        w, h = im.size
                        return np.frombuffer(im.tobytes(), dtype=np.uint8).reshape(h, w, 3)
            except (OSError, ValueError):
                pass  # read_panoptic_png below raises the explanatory error
    ids = read_panoptic_png(path).astype("<u4")
    return np.ascontiguousarray(ids.view(np.uint8).reshape(*ids.shape, 4)[..., :3])


def _is_rgb_png(raw: bytes) -> bool:
    # IHDR: 8-byte signature, 4 length, 4 "IHDR", 4 width, 4 height, bit depth, colour type.
    return len(raw) > 26 and raw[12:16] == b"IHDR" and raw[24] == 8 and raw[25] == 2


_JOB: tuple | None = None  # (pairs, gt folder, pred folder, category ids), inherited by forked workers
_JOB_LOCK = threading.Lock()  # one forked pool at a time per process sets _JOB


def _eval_range(bounds: tuple[int, int], job: tuple | None = None) -> np.ndarray:
    """Statistics of ``pairs[start:stop]`` of ``job`` (default: the forked-in :data:`_JOB`) as one
    flat array ``[tp, fp, fn, iou]``."""
    pairs, gt_folder, pred_folder, cat_ids = job if job is not None else _JOB
    n = len(cat_ids)
    tp, fp, fn = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
    iou = np.zeros(n, np.float64)
    cat_pos = {c: k for k, c in enumerate(cat_ids)}
    gt_dir = gt_folder + os.sep
    pred_dir = pred_folder + os.sep
    for gt_ann, pred_ann in pairs[bounds[0]:bounds[1]]:
        gt_png = gt_dir + gt_ann["file_name"]
        pred_png = pred_dir + pred_ann["file_name"]
        gt_rgb = _read_rgb(gt_png)
        pred_rgb = _read_rgb(pred_png)
        if gt_rgb.shape != pred_rgb.shape:
            raise DataError(f"{pred_png}: size {pred_rgb.shape[:2]} differs from the ground truth {gt_png} "
                            f"{gt_rgb.shape[:2]}")
        _accumulate_rgb(gt_rgb, gt_ann["segments_info"], pred_rgb, pred_ann["segments_info"], cat_pos,
                        tp, fp, fn, iou, f"{pred_png} (image {gt_ann['image_id']!r})")
    return np.concatenate([tp, fp, fn, iou])


def _eval_chunk(args) -> np.ndarray:
    """Statistics of ``(pairs, gt folder, pred folder, category ids)`` in this process."""
    return _eval_range((0, len(args[0])), tuple(args))


def pq_compute_stats(
    gt_json: str | os.PathLike[str],
    pred_json: str | os.PathLike[str],
    gt_folder: str | os.PathLike[str] | None = None,
    pred_folder: str | os.PathLike[str] | None = None,
    *,
    workers: int | None = None,
    progress: bool = False,
    kind: str | None = None,
) -> PQStats:
    """Like :func:`pq_compute` but return the raw :class:`PQStats`.

    ``workers``: processes (default: the CPU count, at most the number of images; 1 = in this
    process). ``kind``: ``coco`` / ``ade20k`` for the ground-truth checks (default: ``ade20k``
    when the JSON has category 0 or string image ids, else ``coco``).
    """
    gt_json, pred_json = Path(gt_json), Path(pred_json)
    gt = _load_json(gt_json, "ground-truth")
    pred = _load_json(pred_json, "prediction")
    if kind is None:
        kind = _guess_kind(gt)
    problems = validate_panoptic_json(gt, source=str(gt_json), kind=kind, first_only=True)
    if problems:
        raise DataError(problems[0])
    if not isinstance(pred, dict) or not isinstance(pred.get("annotations"), list):
        raise DataError(f"{pred_json}: not a COCO panoptic prediction JSON: needs an 'annotations' list")
    problems = validate_panoptic_json(
        {"annotations": pred["annotations"], "categories": gt["categories"]},
        source=str(pred_json), kind="ade20k", first_only=True, require_images=False, prediction=True,
    )
    if problems:
        raise DataError(problems[0])
    gt_folder = Path(gt_folder) if gt_folder is not None else _default_folder(gt_json)
    pred_folder = Path(pred_folder) if pred_folder is not None else _default_folder(pred_json)
    if not gt_folder.is_dir():
        raise DataError(f"{gt_folder}: ground-truth PNG folder not found (pass gt_folder)")
    if not pred_folder.is_dir():
        raise DataError(f"{pred_folder}: prediction PNG folder not found (pass pred_folder)")
    cm = CategoryMap.from_json(gt["categories"], source=str(gt_json))
    preds = {a["image_id"]: a for a in pred["annotations"]}
    pairs = []
    for a in gt["annotations"]:
        p = preds.get(a["image_id"])
        if p is None:
            raise DataError(f"{pred_json}: no prediction for image {a['image_id']!r}")
        pairs.append((a, p))
    if workers is None:
        workers = os.cpu_count() or 1
    workers = max(1, min(int(workers), len(pairs) or 1))
    total = np.zeros(4 * len(cm.ids))
    job = (pairs, str(gt_folder), str(pred_folder), cm.ids)
    # Contiguous ranges of about 40 images: small enough that a worker slowed down by other jobs
    # on the machine does not hold up the end, large enough that the per-task cost (a pair of
    # ints in, one small array out) is negligible. Forked workers inherit ``pairs``.
    n_chunks = math.ceil(len(pairs) / 40)
    n_chunks = min(n_chunks, len(pairs))
    edges = [round(i * len(pairs) / n_chunks) for i in range(n_chunks + 1)] if n_chunks else [0]
    ranges = [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(pairs), desc="PQ", unit="img")
    global _JOB
    try:
        import multiprocessing as mp

        fork = "fork" in mp.get_all_start_methods()
        if workers == 1:
            for r in ranges:
                total += _eval_range(r, job)
                if bar is not None:
                    bar.update(r[1] - r[0])
        else:
            if fork:
                ctx, task, args = mp.get_context("fork"), _eval_range, ranges
            else:  # spawn: each task carries its images
                ctx, task = None, _eval_chunk
                args = [(pairs[a:b], job[1], job[2], job[3]) for a, b in ranges]
            with _JOB_LOCK:
                _JOB = job if fork else None
                try:
                    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
                        for r, res in zip(ranges, ex.map(task, args)):
                            total += res
                            if bar is not None:
                                bar.update(r[1] - r[0])
                finally:
                    _JOB = None
    finally:
        if bar is not None:
            bar.close()
    return PQStats.from_array(total, cm)


def _guess_kind(gt: Any) -> str:
    try:
        if any(int(c["id"]) == 0 for c in gt["categories"]):
            return "ade20k"
        if any(isinstance(im.get("id"), str) for im in gt["images"]):
            return "ade20k"
    except (KeyError, TypeError, ValueError, AttributeError):
        pass
    return "coco"


def pq_compute(
    gt_json: str | os.PathLike[str],
    pred_json: str | os.PathLike[str],
    gt_folder: str | os.PathLike[str] | None = None,
    pred_folder: str | os.PathLike[str] | None = None,
    *,
    workers: int | None = None,
    progress: bool = False,
    kind: str | None = None,
) -> dict[str, Any]:
    """Evaluate predictions against ground truth in the COCO panoptic format (JSON + PNG folders).

    Same arguments and meaning as the COCO panoptic API's ``pq_compute``: folders default to each
    JSON path without ``.json``; every ground-truth image needs a prediction (extra predictions
    are ignored). Returns ``{"All"|"Things"|"Stuff": {pq, sq, rq, n}, "per_class": {category id:
    {pq, sq, rq, tp, fp, fn, iou}}}`` with scores as fractions. Prints nothing (see
    :func:`format_pq_table`).

    Example::

        res = pq_compute("panoptic_val.json", "pred.json")
        print(format_pq_table(res))
    """
    return pq_compute_stats(gt_json, pred_json, gt_folder, pred_folder, workers=workers,
                            progress=progress, kind=kind).summary()


def format_pq_table(results: Mapping[str, Any]) -> str:
    """The usual table (PQ, SQ, RQ in percent, N) for a :func:`pq_compute` result.

    >>> print(format_pq_table({g: {"pq": 0.5, "sq": 0.75, "rq": 2 / 3, "n": 2} for g in ("All", "Things", "Stuff")}))
              |    PQ     SQ     RQ     N
    --------------------------------------
    All       |  50.0   75.0   66.7     2
    Things    |  50.0   75.0   66.7     2
    Stuff     |  50.0   75.0   66.7     2
    """
    lines = ["{:10s}| {:>5s}  {:>5s}  {:>5s} {:>5s}".format("", "PQ", "SQ", "RQ", "N"), "-" * 38]
    for name, _ in GROUPS:
        r = results[name]
        lines.append("{:10s}| {:5.1f}  {:5.1f}  {:5.1f} {:5d}".format(
            name, 100 * r["pq"], 100 * r["sq"], 100 * r["rq"], r["n"]))
    return "\n".join(lines)
