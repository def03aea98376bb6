"""The COCO panoptic format: segment ids <-> RGB, categories, JSON schema checks.

A panoptic PNG stores one segment id per pixel as ``id = R + 256 * G + 256**2 * B`` (0 = void).
The JSON holds ``images``, ``annotations`` (one per image, with ``segments_info``) and
``categories`` (``id``, ``name``, ``isthing``, optionally ``color``).

>>> import numpy as np
>>> rgb = id2rgb(np.array([[0, 1, 256, 65536 + 2]]))
>>> rgb2id(rgb).tolist()
[[0, 1, 256, 65538]]
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from PIL import Image

from autopanoptic.errors import DataError

__all__ = [
    "CategoryMap",
    "KINDS",
    "MAX_PIXELS",
    "check_pixels",
    "open_image",
    "rgb2id",
    "id2rgb",
    "read_panoptic_png",
    "write_panoptic_png",
    "load_panoptic_json",
    "validate_panoptic_json",
]

MAX_PIXELS = 89_478_485
"""The most pixels an image or PNG may have (Pillow's own decompression-bomb threshold, about
9459 x 9459; decoded as RGB: 268 MB). Larger ones are refused before anything is decoded: a small
file whose header claims a huge size (a decompression bomb) would otherwise exhaust memory."""


def check_pixels(path: str | os.PathLike[str], width: int, height: int) -> None:
    """:class:`DataError` naming ``path`` when ``width x height`` exceeds :data:`MAX_PIXELS`.

    >>> check_pixels("a.png", 640, 480)
    >>> check_pixels("bomb.png", 100_000, 100_000)
    Traceback (most recent call last):
    ...
    autopanoptic.errors.DataError: bomb.png: the image is 100000 x 100000 pixels, more than the 89478485 allowed (a decompression bomb or a damaged header?); remove or shrink the file
    """
    if width * height > MAX_PIXELS:
        raise DataError(f"{path}: the image is {width} x {height} pixels, more than the {MAX_PIXELS} allowed "
                        "(a decompression bomb or a damaged header?); remove or shrink the file")


@contextlib.contextmanager
def open_image(path: str | os.PathLike[str], fp: Any = None) -> Iterator[Image.Image]:
    """``PIL.Image.open(fp or path)`` whose size was checked (:func:`check_pixels`) before any pixel
    is decoded; ``path`` names the file in errors. Pillow's own errors (``OSError``...) pass through."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, with the file's name
        try:
            im = Image.open(path if fp is None else fp)
        except Image.DecompressionBombError as e:  # Pillow refuses more than twice its threshold itself
            n = re.search(r"\((\d+) pixels\)", str(e))
            raise DataError(f"{path}: the image has {n.group(1) if n else 'too many'} pixels, more than the "
                            f"{MAX_PIXELS} allowed (a decompression bomb or a damaged header?); remove or shrink "
                            "the file") from None
    with im:
        check_pixels(path, *im.size)
        yield im


KINDS = ("coco", "ade20k")
"""Dataset flavours: ``coco`` (category ids from 1, integer image ids, crowd regions) and
``ade20k`` (category 0 is a real class, string image ids allowed, no crowd)."""


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """Convert an ``H x W x 3`` RGB array to ``int32`` segment ids ``R + 256 G + 256^2 B``.

    >>> rgb2id(np.array([[[1, 2, 3]]], dtype=np.uint8)).tolist()
    [[197121]]
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise DataError(f"a panoptic map must be H x W x 3 (RGB), got shape {rgb.shape}")
    if rgb.dtype == np.uint8 and rgb.shape[2] == 3 and rgb.flags.c_contiguous:
        # One pass: pad each pixel to 4 bytes and read it as a little-endian uint32.
        out = np.zeros(rgb.shape[:2] + (4,), dtype=np.uint8)
        out[..., :3] = rgb
        return out.view("<u4")[..., 0].astype(np.int32, copy=False)
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]).astype(np.int32)


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """Convert segment ids (``H x W``, each below ``256**3``) to an ``H x W x 3`` ``uint8`` array.

    >>> id2rgb(np.array([[197121]])).tolist()
    [[[1, 2, 3]]]
    """
    ids = np.asarray(ids).astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= 256**3):
        raise DataError("segment ids must lie in [0, 256**3) to be stored in an RGB PNG")
    out = np.empty(ids.shape + (3,), dtype=np.uint8)
    out[..., 0] = ids % 256
    out[..., 1] = (ids // 256) % 256
    out[..., 2] = ids // 65536
    return out


def read_panoptic_png(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a panoptic PNG into an ``int32 H x W`` array of segment ids.

    Raises :class:`DataError` when the file is missing, unreadable or not RGB.
    """
    path = Path(path)
    try:
        with open_image(path) as im:
            if im.mode != "RGB":
                if im.mode in ("RGBA", "P", "L", "I", "I;16"):
                    raise DataError(
                        f"{path}: panoptic PNG has mode {im.mode}, expected RGB (id = R + 256 G + 256^2 B)"
                    )
                im = im.convert("RGB")
            arr = np.asarray(im)
    except FileNotFoundError:
        raise DataError(f"{path}: panoptic PNG not found; check the PNG folder") from None
    except DataError:
        raise
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read the panoptic PNG ({e})") from None
    return rgb2id(arr)


def write_panoptic_png(path: str | os.PathLike[str], ids: np.ndarray) -> Path:
    """Write segment ids as an RGB panoptic PNG, atomically. Returns the path."""
    import io as _io

    from autopanoptic.io import atomic_write_bytes

    buf = _io.BytesIO()
    Image.fromarray(id2rgb(ids), mode="RGB").save(buf, format="PNG", compress_level=1)
    return atomic_write_bytes(path, buf.getvalue())


def _colour(value: Any) -> tuple[int, int, int] | None:
    if value is None:
        return None
    try:
        r, g, b = (int(v) for v in value)
    except (TypeError, ValueError):
        return None
    return (r, g, b)


@attrs.frozen
class CategoryMap:
    """The categories of a dataset and the contiguous training indices of things and stuff.

    Thing categories, sorted by id, get labels ``0..T-1``; stuff categories, sorted by id, get
    ``0..S-1``. The semantic target uses ``S`` for "any thing".

    >>> cm = CategoryMap.from_json([
    ...     {"id": 1, "name": "circle", "isthing": 1},
    ...     {"id": 7, "name": "square", "isthing": 1},
    ...     {"id": 20, "name": "sky", "isthing": 0},
    ... ])
    >>> cm.num_things, cm.num_stuff, cm.thing_ids, cm.stuff_ids
    (2, 1, (1, 7), (20,))
    >>> cm.from_category_id(7), cm.to_category_id(0, isthing=False)
    ((1, True), 20)
    """

    ids: tuple[int, ...] = attrs.field(converter=lambda v: tuple(int(x) for x in v))
    names: tuple[str, ...] = attrs.field(converter=lambda v: tuple(str(x) for x in v))
    isthing: tuple[bool, ...] = attrs.field(converter=lambda v: tuple(bool(x) for x in v))
    colors: tuple[tuple[int, int, int] | None, ...] = attrs.field(converter=tuple)

    def __attrs_post_init__(self) -> None:
        n = len(self.ids)
        if not (len(self.names) == len(self.isthing) == len(self.colors) == n):
            raise DataError("CategoryMap: ids, names, isthing and colors must have the same length")
        if len(set(self.ids)) != n:
            dup = sorted({i for i in self.ids if self.ids.count(i) > 1})
            raise DataError(f"duplicate category ids {dup}; every category needs a distinct id")
        if any(i < 0 for i in self.ids):
            raise DataError("category ids must be >= 0")

    @classmethod
    def from_json(cls, categories: Iterable[Mapping[str, Any]], *, source: str = "categories") -> "CategoryMap":
        """Build from the JSON ``categories`` list (``id``, ``name``, ``isthing``, ``color``)."""
        ids, names, things, colors = [], [], [], []
        for k, c in enumerate(categories):
            if not isinstance(c, Mapping) or "id" not in c or "isthing" not in c:
                raise DataError(f"{source}: category #{k} needs 'id' and 'isthing' (COCO panoptic format)")
            try:
                cid = int(c["id"])
            except (TypeError, ValueError):
                raise DataError(f"{source}: category #{k} has a non-integer id {c['id']!r}") from None
            if isinstance(c["id"], bool) or cid != c["id"]:
                raise DataError(f"{source}: category #{k} has a non-integer id {c['id']!r}")
            if c["isthing"] not in (0, 1, True, False):
                raise DataError(f"{source}: category {cid} has isthing={c['isthing']!r}, expected 0 or 1")
            ids.append(cid)
            names.append(str(c.get("name", f"category{cid}")))
            things.append(bool(c["isthing"]))
            colors.append(_colour(c.get("color")))
        try:
            return cls(ids, names, things, colors)
        except DataError as e:
            raise DataError(f"{source}: {e}") from None

    def to_json(self) -> list[dict[str, Any]]:
        """The JSON ``categories`` list (round-trips through :meth:`from_json`)."""
        out = []
        for cid, name, th, col in zip(self.ids, self.names, self.isthing, self.colors):
            d: dict[str, Any] = {"id": cid, "name": name, "isthing": int(th)}
            if col is not None:
                d["color"] = list(col)
            out.append(d)
        return out

    @property
    def thing_ids(self) -> tuple[int, ...]:
        """Category ids of things, sorted; position = contiguous thing label."""
        return tuple(sorted(i for i, t in zip(self.ids, self.isthing) if t))

    @property
    def stuff_ids(self) -> tuple[int, ...]:
        """Category ids of stuff, sorted; position = contiguous stuff label."""
        return tuple(sorted(i for i, t in zip(self.ids, self.isthing) if not t))

    @property
    def num_things(self) -> int:
        """Number of thing categories ``T``."""
        return len(self.thing_ids)

    @property
    def num_stuff(self) -> int:
        """Number of stuff categories ``S`` (the semantic target has ``S + 1`` classes)."""
        return len(self.stuff_ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, cid: object) -> bool:
        return cid in self.ids

    def is_thing(self, cid: int) -> bool:
        """Whether category ``cid`` is a thing."""
        return self.isthing[self._position(cid)]

    def name(self, cid: int) -> str:
        """The name of category ``cid``."""
        return self.names[self._position(cid)]

    def color(self, cid: int) -> tuple[int, int, int] | None:
        """The JSON colour of category ``cid`` (None when the JSON gives none)."""
        return self.colors[self._position(cid)]

    def _position(self, cid: int) -> int:
        try:
            return self.ids.index(int(cid))
        except ValueError:
            raise DataError(f"unknown category id {cid}; known ids: {list(self.ids)}") from None

    def from_category_id(self, cid: int) -> tuple[int, bool]:
        """Dataset category id -> ``(contiguous label, isthing)``."""
        th = self.is_thing(cid)
        return ((self.thing_ids if th else self.stuff_ids).index(int(cid)), th)

    def to_category_id(self, label: int, isthing: bool) -> int:
        """``(contiguous label, isthing)`` -> dataset category id."""
        ids = self.thing_ids if isthing else self.stuff_ids
        if not 0 <= int(label) < len(ids):
            kind = "thing" if isthing else "stuff"
            raise DataError(f"{kind} label {label} out of range 0..{len(ids) - 1}")
        return ids[int(label)]

    def thing_lut(self) -> dict[int, int]:
        """``{category id: thing label}`` for every thing."""
        return {c: k for k, c in enumerate(self.thing_ids)}

    def stuff_lut(self) -> dict[int, int]:
        """``{category id: stuff label}`` for every stuff class."""
        return {c: k for k, c in enumerate(self.stuff_ids)}


def load_panoptic_json(path: str | os.PathLike[str], *, kind: str = "coco") -> dict[str, Any]:
    """Load and validate a COCO panoptic JSON; raise one :class:`DataError` on the first problem.

    Use :func:`validate_panoptic_json` to list every problem instead.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: panoptic JSON not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    problems = validate_panoptic_json(data, source=str(path), kind=kind, first_only=True)
    if problems:
        raise DataError(problems[0])
    return data


def _is_name(v: Any) -> bool:
    return isinstance(v, str) and v.strip() != ""


def _is_image_id(v: Any, kind: str) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    return kind == "ade20k" and isinstance(v, str) and v != ""


def validate_panoptic_json(
    data: Any, *, source: str = "<json>", kind: str = "coco", first_only: bool = False,
    require_images: bool = True, prediction: bool = False,
) -> list[str]:
    """Return every schema problem of a COCO panoptic JSON (empty list = valid).

    Checks the top-level keys, categories, duplicate image ids, one annotation per image, segment
    fields, duplicate segment ids, unknown categories, crowd rules of ``kind`` (not for
    ``prediction=True``, where ``iscrowd`` is ignored and image ids may be strings). PNG contents are
    checked by :func:`autopanoptic.data.check_dataset`.

    >>> validate_panoptic_json({"annotations": []}, source="x.json")[0]
    "x.json: not a COCO panoptic JSON: missing key 'categories'"
    """
    if kind not in KINDS:
        raise DataError(f"unknown dataset kind {kind!r}; use one of {list(KINDS)}")
    problems: list[str] = []

    def bad(msg: str) -> bool:
        problems.append(f"{source}: {msg}")
        return first_only

    if not isinstance(data, dict):
        bad("not a COCO panoptic JSON: the top level must be an object")
        return problems
    keys = ("annotations", "categories") + (("images",) if require_images else ())
    for key in keys:
        if key not in data:
            bad(f"not a COCO panoptic JSON: missing key {key!r}")
            return problems
        if not isinstance(data[key], list):
            bad(f"not a COCO panoptic JSON: {key!r} must be a list")
            return problems
    try:
        cats = CategoryMap.from_json(data["categories"], source=source)
    except DataError as e:
        problems.append(str(e))
        return problems
    if kind == "coco" and 0 in cats.ids:
        if bad("category id 0 is not used by COCO panoptic (it is a real class in ADE20K: use kind 'ade20k')"):
            return problems
    cat_ids = set(cats.ids)

    image_ids: set[Any] = set()
    if require_images:
        for k, im in enumerate(data["images"]):
            if not isinstance(im, dict) or "id" not in im or not _is_name(im.get("file_name")):
                if bad(f"image #{k} needs 'id' and a 'file_name' string"):
                    return problems
                continue
            if not _is_image_id(im["id"], kind):
                extra = " (string ids need kind 'ade20k')" if isinstance(im["id"], str) else ""
                if bad(f"image #{k} has an invalid id {im['id']!r}{extra}"):
                    return problems
                continue
            if im["id"] in image_ids:
                if bad(f"duplicate image id {im['id']!r}"):
                    return problems
            image_ids.add(im["id"])
            for dim in ("height", "width"):
                if dim in im and (not isinstance(im[dim], int) or isinstance(im[dim], bool) or im[dim] <= 0):
                    if bad(f"image {im['id']!r} has an invalid {dim} {im[dim]!r}"):
                        return problems

    seen_ann: set[Any] = set()
    for k, ann in enumerate(data["annotations"]):
        if (not isinstance(ann, dict) or "image_id" not in ann or not _is_name(ann.get("file_name"))
                or "segments_info" not in ann):
            if bad(f"annotation #{k} needs 'image_id', a 'file_name' string and 'segments_info'"):
                return problems
            continue
        iid = ann["image_id"]
        try:
            hash(iid)
        except TypeError:
            if bad(f"annotation #{k} has an invalid image_id {iid!r}"):
                return problems
            continue
        if iid in seen_ann:
            if bad(f"image {iid!r} has more than one annotation"):
                return problems
        seen_ann.add(iid)
        if require_images and iid not in image_ids:
            if bad(f"annotation #{k} refers to image {iid!r}, which is not in 'images'"):
                return problems
        if not isinstance(ann["segments_info"], list):
            if bad(f"image {iid!r}: 'segments_info' must be a list"):
                return problems
            continue
        seg_ids: set[int] = set()
        for s in ann["segments_info"]:
            if not isinstance(s, dict) or "id" not in s or "category_id" not in s:
                if bad(f"image {iid!r}: every segment needs 'id' and 'category_id'"):
                    return problems
                continue
            sid = s["id"]
            if not isinstance(sid, int) or isinstance(sid, bool) or not 0 < sid < 256**3:
                if bad(f"image {iid!r}: segment id {sid!r} must be an integer in 1..16777215 (0 is void)"):
                    return problems
                continue
            if sid in seg_ids:
                if bad(f"image {iid!r}: duplicate segment id {sid}"):
                    return problems
            seg_ids.add(sid)
            if s["category_id"] not in cat_ids:
                if bad(f"image {iid!r}: segment {sid} has unknown category {s['category_id']!r}"):
                    return problems
                continue
            crowd = s.get("iscrowd", 0)
            if crowd not in (0, 1):
                if bad(f"image {iid!r}: segment {sid} has iscrowd={crowd!r}, expected 0 or 1"):
                    return problems
            elif crowd == 1 and kind == "ade20k" and not prediction:
                if bad(f"image {iid!r}: segment {sid} is crowd, but ADE20K panoptic has no crowd regions"):
                    return problems
            if "area" in s and (not isinstance(s["area"], (int, float)) or isinstance(s["area"], bool) or s["area"] < 0):
                if bad(f"image {iid!r}: segment {sid} has an invalid area {s['area']!r}"):
                    return problems
    if require_images:
        missing = [i for i in image_ids if i not in seen_ann]
        if missing:
            bad(f"{len(missing)} image(s) have no annotation, e.g. {missing[0]!r}")
    return problems
