"""Metrics beside PQ: box / mask AP of the instance branch and mIoU of the semantic branch.

numpy + pycocotools only (no torch), so an evaluation loop converts its tensors to numpy first.

**AP** (:class:`APRecords`, :func:`ap_records`, :func:`ap_records_from_sample`, :func:`instance_ap`):
the instance branch's detections are scored with pycocotools' ``COCOeval`` on the *thing*
categories only, once with boxes (``bbox``) and once with masks (``segm``). Ground truth per image
is what :class:`~autopanoptic.data.PanopticDataset` gives (``instances``: boxes ``xyxy``,
contiguous labels, binary masks) plus the crowd segments of thing categories (which the dataset
leaves out of ``instances``) as ``iscrowd = 1`` regions: a detection on a crowd region is neither a
true nor a false positive, as in COCO. Everything is converted to the COCO format in memory (masks
as RLE through ``pycocotools.mask``); the COCO category id of contiguous label ``l`` is ``l + 1``
and image ids are assigned in record order, so any image ids (ints or ADE20K strings) work.
Records of different images (or processes) merge with ``+``.

**mIoU** (:class:`SemanticConfusion`, :func:`semantic_confusion`): a confusion matrix over the
semantic classes (stuff ``0..S-1`` and ``S`` = "any thing"), accumulated across images; ``255`` in
the ground truth is ignored. Matrices add (``+``, or ``to_array`` / ``from_array`` for an
``all_reduce``). IoU of class ``c`` = ``tp / (tp + fp + fn)``; the mean is taken over the classes
that occur in the ground truth or the prediction (``tp + fp + fn > 0``), as detectron2 does.

>>> import numpy as np
>>> gt = np.array([[0, 0, 1, 1], [0, 0, 1, 255]])
>>> pred = np.array([[0, 0, 1, 0], [0, 0, 1, 0]])
>>> round(semantic_confusion(gt, pred, 2).summary()["miou"], 4)   # IoU 4/5 and 2/3
0.7333
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from autopanoptic.errors import DataError

__all__ = [
    "AP_KEYS",
    "APRecords",
    "SemanticConfusion",
    "ap_records",
    "ap_records_from_sample",
    "crowd_instances",
    "format_metrics_table",
    "instance_ap",
    "json_safe",
    "semantic_class_names",
    "semantic_confusion",
]

IGNORE = 255
AP_KEYS: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl")
"""The summary numbers of :func:`instance_ap` (``COCOeval.stats[0:6]``), as fractions in ``[0, 1]``."""


# ---- AP ------------------------------------------------------------------------------------------
@attrs.frozen
class APRecords:
    """Ground truth and detections of some images, in COCO form (RLE masks); merge with ``+``.

    ``images`` is a tuple of ``(image_key, height, width, gts, dets)``; ``gts`` entries are dicts
    with ``label``, ``bbox`` (COCO ``xywh``), ``segmentation`` (RLE), ``area``, ``iscrowd``;
    ``dets`` entries have ``label``, ``bbox``, ``segmentation``, ``score``. Plain picklable data,
    so distributed ranks can gather and add them.
    """

    images: tuple[tuple[Any, int, int, tuple[dict[str, Any], ...], tuple[dict[str, Any], ...]], ...] = ()

    def __add__(self, other: APRecords) -> APRecords:
        if not isinstance(other, APRecords):
            return NotImplemented
        return APRecords(self.images + other.images)

    def __len__(self) -> int:
        return len(self.images)

    @classmethod
    def concat(cls, parts: Sequence[APRecords]) -> APRecords:
        """All ``parts`` in one (linear time; repeated ``+`` in a loop is quadratic).

        >>> len(APRecords.concat([APRecords(), APRecords()]))
        0
        """
        return cls(tuple(im for p in parts for im in p.images))


def _rle(mask: np.ndarray) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return rle


def _xyxy_to_xywh(box: Sequence[float]) -> list[float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def _mask_box(mask: np.ndarray) -> list[float]:
    ys = np.nonzero(mask.any(axis=1))[0]
    xs = np.nonzero(mask.any(axis=0))[0]
    if len(ys) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs[0]), float(ys[0]), float(xs[-1] + 1 - xs[0]), float(ys[-1] + 1 - ys[0])]


def _as_masks(masks: Any, n: int, h: int, w: int, what: str, source: str) -> np.ndarray:
    m = np.asarray(masks)
    if n == 0 and m.size == 0:
        return np.zeros((0, h, w), dtype=np.uint8)
    if m.shape != (n, h, w):
        raise DataError(f"{source}: {what} masks have shape {m.shape}, expected {(n, h, w)} (N x H x W, binary)")
    return (m > 0).astype(np.uint8) if m.dtype != np.bool_ else m.astype(np.uint8)


def ap_records(
    image_key: Any,
    height: int,
    width: int,
    gt: Mapping[str, Any],
    pred: Mapping[str, Any],
    *,
    crowd: Mapping[str, Any] | None = None,
    source: str = "<image>",
) -> APRecords:
    """The :class:`APRecords` of one image.

    Args:
        gt: ``boxes`` (``N x 4`` xyxy pixels), ``labels`` (contiguous thing index), ``masks``
            (``N x H x W`` binary) -- the dataset item's ``instances``.
        pred: ``boxes`` (xyxy), ``scores``, ``labels`` (contiguous thing index, *not* + 1),
            ``masks`` (``M x H x W`` binary, already pasted into the image and thresholded).
        crowd: optional crowd regions, ``labels`` and ``masks`` (see :func:`crowd_instances`).

    >>> import numpy as np
    >>> m = np.zeros((1, 4, 4), np.uint8); m[0, :2, :2] = 1
    >>> gt = {"boxes": [[0, 0, 2, 2]], "labels": [0], "masks": m}
    >>> pred = {"boxes": [[0, 0, 2, 2]], "scores": [0.9], "labels": [0], "masks": m}
    >>> len(ap_records("a", 4, 4, gt, pred))
    1
    """
    h, w = int(height), int(width)
    gts: list[dict[str, Any]] = []
    dets: list[dict[str, Any]] = []
    g_boxes = np.asarray(gt.get("boxes", np.zeros((0, 4))), dtype=np.float64).reshape(-1, 4)
    g_labels = np.asarray(gt.get("labels", []), dtype=np.int64).reshape(-1)
    if len(g_boxes) != len(g_labels):
        raise DataError(f"{source}: {len(g_boxes)} ground-truth boxes but {len(g_labels)} labels")
    g_masks = _as_masks(gt.get("masks", np.zeros((0, h, w))), len(g_labels), h, w, "ground-truth", source)
    for box, label, mask in zip(g_boxes, g_labels, g_masks):
        gts.append({"label": int(label), "bbox": _xyxy_to_xywh(box), "segmentation": _rle(mask),
                    "area": float(mask.sum()), "iscrowd": 0})
    if crowd is not None:
        c_labels = np.asarray(crowd.get("labels", []), dtype=np.int64).reshape(-1)
        c_masks = _as_masks(crowd.get("masks", np.zeros((0, h, w))), len(c_labels), h, w, "crowd", source)
        for label, mask in zip(c_labels, c_masks):
            gts.append({"label": int(label), "bbox": _mask_box(mask), "segmentation": _rle(mask),
                        "area": float(mask.sum()), "iscrowd": 1})
    p_boxes = np.asarray(pred.get("boxes", np.zeros((0, 4))), dtype=np.float64).reshape(-1, 4)
    p_scores = np.asarray(pred.get("scores", []), dtype=np.float64).reshape(-1)
    p_labels = np.asarray(pred.get("labels", []), dtype=np.int64).reshape(-1)
    if not len(p_boxes) == len(p_scores) == len(p_labels):
        raise DataError(
            f"{source}: predictions have {len(p_boxes)} boxes, {len(p_scores)} scores and {len(p_labels)} labels; "
            "they must have one of each per detection"
        )
    p_masks = _as_masks(pred.get("masks", np.zeros((0, h, w))), len(p_labels), h, w, "predicted", source)
    for box, score, label, mask in zip(p_boxes, p_scores, p_labels, p_masks):
        dets.append({"label": int(label), "bbox": _xyxy_to_xywh(box), "segmentation": _rle(mask),
                     "score": float(score)})
    return APRecords(((image_key, h, w, tuple(gts), tuple(dets)),))


def crowd_instances(sample: Mapping[str, Any], categories: Any) -> dict[str, np.ndarray]:
    """The crowd segments of thing categories of a dataset item (``panoptic`` + ``segments``), as
    ``labels`` (contiguous thing index) and ``masks`` (``N x H x W`` uint8)."""
    pan = np.asarray(sample["panoptic"])
    labels, masks = [], []
    for s in sample["segments"]:
        if int(s.get("iscrowd", 0)) != 1 or not categories.is_thing(int(s["category_id"])):
            continue
        label, _ = categories.from_category_id(int(s["category_id"]))
        labels.append(label)
        masks.append(pan == int(s["id"]))
    h, w = pan.shape
    return {"labels": np.asarray(labels, dtype=np.int64), "masks": np.asarray(masks, dtype=np.uint8).reshape(-1, h, w)}


def ap_records_from_sample(sample: Mapping[str, Any], pred: Mapping[str, Any], categories: Any) -> APRecords:
    """:func:`ap_records` for a :class:`~autopanoptic.data.PanopticDataset` item: its ``instances``
    plus its crowd thing segments (when the item carries ``panoptic`` and ``segments``)."""
    crowd = crowd_instances(sample, categories) if "panoptic" in sample and "segments" in sample else None
    h, w = int(sample["height"]), int(sample["width"])
    return ap_records(sample["image_id"], h, w, sample["instances"], pred, crowd=crowd,
                      source=str(sample.get("file_name", sample["image_id"])))


def _coco(images: list[dict[str, Any]], anns: list[dict[str, Any]], cats: list[dict[str, Any]]):
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns, "categories": cats}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _nan(x: float) -> float:
    return math.nan if x < 0 else float(x)


def instance_ap(
    records: APRecords,
    num_things: int,
    *,
    iou_types: Sequence[str] = ("bbox", "segm"),
    names: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Box and mask AP of ``records`` with pycocotools' ``COCOeval`` (thing classes ``0..num_things-1``).

    Returns ``{iou_type: {"AP", "AP50", "AP75", "APs", "APm", "APl", "per_class": {name: {"AP",
    "AP50"}}, "n": classes with ground truth}}``, fractions in ``[0, 1]``; ``nan`` where COCOeval has
    nothing to average (no ground truth at all, or none of that area range). A class without ground
    truth is left out of the means (COCO's rule), its detections do not count anywhere.

    >>> import numpy as np
    >>> m = np.zeros((1, 8, 8), np.uint8); m[0, 2:6, 2:6] = 1
    >>> inst = {"boxes": [[2, 2, 6, 6]], "labels": [0], "masks": m}
    >>> r = ap_records(1, 8, 8, inst, {**inst, "scores": [0.8]})
    >>> round(instance_ap(r, 1)["segm"]["AP"], 6)
    1.0
    """
    from pycocotools.cocoeval import COCOeval

    T = int(num_things)
    if T < 1:
        raise DataError("instance AP needs at least one thing category")
    names = list(names) if names is not None else [str(i) for i in range(T)]
    if len(names) != T:
        raise DataError(f"instance AP: {len(names)} names for {T} thing classes")
    cats = [{"id": i + 1, "name": names[i], "supercategory": "thing"} for i in range(T)]
    images, gts, dets = [], [], []
    for k, (_key, h, w, g, d) in enumerate(records.images):
        iid = k + 1
        images.append({"id": iid, "height": h, "width": w})
        for a in g:
            if not 0 <= a["label"] < T:
                raise DataError(f"image {_key!r}: ground-truth label {a['label']} is not in 0..{T - 1}")
            gts.append({**{k2: v for k2, v in a.items() if k2 != "label"}, "image_id": iid,
                        "category_id": a["label"] + 1, "id": len(gts) + 1})
        for a in d:
            if not 0 <= a["label"] < T:
                raise DataError(f"image {_key!r}: predicted label {a['label']} is not in 0..{T - 1}")
            dets.append({"image_id": iid, "category_id": a["label"] + 1, "bbox": a["bbox"],
                         "segmentation": a["segmentation"], "score": a["score"], "iscrowd": 0})
    out: dict[str, dict[str, Any]] = {}
    gt_coco = _coco(images, gts, cats)
    for iou_type in iou_types:
        if iou_type not in ("bbox", "segm"):
            raise DataError(f"unknown AP type {iou_type!r}; use 'bbox' or 'segm'")
        from pycocotools import mask as mask_utils

        res = []
        for j, a in enumerate(dets):
            bw, bh = a["bbox"][2], a["bbox"][3]
            # As COCO.loadRes: box area for bbox results, mask area for segm results.
            area = float(bw * bh) if iou_type == "bbox" else float(mask_utils.area(a["segmentation"]))
            res.append({**a, "area": area, "id": j + 1})
        dt_coco = _coco(images, res, cats)
        ev = COCOeval(gt_coco, dt_coco, iou_type)
        with contextlib.redirect_stdout(io.StringIO()):
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        result: dict[str, Any] = {key: _nan(v) for key, v in zip(AP_KEYS, ev.stats[:6])}
        # precision: [iou thresholds, recall points, classes, area ranges, max dets]
        prec = ev.eval["precision"]
        per_class = {}
        for c in range(T):
            p_all = prec[:, :, c, 0, -1]
            p50 = prec[0, :, c, 0, -1]
            per_class[names[c]] = {
                "AP": float(p_all[p_all > -1].mean()) if (p_all > -1).any() else math.nan,
                "AP50": float(p50[p50 > -1].mean()) if (p50 > -1).any() else math.nan,
            }
        result["per_class"] = per_class
        result["n"] = sum(1 for v in per_class.values() if not math.isnan(v["AP"]))
        out[iou_type] = result
    return out


# ---- mIoU ----------------------------------------------------------------------------------------
@attrs.frozen(eq=False)
class SemanticConfusion:
    """A ``C x C`` confusion matrix (rows = ground truth, columns = prediction), int64.

    Add two with ``+``; :meth:`to_array` / :meth:`from_array` for an ``all_reduce``.
    """

    matrix: np.ndarray = attrs.field(converter=lambda m: np.asarray(m, dtype=np.int64))

    def __attrs_post_init__(self) -> None:
        m = self.matrix
        if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 1:
            raise DataError(f"a confusion matrix must be square C x C, got shape {m.shape}")

    @classmethod
    def zeros(cls, num_classes: int) -> SemanticConfusion:
        """An empty matrix of ``num_classes`` classes."""
        return cls(np.zeros((int(num_classes), int(num_classes)), dtype=np.int64))

    @property
    def num_classes(self) -> int:
        """``C``."""
        return int(self.matrix.shape[0])

    def __add__(self, other: SemanticConfusion) -> SemanticConfusion:
        if not isinstance(other, SemanticConfusion):
            return NotImplemented
        if other.num_classes != self.num_classes:
            raise DataError(f"cannot add confusion matrices of {self.num_classes} and {other.num_classes} classes")
        return SemanticConfusion(self.matrix + other.matrix)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SemanticConfusion) and np.array_equal(self.matrix, other.matrix)

    def to_array(self) -> np.ndarray:
        """The matrix (a copy), e.g. for ``torch.distributed.all_reduce``."""
        return self.matrix.copy()

    @classmethod
    def from_array(cls, array: Any) -> SemanticConfusion:
        """Inverse of :meth:`to_array` (float arrays from a reduction are rounded)."""
        return cls(np.rint(np.asarray(array, dtype=np.float64)).astype(np.int64))

    def iou(self) -> np.ndarray:
        """Per-class IoU ``tp / (tp + fp + fn)``; ``nan`` for a class absent from both maps."""
        m = self.matrix.astype(np.float64)
        tp = np.diag(m)
        union = m.sum(0) + m.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)

    def summary(self, names: Sequence[str] | None = None) -> dict[str, Any]:
        """``miou`` (mean IoU over classes with ``tp + fp + fn > 0``), ``pixel_accuracy``,
        ``mean_accuracy`` (over classes in the ground truth), ``n`` (classes in the mean),
        ``per_class`` ``{name: iou}``; fractions, ``nan`` when there is nothing to average."""
        names = list(names) if names is not None else [str(i) for i in range(self.num_classes)]
        if len(names) != self.num_classes:
            raise DataError(f"{len(names)} names for {self.num_classes} semantic classes")
        iou = self.iou()
        valid = ~np.isnan(iou)
        m = self.matrix.astype(np.float64)
        gt_pixels = m.sum(1)
        total = m.sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = np.diag(m) / gt_pixels
        return {
            "miou": float(iou[valid].mean()) if valid.any() else math.nan,
            "pixel_accuracy": float(np.trace(m) / total) if total > 0 else math.nan,
            "mean_accuracy": float(acc[gt_pixels > 0].mean()) if (gt_pixels > 0).any() else math.nan,
            "n": int(valid.sum()),
            "per_class": {name: float(v) for name, v in zip(names, iou)},
        }


def semantic_confusion(gt: Any, pred: Any, num_classes: int, *, ignore: int = IGNORE) -> SemanticConfusion:
    """The confusion matrix of one semantic map ``pred`` against ``gt`` (same ``H x W``); pixels
    where ``gt == ignore`` are skipped. Predicted values must lie in ``0..num_classes-1``.

    >>> import numpy as np
    >>> semantic_confusion(np.array([[0, 1]]), np.array([[1, 1]]), 2).matrix.tolist()
    [[0, 1], [0, 1]]
    """
    g = np.asarray(gt).astype(np.int64, copy=False)
    p = np.asarray(pred).astype(np.int64, copy=False)
    C = int(num_classes)
    if g.shape != p.shape:
        raise DataError(f"semantic maps differ in shape: ground truth {g.shape}, prediction {p.shape}")
    keep = g != ignore
    g, p = g[keep], p[keep]
    if g.size and (g.min() < 0 or g.max() >= C):
        raise DataError(f"ground-truth semantic labels must be in 0..{C - 1} or {ignore}, got {int(g.min())}..{int(g.max())}")
    if p.size and (p.min() < 0 or p.max() >= C):
        raise DataError(f"predicted semantic labels must be in 0..{C - 1}, got {int(p.min())}..{int(p.max())}")
    m = np.bincount(g * C + p, minlength=C * C).reshape(C, C)
    return SemanticConfusion(m)


def semantic_class_names(categories: Any) -> list[str]:
    """Names of the semantic classes of a :class:`~autopanoptic.data.CategoryMap`: its stuff names,
    then ``"things"``."""
    return [categories.name(cid) for cid in categories.stuff_ids] + ["things"]


def format_metrics_table(ap: Mapping[str, Mapping[str, Any]] | None, semantic: Mapping[str, Any] | None) -> str:
    """A small text table of :func:`instance_ap` and :meth:`SemanticConfusion.summary` results (in %).

    >>> print(format_metrics_table(None, {"miou": 0.5, "pixel_accuracy": 0.75, "n": 2}))
    semantic  mIoU  50.0  pixel acc  75.0  (2 classes)
    """
    lines = []

    def pct(v: float) -> str:
        return "  nan" if v is None or math.isnan(v) else f"{100 * v:5.1f}"

    for iou_type, label in (("bbox", "box AP "), ("segm", "mask AP")):
        if ap and iou_type in ap:
            r = ap[iou_type]
            lines.append(f"{label}   " + "  ".join(f"{k} {pct(r[k])}" for k in AP_KEYS))
    if semantic is not None:
        lines.append(f"semantic  mIoU {pct(semantic['miou'])}  pixel acc {pct(semantic['pixel_accuracy'])}"
                     f"  ({semantic['n']} classes)")
    return "\n".join(lines)


def json_safe(obj: Any) -> Any:
    """``obj`` with every ``nan`` / infinite float replaced by ``None`` (strict JSON has no NaN), and
    numpy scalars turned into Python numbers; dicts, lists and tuples are walked.

    >>> json_safe({"AP": float("nan"), "n": np.int64(2), "per_class": [0.5]})
    {'AP': None, 'n': 2, 'per_class': [0.5]}
    """
    if isinstance(obj, Mapping):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
