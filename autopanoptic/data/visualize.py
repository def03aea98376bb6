"""Drawing a panoptic annotation or prediction over its image.

>>> import numpy as np
>>> img = np.zeros((8, 8, 3), np.uint8)
>>> pan = np.zeros((8, 8), np.int32); pan[2:6, 2:6] = 7
>>> out = render_panoptic(img, pan, [{"id": 7, "category_id": 1}])
>>> out.shape, out.dtype
((8, 8, 3), dtype('uint8'))
"""

from __future__ import annotations

import colorsys
import io as _io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from autopanoptic.data.format import CategoryMap
from autopanoptic.errors import DataError
from autopanoptic.io import atomic_write_bytes

__all__ = ["render_panoptic", "save_panoptic_overlay", "segment_colors"]


def _hash_colour(key: int) -> np.ndarray:
    # A stable, well-spread colour for a segment id (golden-ratio hue steps).
    h = (int(key) * 0.6180339887) % 1.0
    return np.array(colorsys.hsv_to_rgb(h, 0.75, 0.95)) * 255


def segment_colors(
    segments: Sequence[Mapping[str, Any]], categories: CategoryMap | None = None, *, jitter: int = 30
) -> dict[int, np.ndarray]:
    """``{segment id: RGB float array}``: the category colour from the JSON when there is one
    (things get a small per-instance jitter so neighbours differ), otherwise a colour per id."""
    out = {}
    for s in segments:
        sid = int(s["id"])
        col = None
        cid = s.get("category_id")
        if categories is not None and cid is not None and cid in categories:
            col = categories.color(cid)
        if col is None:
            out[sid] = _hash_colour(sid if cid is None else sid * 31 + int(cid))
            continue
        c = np.array(col, dtype=np.float64)
        if categories.is_thing(cid) and jitter:
            rng = np.random.default_rng(sid)
            c = np.clip(c + rng.integers(-jitter, jitter + 1, 3), 0, 255)
        out[sid] = c
    return out


def render_panoptic(
    image: np.ndarray | None,
    panoptic: np.ndarray,
    segments: Sequence[Mapping[str, Any]],
    categories: CategoryMap | None = None,
    *,
    alpha: float = 0.55,
    boundaries: bool = True,
) -> np.ndarray:
    """Blend one colour per segment over ``image`` and draw segment boundaries (white).

    ``panoptic``: ``H x W`` segment ids (0 = void, left as the image). ``image=None`` draws on
    black. Returns ``uint8 H x W x 3``. Works for predictions (segments without ``category_id``
    get a colour per id). The engine's report uses it to draw predictions.
    """
    pan = np.asarray(panoptic)
    if pan.ndim != 2:
        raise DataError(f"a panoptic map must be H x W, got shape {pan.shape}")
    h, w = pan.shape
    if image is None:
        base = np.zeros((h, w, 3), np.float64)
    else:
        base = np.asarray(image, dtype=np.float64)
        if base.shape[:2] != (h, w):
            raise DataError(f"image {base.shape[1]}x{base.shape[0]} and panoptic map {w}x{h} differ in size")
    colours = segment_colors(segments, categories)
    ids = np.unique(pan)
    for sid in ids:
        if sid == 0:
            continue
        if int(sid) not in colours:
            colours[int(sid)] = _hash_colour(int(sid))
    out = base.copy()
    lut_ids = np.array([i for i in ids if i != 0], dtype=np.int64)
    if len(lut_ids):
        pos = np.searchsorted(lut_ids, pan)
        np.minimum(pos, len(lut_ids) - 1, out=pos)
        seg = (lut_ids[pos] == pan) & (pan != 0)
        table = np.stack([colours[int(i)] for i in lut_ids])
        out[seg] = (1 - alpha) * base[seg] + alpha * table[pos[seg]]
    if boundaries:
        edge = np.zeros((h, w), bool)
        edge[:, 1:] |= pan[:, 1:] != pan[:, :-1]
        edge[1:, :] |= pan[1:, :] != pan[:-1, :]
        out[edge] = 255.0
    return np.clip(out, 0, 255).astype(np.uint8)


def save_panoptic_overlay(path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> Path:
    """:func:`render_panoptic` and write the result as a PNG (atomically). Returns the path."""
    arr = render_panoptic(*args, **kwargs)
    buf = _io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())
