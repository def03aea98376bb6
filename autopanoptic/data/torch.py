"""Dataset items as the tensors the supernet takes. The only module of ``autopanoptic.data`` that
imports torch (import it explicitly: ``from autopanoptic.data.torch import collate``).

>>> import numpy as np
>>> item = {"image": np.zeros((4, 5, 3), np.uint8), "semantic": np.zeros((4, 5), np.int64),
...         "instances": {"boxes": np.zeros((1, 4), np.float32), "labels": np.array([2]),
...                       "masks": np.zeros((1, 4, 5), np.uint8)}}
>>> image, target = to_tensors(item)
>>> tuple(image.shape), target["labels"].tolist()
((3, 4, 5), [3])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["to_tensors", "collate"]


def to_tensors(item: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One dataset item -> ``(image float 3xHxW in [0, 1], target)``.

    ``target``: ``boxes`` (float32 Nx4), ``labels`` (int64, contiguous thing index **+ 1**, as
    torchvision's detection heads expect; 0 = background), ``masks`` (uint8 NxHxW), ``semantic``
    (int64 HxW, 255 = ignore).
    """
    image = torch.from_numpy(np.ascontiguousarray(item["image"])).permute(2, 0, 1).float().div_(255.0)
    inst = item["instances"]
    target = {
        "boxes": torch.as_tensor(np.asarray(inst["boxes"], np.float32)).reshape(-1, 4),
        "labels": torch.as_tensor(np.asarray(inst["labels"], np.int64)) + 1,
        "masks": torch.as_tensor(np.asarray(inst["masks"], np.uint8)),
        "semantic": torch.as_tensor(np.asarray(item["semantic"], np.int64)),
    }
    return image, target


def collate(items: Sequence[Mapping[str, Any]]) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """A batch for ``supernet(images, targets)``: lists (images may differ in size).

    Usable as ``torch.utils.data.DataLoader(ds, collate_fn=collate)``.
    """
    pairs = [to_tensors(it) for it in items]
    return [p[0] for p in pairs], [p[1] for p in pairs]
