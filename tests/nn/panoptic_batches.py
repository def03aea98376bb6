"""Tiny hand-made panoptic batches for the supernet tests (imported by tests/nn/test_*.py)."""

from __future__ import annotations

import torch

NUM_THINGS = 2
NUM_STUFF = 3


def make_target(h: int, w: int, boxes: list[tuple[int, int, int, int]], seed: int = 0) -> dict:
    """A target with box-shaped instance masks (labels 1..) and a blocky semantic map (stuff
    0..2, 3 = things under the instances, some 255)."""
    g = torch.Generator().manual_seed(seed)
    n = len(boxes)
    masks = torch.zeros(n, h, w, dtype=torch.uint8)
    semantic = torch.randint(0, NUM_STUFF, (h // 8 + 1, w // 8 + 1), generator=g)
    semantic = semantic.repeat_interleave(8, 0).repeat_interleave(8, 1)[:h, :w].clone()
    semantic[: h // 10] = 255
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        masks[i, y0:y1, x0:x1] = 1
        semantic[y0:y1, x0:x1] = NUM_STUFF
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": (torch.arange(n) % NUM_THINGS + 1).to(torch.int64),
        "masks": masks,
        "semantic": semantic,
    }


def make_batch(seed: int = 0, size: tuple[int, int] = (64, 64), empty_second: bool = True):
    """Two images (the second without instances unless ``empty_second`` is False) and targets."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    images = [torch.rand(3, h, w, generator=g), torch.rand(3, h - 8, w - 16, generator=g)]
    targets = [
        make_target(h, w, [(4, 6, 30, 40), (28, 20, 60, 58)], seed),
        make_target(h - 8, w - 16, [] if empty_second else [(10, 10, 40, 40)], seed + 1),
    ]
    return images, targets
