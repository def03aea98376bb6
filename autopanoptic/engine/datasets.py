"""Datasets for a run: opening them from the config, the splits, and batches as tensors.

The splits are index lists into one dataset, drawn by a seeded permutation:

- ``eval``: the evaluation split -- a separate dataset (``data.eval_root``) or the last
  ``data.eval_fraction`` of the permuted images; never used by training or search;
- ``train``: the rest; the supernet and the retrained network learn on all of it;
- ``val``: ``data.val_fraction`` of ``train``: the search's fitness is PQ on it (the paper's
  "5000 COCO train images");
- ``calib``: a fixed subset of ``train`` minus ``val``, for BatchNorm recalibration.

:func:`batch_indices` gives the images of the ``k``-th batch of a seeded, epoch-wise shuffled
stream; it is a pure function of ``(seed, k)`` (and ``rank`` / ``world_size``, for a later
distributed run), so resuming needs nothing but the step counter.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from autopanoptic.config import DataConfig
from autopanoptic.errors import DataError

__all__ = ["Splits", "batch_indices", "flips_for", "load_batch", "make_splits", "open_dataset", "to_tensors"]


@attrs.frozen
class Splits:
    """Index lists into the training dataset (``train``, ``val``, ``calib``) and the evaluation one."""

    train: tuple[int, ...]
    val: tuple[int, ...]
    calib: tuple[int, ...]
    eval: tuple[int, ...]

    def to_json(self) -> dict[str, list[int]]:
        return {k: list(v) for k, v in attrs.asdict(self).items()}


def open_dataset(root: str | Path, images: str, json_name: str, pngs: str, kind: str):
    """A :class:`autopanoptic.data.PanopticDataset` from a folder and its relative paths, with a clear
    error naming the folder when something is missing."""
    from autopanoptic.data import PanopticDataset

    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist; set data.root (or generate the synthetic dataset with data.root=null)")
    for rel, what in ((images, "images folder"), (json_name, "panoptic JSON"), (pngs, "panoptic PNG folder")):
        if not (root / rel).exists():
            raise DataError(f"{root / rel}: {what} not found in dataset folder {root}")
    return PanopticDataset(root / images, root / json_name, root / pngs, kind=kind)


def make_splits(n_train_source: int, cfg: DataConfig, *, n_eval_source: int | None = None, calib_images: int = 8) -> Splits:
    """Seeded splits (see the module docstring). ``n_eval_source`` is the size of a separate
    evaluation dataset, or ``None`` to carve the evaluation split out of the training source.

    >>> s = make_splits(20, DataConfig(eval_fraction=0.25, val_fraction=0.25), calib_images=4)
    >>> len(s.eval), len(s.train), len(s.val), len(s.calib), set(s.eval) & set(s.train)
    (5, 15, 4, 4, set())
    """
    perm = [int(i) for i in np.random.default_rng([cfg.split_seed, 7]).permutation(n_train_source)]
    if n_eval_source is None:
        n_eval = max(1, int(round(cfg.eval_fraction * n_train_source)))
        if n_train_source - n_eval < 2:
            raise DataError(f"the dataset has {n_train_source} images: too few to carve an evaluation split; add images")
        eval_idx, train_idx = tuple(sorted(perm[-n_eval:])), perm[:-n_eval]
    else:
        eval_idx, train_idx = tuple(range(n_eval_source)), perm
    n_val = max(1, int(round(cfg.val_fraction * len(train_idx))))
    if len(train_idx) - n_val < 1:
        raise DataError(f"{len(train_idx)} training images: too few to carve a search validation split")
    val_idx = tuple(sorted(train_idx[-n_val:]))
    rest = train_idx[:-n_val]
    calib_idx = tuple(sorted(rest[: max(1, min(calib_images, len(rest)))]))
    return Splits(train=tuple(sorted(train_idx)), val=val_idx, calib=calib_idx, eval=eval_idx)


def batch_indices(pool: Sequence[int], batch_size: int, k: int, *, seed: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """Images of batch ``k`` for ``rank``: epochs are seeded permutations of ``pool`` laid end to end;
    global batch ``k`` covers ``batch_size * world_size`` consecutive positions and each rank takes its
    own ``batch_size`` of them.

    >>> batch_indices(range(10), 3, 0, seed=0) == batch_indices(range(10), 3, 0, seed=0)
    True
    """
    pool = list(pool)
    n = len(pool)
    if n == 0:
        raise DataError("no training images")
    start = (k * world_size + rank) * batch_size
    out = []
    for pos in range(start, start + batch_size):
        epoch, offset = divmod(pos, n)
        perm = np.random.default_rng([seed, 11, epoch]).permutation(n)
        out.append(pool[int(perm[offset])])
    return out


def flips_for(k: int, batch_size: int, *, seed: int, enabled: bool = True) -> list[bool]:
    """Horizontal-flip decisions for batch ``k`` (pure function of ``seed`` and ``k``)."""
    if not enabled:
        return [False] * batch_size
    rng = np.random.default_rng([seed, 13, k])
    return [bool(x) for x in rng.random(batch_size) < 0.5]


def to_tensors(sample: dict[str, Any], *, flip: bool = False, device: torch.device | str = "cpu",
               resize: Any = None, min_size: int | None = None):
    """One dataset sample as ``(image, target)`` for the networks: a float image ``3 x H x W`` in
    ``[0, 1]``, and ``boxes``, ``labels`` (thing index + 1), ``masks``, ``semantic``; resized by
    ``resize`` (a :class:`~autopanoptic.engine.resize.Resize`; shorter side ``min_size``, default its
    largest) when given."""
    image = np.asarray(sample["image"])
    inst = sample["instances"]
    boxes = np.asarray(inst["boxes"], dtype=np.float32).reshape(-1, 4)
    masks = np.asarray(inst["masks"], dtype=np.uint8)
    semantic = np.asarray(sample["semantic"], dtype=np.int64)
    if flip:
        w = image.shape[1]
        image = image[:, ::-1]
        masks = masks[..., ::-1]
        semantic = semantic[:, ::-1]
        boxes = boxes.copy()
        boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
    img = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div_(255.0)
    target = {
        "boxes": torch.from_numpy(np.ascontiguousarray(boxes)),
        "labels": torch.as_tensor(np.asarray(inst["labels"], dtype=np.int64) + 1),
        "masks": torch.from_numpy(np.ascontiguousarray(masks)),
        "semantic": torch.from_numpy(np.ascontiguousarray(semantic)),
    }
    if resize is not None and resize.enabled:
        from autopanoptic.engine.resize import resize_pair

        img, target = resize_pair(img, target, resize.output_size(*img.shape[-2:], min_size))
    return img.to(device), {k: v.to(device) for k, v in target.items()}


def load_batch(dataset, indices: Sequence[int], *, flips: Sequence[bool] | None = None, device: torch.device | str = "cpu",
               resize: Any = None, min_size: int | None = None):
    """``(images, targets)`` lists for the given dataset indices (resized as :func:`to_tensors`)."""
    flips = flips if flips is not None else [False] * len(indices)
    images, targets = [], []
    for i, f in zip(indices, flips):
        img, tgt = to_tensors(dataset[int(i)], flip=f, device=device, resize=resize, min_size=min_size)
        images.append(img)
        targets.append(tgt)
    return images, targets
