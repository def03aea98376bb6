"""Panoptic fusion: instance masks and a semantic map into one panoptic segmentation (SPEC.md s. 4).

The rules of Panoptic FPN / panopticapi's ``combine``:

1. keep instances with ``score >= score_threshold`` (0.5), paste them in order of score, highest
   first (ties keep their input order);
2. skip an instance when more than ``overlap_threshold`` (50%) of its mask is already covered;
   otherwise it takes only its still-free pixels;
3. fill the free pixels with the semantic prediction's stuff classes, one segment per stuff class,
   dropping a stuff segment smaller than the minimum area; pixels predicted as "thing" by the
   semantic branch, and everything else left, stay void (id 0).

The minimum stuff area is ``stuff_area`` (4096) at the reference image area
:data:`COCO_REFERENCE_AREA` (``640 x 480``, the typical size of a COCO image, at which Panoptic FPN
applies 4096 after resizing its predictions back to the original image), scaled with the image:
``stuff_area * H * W / reference_area``. A ``128 x 128`` image therefore needs 218 pixels.

>>> import torch
>>> masks = torch.zeros(2, 4, 4, dtype=torch.bool)
>>> masks[0, :2] = True; masks[1, 1:3] = True  # half of instance 2 is covered: kept
>>> sem = torch.zeros(4, 4, dtype=torch.int64)
>>> pan, segs = panoptic_fusion(masks, torch.tensor([0.9, 0.8]), torch.tensor([3, 1]), sem, num_stuff=1,
...                             stuff_area=0)
>>> pan.tolist()
[[1, 1, 1, 1], [1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3]]
>>> [(s["id"], s["label"], s["isthing"]) for s in segs]
[(1, 3, True), (2, 1, True), (3, 0, False)]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["COCO_REFERENCE_AREA", "min_stuff_area", "panoptic_fusion"]

COCO_REFERENCE_AREA: int = 640 * 480
"""Image area (pixels) at which the stuff area threshold of 4096 pixels applies."""


def min_stuff_area(height: int, width: int, stuff_area: float = 4096, reference_area: float = COCO_REFERENCE_AREA) -> float:
    """Minimum stuff-segment area for an image of ``height x width`` pixels.

    >>> min_stuff_area(480, 640), round(min_stuff_area(128, 128), 1)
    (4096.0, 218.5)
    """
    return float(stuff_area) * height * width / float(reference_area)


def _tensor(x: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(dtype) if dtype is not None else t


def panoptic_fusion(
    masks: Any,
    scores: Any,
    labels: Any,
    semantic: Any,
    num_stuff: int,
    *,
    score_threshold: float = 0.5,
    overlap_threshold: float = 0.5,
    stuff_area: float = 4096,
    reference_area: float = COCO_REFERENCE_AREA,
) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Fuse instance and semantic predictions of one image.

    Args:
        masks: ``N x H x W`` binary instance masks (bool / 0-1; tensor or array).
        scores: ``N`` instance scores.
        labels: ``N`` contiguous thing indices (``0..T-1``).
        semantic: ``H x W`` semantic prediction: stuff index ``0..S-1``; ``S`` (= ``num_stuff``)
            means "any thing" and is never turned into a stuff segment; other values are ignored.
        num_stuff: ``S``.
        score_threshold, overlap_threshold, stuff_area, reference_area: see the module docstring.

    Returns:
        ``(panoptic, segments)``: ``panoptic`` an ``int32 H x W`` tensor of segment ids (0 = void)
        on the device of ``semantic``; ``segments`` a list of ``{"id", "label", "isthing", "score"}``
        (``label`` contiguous: thing index or stuff index; stuff segments have score 1.0), ids
        ``1, 2, ...`` in paste order (things first).
    """
    semantic = _tensor(semantic, torch.int64)
    if semantic.dim() != 2:
        raise ValueError(f"semantic must be H x W, got shape {tuple(semantic.shape)}")
    h, w = semantic.shape
    device = semantic.device
    masks = _tensor(masks).to(device=device).bool()
    if masks.numel() == 0:
        masks = masks.reshape(0, h, w)
    scores = _tensor(scores, torch.float32).to(device).reshape(-1)
    labels = _tensor(labels, torch.int64).to(device).reshape(-1)
    if masks.dim() != 3 or tuple(masks.shape[1:]) != (h, w) or not (len(masks) == len(scores) == len(labels)):
        raise ValueError(
            f"masks must be N x {h} x {w} with N scores and labels; got masks {tuple(masks.shape)}, "
            f"{len(scores)} scores, {len(labels)} labels"
        )

    panoptic = torch.zeros((h, w), dtype=torch.int32, device=device)
    taken = torch.zeros((h, w), dtype=torch.bool, device=device)
    segments: list[dict[str, Any]] = []
    next_id = 1
    order = torch.argsort(-scores, stable=True)
    for i in order.tolist():
        score = float(scores[i])
        if score < score_threshold:
            continue
        mask = masks[i]
        area = int(mask.sum())
        if area == 0:
            continue
        overlap = int((mask & taken).sum())
        if overlap > overlap_threshold * area:
            continue
        free = mask & ~taken
        if not bool(free.any()):
            continue
        panoptic[free] = next_id
        taken |= free
        segments.append({"id": next_id, "label": int(labels[i]), "isthing": True, "score": score})
        next_id += 1

    min_area = min_stuff_area(h, w, stuff_area, reference_area)
    for cls in torch.unique(semantic).tolist():
        if not 0 <= cls < num_stuff:
            continue
        region = (semantic == cls) & ~taken
        if float(region.sum()) < min_area or not bool(region.any()):
            continue
        panoptic[region] = next_id
        taken |= region
        segments.append({"id": next_id, "label": int(cls), "isthing": False, "score": 1.0})
        next_id += 1
    return panoptic, segments
