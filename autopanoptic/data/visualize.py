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

__all__ = ["render_panoptic", "save_panoptic_overlay", "segment_colors", "show_annotation"]


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


def show_annotation(
    json_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    image_id: Any = None,
    index: int = 0,
    image_dir: str | os.PathLike[str] | None = None,
    png_dir: str | os.PathLike[str] | None = None,
    categories_json: str | os.PathLike[str] | None = None,
) -> Path:
    """Draw one annotation (or prediction) of a COCO panoptic JSON over its image, as a PNG.

    ``json_path``: ground truth or predictions (predictions may lack ``images`` / ``categories``:
    pass ``categories_json``, e.g. the ground-truth JSON, for category colours). The image is
    ``image_dir / <file_name from images>`` (or the PNG name with ``.jpg``); without
    ``image_dir`` the segments are drawn on black. Returns the written path.
    """
    import json as _json

    from autopanoptic.data.dataset import read_image
    from autopanoptic.data.format import read_panoptic_png

    json_path = Path(json_path)
    try:
        data = _json.loads(json_path.read_text())
    except FileNotFoundError:
        raise DataError(f"{json_path}: JSON not found") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{json_path}: not valid JSON ({e})") from None
    anns = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(anns, list) or not anns:
        raise DataError(f"{json_path}: not a COCO panoptic JSON (no 'annotations')")
    if image_id is not None:
        match = [a for a in anns if str(a.get("image_id")) == str(image_id)]
        if not match:
            raise DataError(f"{json_path}: no annotation for image id {image_id!r}")
        ann = match[0]
    else:
        if not -len(anns) <= index < len(anns):
            raise DataError(f"{json_path}: index {index} out of range ({len(anns)} annotations)")
        ann = anns[index]
    cats = None
    cat_src = data.get("categories") if categories_json is None else None
    if categories_json is not None:
        try:
            cat_src = _json.loads(Path(categories_json).read_text())
        except (OSError, ValueError) as e:
            raise DataError(f"{categories_json}: cannot read categories ({e})") from None
        cat_src = cat_src.get("categories") if isinstance(cat_src, dict) else cat_src
    if cat_src:
        cats = CategoryMap.from_json(cat_src, source=str(categories_json or json_path))
    png_dir = Path(png_dir) if png_dir is not None else json_path.with_suffix("")
    pan = read_panoptic_png(png_dir / ann["file_name"])
    image = None
    if image_dir is not None:
        names = [im["file_name"] for im in data.get("images", []) if im.get("id") == ann.get("image_id")]
        name = names[0] if names else Path(ann["file_name"]).with_suffix(".jpg").name
        image = read_image(Path(image_dir) / name)
        if image.shape[:2] != pan.shape:
            raise DataError(f"{Path(image_dir) / name}: image size differs from its panoptic PNG {ann['file_name']}")
    return save_panoptic_overlay(out, image, pan, ann.get("segments_info", []), cats)
