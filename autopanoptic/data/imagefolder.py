"""Image-classification data in torchvision's ImageFolder layout, for backbone pretraining.

Layout (the one ``torchvision.datasets.ImageFolder`` reads, e.g. ImageNet's ``train/``)::

    ROOT/<class name>/<any name>.jpg|.jpeg|.png|.bmp|.webp   (one sub-folder per class)

Classes are the sub-folder names in sorted order (label ``k`` = the ``k``-th name), images are
sorted within a class. :class:`ImageFolderDataset` reads them with PIL (no torch), resized to a
square ``image_size`` (``None`` keeps the stored size). :func:`write_synthetic_classes` writes a
small generated dataset in that layout whose classes a tiny network learns in a few steps: class
``k`` draws shapes of one kind and one colour family over a noisy background.

>>> import tempfile
>>> root = write_synthetic_classes(tempfile.mkdtemp(), num_classes=3, per_class=2, size=16, progress=False)
>>> ds = ImageFolderDataset(root, image_size=8)
>>> len(ds), ds.classes, ds[0]["image"].shape, ds[5]["label"]
(6, ('class_0', 'class_1', 'class_2'), (8, 8, 3), 2)
"""

from __future__ import annotations

import colorsys
import io as _io
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from autopanoptic.data.dataset import item_index
from autopanoptic.data.format import open_image
from autopanoptic.errors import DataError
from autopanoptic.io import atomic_write_bytes

__all__ = ["IMAGE_EXTENSIONS", "ImageFolderDataset", "render_class_image", "split_indices", "write_synthetic_classes"]

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
"""File suffixes read as images (case-insensitive); other files are skipped."""


class ImageFolderDataset:
    """Images in class sub-folders. ``ds[i]`` is a dict: ``image`` (``uint8 H x W x 3`` RGB,
    ``image_size`` square if given), ``label`` (int), ``file_name`` (relative to ``root``).

    Attributes: ``root``, ``classes`` (names, sorted), ``samples`` (``(relative path, label)``).
    Errors (:class:`~autopanoptic.errors.DataError`) for a missing folder, no class folders, a class
    folder without images, or an unreadable image.
    """

    def __init__(self, root: str | os.PathLike[str], image_size: int | None = None):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataError(f"{self.root}: image-classification folder not found (expected ROOT/<class>/<image>)")
        if image_size is not None and int(image_size) < 1:
            raise DataError(f"image_size must be positive, got {image_size}")
        self.image_size = None if image_size is None else int(image_size)
        classes = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise DataError(
                f"{self.root}: no class sub-folders; an ImageFolder dataset has one folder of images per class "
                "(generate one with `autopanoptic data synth-classes`)"
            )
        samples: list[tuple[str, int]] = []
        for label, name in enumerate(classes):
            files = sorted(
                p for p in (self.root / name).iterdir()
                if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )  # fmt: skip
            if not files:
                raise DataError(f"{self.root / name}: class folder without images ({', '.join(IMAGE_EXTENSIONS)})")
            samples += [(f"{name}/{p.name}", label) for p in files]
        self.classes: tuple[str, ...] = tuple(classes)
        self.samples: tuple[tuple[str, int], ...] = tuple(samples)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        rel, label = self.samples[item_index(i, len(self))]
        path = self.root / rel
        try:
            with open_image(path) as im:
                im = im.convert("RGB")
                if self.image_size is not None and im.size != (self.image_size, self.image_size):
                    im = im.resize((self.image_size, self.image_size), Image.BILINEAR)
                image = np.asarray(im)
        except DataError:
            raise
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: cannot read the image ({e})") from None
        return {"image": image, "label": label, "file_name": rel}


def split_indices(n: int, val_fraction: float, seed: int = 0) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(train, val)`` index tuples: a seeded permutation, the last ``val_fraction`` held out
    (none if ``val_fraction`` is 0; at least one training image always remains).

    >>> split_indices(10, 0.2, seed=1)[1] == split_indices(10, 0.2, seed=1)[1]
    True
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    perm = [int(i) for i in np.random.default_rng([seed, 17]).permutation(n)]
    n_val = min(int(round(val_fraction * n)), n - 1)
    if n_val <= 0:
        return tuple(sorted(perm)), ()
    return tuple(sorted(perm[:-n_val])), tuple(sorted(perm[-n_val:]))


def _class_colour(k: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    hue = (k / max(num_classes, 1) + rng.normal(0, 0.02)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.8 + 0.2 * rng.random(), 0.7 + 0.3 * rng.random())
    return np.array([r, g, b]) * 255.0


def render_class_image(label: int, index: int, *, num_classes: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Image ``index`` of class ``label`` (``uint8 size x size x 3``), a pure function of its arguments:
    one to three shapes of kind ``label % 4`` (disc, square, horizontal bars, vertical bars) in the
    class's colour family over a grey noisy background.

    >>> render_class_image(1, 0, num_classes=4, size=16).shape
    (16, 16, 3)
    """
    rng = np.random.default_rng([seed, 23, label, index])
    img = 90.0 + 40.0 * rng.random() + rng.normal(0, 18.0, (size, size, 3))
    yy, xx = np.mgrid[0:size, 0:size]
    kind = label % 4
    for _ in range(int(rng.integers(1, 4))):
        r = size * (0.15 + 0.2 * rng.random())
        cy, cx = rng.uniform(r, size - r, 2)
        if kind == 0:
            m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        elif kind == 1:
            m = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
        elif kind == 2:
            m = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= 1.5 * r) & ((yy // 2) % 2 == 0)
        else:
            m = (np.abs(yy - cy) <= 1.5 * r) & (np.abs(xx - cx) <= r) & ((xx // 2) % 2 == 0)
        img[m] = _class_colour(label, num_classes, rng) + rng.normal(0, 8.0, (int(m.sum()), 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_synthetic_classes(
    out: str | os.PathLike[str],
    num_classes: int = 4,
    per_class: int = 16,
    *,
    size: int = 32,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write a generated ImageFolder dataset (``OUT/class_<k>/<i>.png``) and return ``OUT``.

    Each image is written atomically; the content depends only on ``(seed, class, index)``.
    """
    if num_classes < 2:
        raise DataError(f"a classification dataset needs at least 2 classes, got {num_classes}")
    if per_class < 1 or size < 8:
        raise DataError(f"need per_class >= 1 and size >= 8, got per_class={per_class}, size={size}")
    out = Path(out).expanduser()
    jobs = [(k, i) for k in range(num_classes) for i in range(per_class)]
    it: Any = jobs
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(jobs, desc="synth-classes", unit="img", dynamic_ncols=True)
    width = len(str(num_classes - 1))
    for k, i in it:
        img = render_class_image(k, i, num_classes=num_classes, size=size, seed=seed)
        buf = _io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        atomic_write_bytes(out / f"class_{k:0{width}d}" / f"{i:05d}.png", buf.getvalue())
    return out
