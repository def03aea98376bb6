"""Image resizing as configuration: ``data.min_size`` / ``data.max_size`` (SPEC: the paper, like
Mask R-CNN and Panoptic FPN, trains at shorter side 800, longer side at most 1333).

An image is scaled (aspect ratio kept) so its shorter side is ``min_size``, unless its longer side
would then exceed ``max_size``, in which case the longer side is ``max_size``. Training with several
``min_size`` values (multi-scale training) draws one per batch, a pure function of ``(seed, k)``, so
resuming needs nothing but the step counter. Images, boxes, instance masks and semantic targets are
resized alike (bilinear for the image, nearest for masks and labels). Evaluation resizes its input
to the largest ``min_size`` and maps the predictions back to the image's own size
(:func:`to_original`), so PQ, AP and mIoU are computed at the ground truth's size.
``min_size: null`` (the ``tiny`` preset) keeps every image as it is.

>>> r = Resize((800,), 1333)
>>> r.output_size(480, 640)
(800, 1067)
>>> r.output_size(400, 1600)   # the longer side bounds it
(333, 1333)
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Resize", "nearest", "resize_pair", "to_original"]


@attrs.frozen
class Resize:
    """Target sizes: ``min_sizes`` (one, or several for multi-scale training) and ``max_size``."""

    min_sizes: tuple[int, ...] = ()
    max_size: int | None = None

    @classmethod
    def from_config(cls, data_cfg: Any) -> Resize:
        """From ``data.min_size`` (``null``, an int or a list) and ``data.max_size``."""
        return cls(tuple(data_cfg.min_size), data_cfg.max_size)

    @property
    def enabled(self) -> bool:
        return bool(self.min_sizes)

    def output_size(self, h: int, w: int, min_size: int | None = None) -> tuple[int, int]:
        """The ``(height, width)`` an ``h x w`` image is resized to (itself when disabled)."""
        if not self.enabled:
            return h, w
        m = max(self.min_sizes) if min_size is None else min_size
        s = m / min(h, w)
        if self.max_size is not None and max(h, w) * s > self.max_size:
            s = self.max_size / max(h, w)
        return max(1, int(round(h * s))), max(1, int(round(w * s)))

    def for_batch(self, k: int, seed: int) -> int | None:
        """The shorter side of training batch ``k`` (drawn when there are several)."""
        if not self.enabled:
            return None
        if len(self.min_sizes) == 1:
            return self.min_sizes[0]
        return self.min_sizes[int(np.random.default_rng([seed, 19, k]).integers(len(self.min_sizes)))]


def nearest(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``x`` (``... x H x W``, any dtype) resized to ``size`` by nearest neighbour, by indexing (exact
    for label and id maps of any range; the same pixels as ``F.interpolate(mode="nearest")``)."""
    h, w = x.shape[-2:]
    ys = (torch.arange(size[0], device=x.device) * h // size[0]).clamp(max=h - 1)
    xs = (torch.arange(size[1], device=x.device) * w // size[1]).clamp(max=w - 1)
    return x[..., ys[:, None], xs[None, :]]


def resize_pair(image: torch.Tensor, target: dict[str, torch.Tensor] | None, size: tuple[int, int]):
    """``image`` (``3 x H x W`` float) and its ``target`` resized to ``size`` = ``(h, w)``."""
    h0, w0 = image.shape[-2:]
    if (h0, w0) == tuple(size):
        return image, target
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
    if target is None:
        return image, None
    out = dict(target)
    sy, sx = size[0] / h0, size[1] / w0
    out["boxes"] = target["boxes"] * torch.tensor([sx, sy, sx, sy], dtype=target["boxes"].dtype,
                                                   device=target["boxes"].device)
    out["masks"] = nearest(target["masks"], size)
    out["semantic"] = nearest(target["semantic"], size)
    return image, out


def to_original(out: dict[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    """A network's prediction for a resized image, mapped back to the image's ``(h, w)``: the panoptic
    and semantic maps and instance masks by nearest neighbour, boxes scaled."""
    h, w = out["panoptic"].shape[-2:]
    if (h, w) == tuple(size):
        return out

    inst = dict(out["instances"])
    sy, sx = size[0] / h, size[1] / w
    inst["boxes"] = inst["boxes"] * torch.tensor([sx, sy, sx, sy], dtype=inst["boxes"].dtype, device=inst["boxes"].device)
    inst["masks"] = nearest(inst["masks"], size)
    return {**out, "panoptic": nearest(out["panoptic"], size), "semantic": nearest(out["semantic"], size),
            "instances": inst}
