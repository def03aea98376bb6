"""A synthetic COCO-panoptic dataset: textured shapes (things) over textured regions (stuff).

Things are four shape kinds, each with its own colour family and texture, that occlude each
other; stuff is two or three textured regions covering the background; some segments get void
borders, some images a crowd region.

The ``hard`` style (``style="hard"``) makes the architecture matter: seven shape kinds, where the
three new ones take the colour family and texture of an old one -- an elongated ``ellipse`` looks
like a ``circle``, a ``cross`` of thin arms like a ``square``, a thin ``bar`` like a ``triangle`` --
so within each pair only the *shape* tells the class (a receptive field that covers the object is
needed); object sizes spread over a factor of six (radius 5% to 30% of the image side,
log-uniform); up to eight objects; and unannotated clutter (small irregular blobs of random colour
and texture) painted on the stuff regions, which must not be taken for things. Category ids have gaps (like COCO) or, in the ``ade20k``
flavour, start at 0 (a real class), with string image ids and no crowd. Image ``i`` depends only
on ``(seed, i)``: a dataset of 10 images is the prefix of one of 1000.

Files written by :func:`write_synthetic` (the layout of COCO 2017 panoptic)::

    OUT/images/<name>.jpg      RGB JPEG images
    OUT/panoptic/<name>.png    RGB panoptic PNGs, id = R + 256 G + 256^2 B, 0 = void
    OUT/panoptic.json          images, annotations (segments_info), categories

>>> img, pan, segs = render_image(0, 0, size=64)
>>> img.shape, pan.shape, all(s["area"] > 0 for s in segs)
((64, 64, 3), (64, 64), True)
"""

from __future__ import annotations

import colorsys
import io as _io
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from autopanoptic.data.format import KINDS, CategoryMap, load_panoptic_json, write_panoptic_png
from autopanoptic.errors import DataError
from autopanoptic.io import atomic_write_bytes, atomic_write_json

__all__ = [
    "synthetic_categories",
    "render_image",
    "write_synthetic",
    "make_prediction",
    "split_dataset",
    "write_split",
    "write_predictions",
]

# name, isthing, hue of the colour family, COCO-flavour id, ADE-flavour id
_CATEGORIES = (
    ("circle", 1, 0.00, 1, 2),
    ("square", 1, 0.70, 3, 4),
    ("triangle", 1, 0.14, 6, 6),
    ("ring", 1, 0.88, 10, 8),
    ("sky", 0, 0.58, 92, 1),
    ("grass", 0, 0.30, 97, 3),
    ("water", 0, 0.50, 105, 5),
    ("wall", 0, 0.08, 118, 0),
    ("sand", 0, 0.12, 130, 7),
)
# the ``hard`` style's extra things (same columns)
_HARD_EXTRA = (
    ("bar", 1, 0.36, 13, 9),
    ("cross", 1, 0.45, 15, 10),
    ("ellipse", 1, 0.78, 17, 11),
)
_THINGS = tuple(c[0] for c in _CATEGORIES if c[1])
_STUFF = tuple(c[0] for c in _CATEGORIES if not c[1])
_HARD_THINGS = _THINGS + tuple(c[0] for c in _HARD_EXTRA)
STYLES: tuple[str, ...] = ("basic", "hard")
"""Synthetic dataset styles: ``basic`` (colour and texture give the class away) and ``hard``."""
_PATTERNS = ("dots", "checker", "stripes", "plain")
_PATTERN_OF = {"circle": "dots", "square": "checker", "triangle": "stripes", "ring": "plain"}
_TWIN_OF = {"ellipse": "circle", "cross": "square", "bar": "triangle"}  # hard style: same colour and texture


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise DataError(f"unknown dataset kind {kind!r}; use one of {list(KINDS)}")


def _check_style(style: str) -> None:
    if style not in STYLES:
        raise DataError(f"unknown synthetic style {style!r}; use one of {list(STYLES)}")


def synthetic_categories(kind: str = "coco", style: str = "basic") -> list[dict[str, Any]]:
    """The JSON ``categories`` of the synthetic dataset (4 things, 5 stuff; the ``hard`` style has
    7 things).

    >>> [c["id"] for c in synthetic_categories()]
    [1, 3, 6, 10, 92, 97, 105, 118, 130]
    >>> min(c["id"] for c in synthetic_categories("ade20k"))
    0
    >>> sum(c["isthing"] for c in synthetic_categories(style="hard"))
    7
    """
    _check_kind(kind)
    _check_style(style)
    out = []
    for name, th, hue, coco_id, ade_id in _CATEGORIES + (_HARD_EXTRA if style == "hard" else ()):
        r, g, b = colorsys.hsv_to_rgb(hue, 0.8 if th else 0.45, 0.95 if th else 0.75)
        out.append({
            "id": coco_id if kind == "coco" else ade_id,
            "name": name,
            "supercategory": "shape" if th else "region",
            "isthing": th,
            "color": [int(255 * r), int(255 * g), int(255 * b)],
        })
    out.sort(key=lambda c: c["id"])
    return out


# ----------------------------------------------------------------------------- textures


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1)), dtype=np.float32) * 255


def _stuff_texture(name: str, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, size: int) -> np.ndarray:
    h, w = yy.shape
    if name == "sky":
        top, bottom = _hsv(0.58 + rng.uniform(-0.03, 0.03), 0.55, 0.95), _hsv(0.58, 0.12, 1.0)
        t = (yy / max(h - 1, 1))[..., None]
        return top * (1 - t) + bottom * t + rng.normal(0, 2, (h, w, 1))
    if name == "grass":
        base = _hsv(0.30 + rng.uniform(-0.03, 0.03), 0.7, 0.55)
        noise = rng.normal(0, 1, (h, w, 1)) * 30
        return base + noise * np.array([0.4, 1.0, 0.3])
    if name == "water":
        base = _hsv(0.50 + rng.uniform(-0.03, 0.03), 0.7, 0.6)
        period = size / rng.uniform(10, 16)
        wave = np.sin(2 * np.pi * (yy + 2 * np.sin(xx / period)) / period)[..., None]
        return base + wave * np.array([10.0, 25.0, 35.0])
    if name == "wall":
        base = _hsv(0.08, 0.25, 0.55 + rng.uniform(-0.05, 0.05))
        bh = max(3, size // 16)
        row = (yy // bh).astype(int)
        mortar = (yy % bh == 0) | (((xx + (row % 2) * bh) % (2 * bh)) == 0)
        return base + np.where(mortar, 45.0, 0.0)[..., None] + rng.normal(0, 4, (h, w, 1))
    if name == "sand":
        base = _hsv(0.12 + rng.uniform(-0.02, 0.02), 0.35, 0.85)
        speck = (rng.random((h, w)) < 0.08)[..., None] * -50.0
        return base + speck + rng.normal(0, 3, (h, w, 1))
    raise AssertionError(name)


def _thing_texture(name: str, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, size: int) -> np.ndarray:
    """The ``basic`` style: each thing class has its colour family and its pattern."""
    hue = {c[0]: c[2] for c in _CATEGORIES}[name] + rng.uniform(-0.04, 0.04)
    return _pattern_texture(_PATTERN_OF[name], hue, rng, yy, xx, size)


def _pattern_texture(pattern: str, hue: float, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray,
                     size: int) -> np.ndarray:
    base = _hsv(hue, rng.uniform(0.65, 1.0), rng.uniform(0.6, 1.0))
    h, w = yy.shape
    if pattern == "dots":  # light dots
        p = max(3, size // 20)
        dots = ((yy % p - p / 2) ** 2 + (xx % p - p / 2) ** 2) < (p / 4) ** 2
        return base + dots[..., None] * 60.0
    if pattern == "checker":  # checkerboard
        p = max(2, size // 24)
        chk = ((yy // p + xx // p) % 2).astype(np.float32)
        return base * (0.75 + 0.25 * chk[..., None])
    if pattern == "stripes":  # diagonal stripes
        p = max(3, size // 16)
        stripes = (((yy + xx) // p) % 2).astype(np.float32)
        return base * (0.7 + 0.3 * stripes[..., None])
    if pattern == "plain":  # plain, slightly shaded
        return base + rng.normal(0, 6, (h, w, 1))
    raise AssertionError(pattern)


def _shape_mask(name: str, rng: np.random.Generator, yy, xx, cy: float, cx: float, r: float) -> np.ndarray:
    if name == "circle":
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    if name == "ring":
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        return (d2 <= r * r) & (d2 >= (0.5 * r) ** 2)
    a = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(a) + (yy - cy) * np.sin(a)
    v = -(xx - cx) * np.sin(a) + (yy - cy) * np.cos(a)
    if name == "square":
        s = r * 0.85
        return (np.abs(u) <= s) & (np.abs(v) <= s)
    if name == "triangle":
        m = np.ones_like(u, dtype=bool)
        for k in range(3):
            t = 2 * np.pi * k / 3
            m &= (u * np.cos(t) + v * np.sin(t)) <= 0.55 * r
        return m
    if name in ("bar", "cross"):  # thin arms: 1.2 px wide at least
        half = max(0.6, (0.09 if name == "bar" else 0.14) * r)
        m = (np.abs(u) <= r) & (np.abs(v) <= half)
        return m | ((np.abs(v) <= r) & (np.abs(u) <= half)) if name == "cross" else m
    if name == "ellipse":
        b = r * rng.uniform(0.35, 0.6)
        return (u / r) ** 2 + (v / b) ** 2 <= 1.0
    raise AssertionError(name)


def _dilate(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def _bbox(mask: np.ndarray) -> list[int]:
    ys = np.nonzero(mask.any(axis=1))[0]
    xs = np.nonzero(mask.any(axis=0))[0]
    return [int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1)]


def render_image(
    seed: int, index: int, *, size: int = 128, kind: str = "coco", crowd_prob: float = 0.15,
    max_things: int | None = None, style: str = "basic",
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Render synthetic image ``index`` of dataset ``seed`` (``style`` ``basic`` or ``hard``, see
    the module docstring; ``max_things`` defaults to 6 and 8 respectively).

    Returns ``(image uint8 HxWx3, panoptic int32 HxW (0 = void), segments_info)``; each segment has
    ``id``, ``category_id``, ``area``, ``bbox`` (xywh), ``iscrowd``.
    """
    _check_kind(kind)
    _check_style(style)
    if size < 16:
        raise DataError(f"synthetic images need size >= 16, got {size}")
    hard = style == "hard"
    things = _HARD_THINGS if hard else _THINGS
    if max_things is None:
        max_things = 8 if hard else 6
    rng = np.random.default_rng([int(seed), int(index)])
    cat_id = {c["name"]: c["id"] for c in synthetic_categories(kind, style)}

    def texture(name: str) -> np.ndarray:
        if not hard:
            return _thing_texture(name, rng, yy, xx, size)
        if name in _TWIN_OF:  # the hard style's new shapes look like their twin: only the shape differs
            return _thing_texture(_TWIN_OF[name], rng, yy, xx, size)
        if name:
            return _thing_texture(name, rng, yy, xx, size)
        return _pattern_texture(_PATTERNS[int(rng.integers(len(_PATTERNS)))], rng.random(), rng, yy, xx, size)

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    img = np.zeros((size, size, 3), np.float32)
    # --- stuff: two or three regions split by wavy boundaries
    n_stuff = int(rng.integers(2, 4))
    stuff = [_STUFF[i] for i in rng.choice(len(_STUFF), n_stuff, replace=False)]
    horizon = size * rng.uniform(0.3, 0.65) + size * 0.06 * np.sin(xx / size * rng.uniform(3, 8) + rng.uniform(0, 6))
    region = (yy > horizon).astype(np.int64)
    if n_stuff == 3:
        split = size * rng.uniform(0.3, 0.7) + size * 0.05 * np.sin(yy / size * rng.uniform(3, 8))
        region[(region == 1) & (xx > split)] = 2
    for k, name in enumerate(stuff):
        m = region == k
        img[m] = _stuff_texture(name, rng, yy, xx, size)[m]
    if hard:  # clutter: small irregular blobs in things' colours, part of the stuff beneath them
        for _ in range(int(rng.integers(0, 6))):
            cy, cx = rng.uniform(0, 1, 2) * size
            m = np.zeros((size, size), bool)
            for _ in range(int(rng.integers(2, 4))):
                dy, dx = rng.normal(0, 0.02 * size, 2)
                rr = size * rng.uniform(0.015, 0.035)
                m |= (yy - cy - dy) ** 2 + (xx - cx - dx) ** 2 <= rr * rr
            img[m] = texture("")[m]
    owner = region.copy()  # owner: index into the segment list (stuff 0..n_stuff-1, then things)
    seg_names: list[str] = list(stuff)
    seg_crowd: list[int] = [0] * n_stuff
    # --- a crowd region: a cluster of small shapes of one kind, one segment
    if kind == "coco" and rng.random() < crowd_prob:
        name = things[int(rng.integers(len(things)))]
        cy, cx = rng.uniform(0.2, 0.8, 2) * size
        m = np.zeros((size, size), bool)
        for _ in range(int(rng.integers(4, 8))):
            dy, dx = rng.normal(0, 0.08 * size, 2)
            m |= _shape_mask(name, rng, yy, xx, cy + dy, cx + dx, size * rng.uniform(0.03, 0.06))
        if m.any():
            img[m] = texture(name)[m]
            owner[m] = len(seg_names)
            seg_names.append(name)
            seg_crowd.append(1)
    # --- things, painted back to front
    for _ in range(int(rng.integers(1, max_things + 1))):
        name = things[int(rng.integers(len(things)))]
        r = size * (np.exp(rng.uniform(np.log(0.05), np.log(0.3))) if hard else rng.uniform(0.07, 0.2))
        cy, cx = rng.uniform(0.1, 0.9, 2) * size
        m = _shape_mask(name, rng, yy, xx, cy, cx, r)
        if not m.any():
            continue
        img[m] = texture(name)[m]
        owner[m] = len(seg_names)
        seg_names.append(name)
        seg_crowd.append(0)
    # global lighting and sensor noise
    light = 1.0 + 0.15 * rng.uniform(-1, 1) * (xx / size - 0.5)
    img = img * light[..., None] + rng.normal(0, 3, img.shape)
    image = np.clip(img, 0, 255).astype(np.uint8)
    # --- annotation: void where a segment is too small, void borders around some segments
    n_seg = len(seg_names)
    void = np.zeros((size, size), bool)
    min_area = max(8, int(0.0015 * size * size))
    areas = np.bincount(owner.ravel(), minlength=n_seg)
    for k in range(n_seg):
        if k >= n_stuff and areas[k] < min_area:
            void |= owner == k
    for k in range(n_stuff, n_seg):
        if rng.random() < 0.5:
            m = owner == k
            void |= _dilate(m) & ~m
    if rng.random() < 0.3:  # a void band along the stuff boundary
        b = region == 0
        void |= (_dilate(b) & ~b) | (_dilate(~b) & b)
    ids = (rng.choice(256**3 - 1, size=n_seg, replace=False) + 1)
    pan = np.where(void, 0, ids[owner]).astype(np.int32)
    segments = []
    for k in range(n_seg):
        m = pan == ids[k]
        area = int(m.sum())
        if area == 0:
            continue
        segments.append({
            "id": int(ids[k]),
            "category_id": cat_id[seg_names[k]],
            "area": area,
            "bbox": _bbox(m),
            "iscrowd": int(seg_crowd[k]),
        })
    return image, pan, segments


def _names(kind: str, index: int) -> tuple[Any, str]:
    if kind == "coco":
        return index + 1, f"{index + 1:012d}"
    return f"ADE_synth_{index + 1:08d}", f"ADE_synth_{index + 1:08d}"


def write_synthetic(
    out: str | os.PathLike[str], n_images: int, *, size: int = 128, seed: int = 0, kind: str = "coco",
    crowd_prob: float = 0.15, progress: bool = False, style: str = "basic",
) -> Path:
    """Write a synthetic dataset to ``out`` (images/, panoptic/, panoptic.json); return the JSON path.

    Deterministic for ``(seed, size, kind, style)``. Image and PNG files are written atomically and the
    JSON last, so an interrupted run leaves no JSON that lists missing files.

    >>> import tempfile
    >>> js = write_synthetic(tempfile.mkdtemp(), 2, size=32, seed=1)
    >>> js.name
    'panoptic.json'
    """
    _check_kind(kind)
    _check_style(style)
    if n_images < 0:
        raise DataError(f"the number of images must be >= 0, got {n_images}")
    out = Path(out)
    images, annotations = [], []
    it = range(int(n_images))
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="synth", unit="img")
    for i in it:
        image_id, stem = _names(kind, i)
        image, pan, segs = render_image(seed, i, size=size, kind=kind, crowd_prob=crowd_prob, style=style)
        buf = _io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=92)
        atomic_write_bytes(out / "images" / f"{stem}.jpg", buf.getvalue())
        write_panoptic_png(out / "panoptic" / f"{stem}.png", pan)
        images.append({"id": image_id, "file_name": f"{stem}.jpg", "height": size, "width": size})
        annotations.append({"image_id": image_id, "file_name": f"{stem}.png", "segments_info": segs})
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "panoptic").mkdir(parents=True, exist_ok=True)
    data = {
        "info": {"description": f"autopanoptic synthetic panoptic dataset (seed {seed}, size {size}, {kind}"
                            + (f", style {style})" if style != "basic" else ")")},
        "images": images,
        "annotations": annotations,
        "categories": synthetic_categories(kind, style),
    }
    return atomic_write_json(out / "panoptic.json", data, indent=None)


def make_prediction(
    pan: np.ndarray, segments: Sequence[Mapping[str, Any]], categories: CategoryMap | Sequence[Mapping[str, Any]],
    rng: np.random.Generator, *, difficulty: float = 0.5,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """A plausible imperfect prediction of a ground-truth annotation (for tests and benchmarks).

    Segments are shifted, dropped, relabelled, merged into void, and spurious segments are added;
    ``difficulty`` in [0, 1] scales how often. Returns ``(pred_map int32, segments_info)`` with
    fresh ids and no crowd; every listed segment has pixels.
    """
    cm = categories if isinstance(categories, CategoryMap) else CategoryMap.from_json(categories)
    h, w = pan.shape
    pred = np.zeros((h, w), np.int64)
    cat_of: dict[int, int] = {}
    ids = iter((rng.choice(256**3 - 1, size=3 * len(segments) + 8, replace=False) + 1))
    order = list(segments)
    rng.shuffle(order)
    for s in order:
        m = pan == s["id"]
        u = rng.random()
        if u < 0.12 * difficulty:
            continue  # missed segment
        if rng.random() < 0.4 * difficulty:  # shifted
            dy, dx = (int(v) for v in rng.integers(-max(1, h // 10), max(1, h // 10) + 1, 2))
            m = np.roll(np.roll(m, dy, axis=0), dx, axis=1)
        if rng.random() < 0.5 * difficulty:  # eroded or grown edge
            m = _dilate(m) if rng.random() < 0.5 else m & ~_dilate(~m)
        cid = s["category_id"]
        if rng.random() < 0.15 * difficulty:  # relabelled
            same = cm.thing_ids if cm.is_thing(cid) else cm.stuff_ids
            cid = int(same[int(rng.integers(len(same)))])
        nid = int(next(ids))
        pred[m] = nid
        cat_of[nid] = cid
    for _ in range(int(rng.integers(0, 3)) if rng.random() < difficulty else 0):  # spurious blobs
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        r = max(2, int(min(h, w) * rng.uniform(0.03, 0.15)))
        yy, xx = np.ogrid[:h, :w]
        m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        nid = int(next(ids))
        pred[m] = nid
        cat_of[nid] = int(cm.ids[int(rng.integers(len(cm.ids)))])
    if rng.random() < 0.3 * difficulty:  # predicted void on a band
        y0 = int(rng.integers(0, h))
        pred[y0 : y0 + max(1, h // 12)] = 0
    present = np.unique(pred)
    segs = [{"id": int(i), "category_id": cat_of[int(i)]} for i in present if i != 0]
    return pred.astype(np.int32), segs


def split_dataset(data: Mapping[str, Any], n_val: int | float, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Carve a validation split out of a panoptic JSON dict, deterministically for ``seed``.

    ``n_val``: a number of images, or a fraction in (0, 1). Returns ``(train, val)`` dicts with
    the same categories; images keep their order.

    >>> d = {"images": [{"id": i, "file_name": f"{i}.jpg"} for i in range(10)],
    ...      "annotations": [{"image_id": i, "file_name": f"{i}.png", "segments_info": []} for i in range(10)],
    ...      "categories": []}
    >>> tr, va = split_dataset(d, 3, seed=0)
    >>> len(tr["images"]), len(va["images"]), set(i["id"] for i in tr["images"]) & set(i["id"] for i in va["images"])
    (7, 3, set())
    """
    images = list(data["images"])
    n = len(images)
    if isinstance(n_val, float) and not isinstance(n_val, bool) and 0 < n_val < 1:
        k = int(round(n_val * n))
    else:
        k = int(n_val)
        if k != n_val:
            raise DataError(f"n_val must be an integer count or a fraction in (0, 1), got {n_val!r}")
    if not 0 <= k <= n:
        raise DataError(f"cannot carve {k} validation images out of {n}")
    val_pos = set(np.random.default_rng(int(seed)).choice(n, size=k, replace=False).tolist())
    val_ids = {images[i]["id"] for i in val_pos}

    def part(keep_val: bool) -> dict[str, Any]:
        d = {k2: v for k2, v in data.items() if k2 not in ("images", "annotations")}
        d["images"] = [im for im in images if (im["id"] in val_ids) == keep_val]
        d["annotations"] = [a for a in data["annotations"] if (a["image_id"] in val_ids) == keep_val]
        return d

    return part(False), part(True)


def write_split(
    json_path: str | os.PathLike[str], out: str | os.PathLike[str], n_val: int | float, *, seed: int = 0,
    png_dir: str | os.PathLike[str] | None = None, kind: str = "coco",
) -> tuple[Path, Path]:
    """Split a dataset on disk: ``out/train.json`` + ``out/train/`` and ``out/val.json`` + ``out/val/``.

    The PNG folders (the COCO convention: JSON path without ``.json``) get hard links to the
    original PNGs (copies where links are impossible); images stay where they are. Returns the
    two JSON paths.
    """
    json_path = Path(json_path)
    data = load_panoptic_json(json_path, kind=kind)
    png_dir = Path(png_dir) if png_dir is not None else json_path.with_suffix("")
    train, val = split_dataset(data, n_val, seed)
    out = Path(out)
    paths = []
    for name, part in (("train", train), ("val", val)):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for ann in part["annotations"]:
            src, dst = png_dir / ann["file_name"], folder / ann["file_name"]
            if not src.is_file():
                raise DataError(f"{src}: panoptic PNG not found; check the PNG folder")
            if dst.exists():
                dst.unlink()
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
        paths.append(atomic_write_json(out / f"{name}.json", part, indent=None))
    return paths[0], paths[1]


def write_predictions(
    gt_json: str | os.PathLike[str], out_json: str | os.PathLike[str], *, seed: int = 0,
    difficulty: float = 0.5, gt_folder: str | os.PathLike[str] | None = None, kind: str | None = None,
) -> Path:
    """Write imperfect predictions (:func:`make_prediction`) of a dataset in the COCO panoptic format.

    PNGs go to ``out_json`` without ``.json`` (the API's default folder), the JSON last. For
    tests, benchmarks and demos of :func:`autopanoptic.data.pq_compute`.
    """
    gt_json, out_json = Path(gt_json), Path(out_json)
    if kind is None:
        from autopanoptic.data.pq import _guess_kind
        import json as _json

        with open(gt_json, "rb") as f:
            kind = _guess_kind(_json.load(f))
    data = load_panoptic_json(gt_json, kind=kind)
    gt_folder = Path(gt_folder) if gt_folder is not None else gt_json.with_suffix("")
    folder = out_json.with_suffix("")
    cm = CategoryMap.from_json(data["categories"])
    from autopanoptic.data.format import read_panoptic_png

    anns = []
    for k, ann in enumerate(data["annotations"]):
        pan = read_panoptic_png(gt_folder / ann["file_name"])
        rng = np.random.default_rng([int(seed), k])
        pred, segs = make_prediction(pan, ann["segments_info"], cm, rng, difficulty=difficulty)
        write_panoptic_png(folder / ann["file_name"], pred)
        anns.append({"image_id": ann["image_id"], "file_name": ann["file_name"], "segments_info": segs})
    folder.mkdir(parents=True, exist_ok=True)
    return atomic_write_json(out_json, {"annotations": anns, "categories": data["categories"]}, indent=None)
