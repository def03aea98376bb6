"""Reading COCO-panoptic datasets (COCO 2017 panoptic, ADE20K panoptic, the synthetic set).

A dataset is an image folder, a panoptic JSON and a folder of panoptic PNGs. ``ds[i]`` is a plain
dict of numpy arrays (see ``docs/architecture.md``); :func:`check_dataset` lists every problem of
a dataset without stopping at the first.

>>> import tempfile
>>> from autopanoptic.data.synthetic import write_synthetic
>>> root = Path(tempfile.mkdtemp())
>>> js = write_synthetic(root, 2, size=32, seed=0)
>>> ds = PanopticDataset(root / "images", js, root / "panoptic")
>>> item = ds[0]
>>> item["image"].shape, item["semantic"].dtype, item["instances"]["masks"].shape[1:]
((32, 32, 3), dtype('int64'), (32, 32))
>>> check_dataset(root / "images", js, root / "panoptic")
[]
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from autopanoptic.data.format import (
    KINDS,
    CategoryMap,
    load_panoptic_json,
    open_image,
    read_panoptic_png,
    validate_panoptic_json,
)
from autopanoptic.errors import DataError

__all__ = ["PanopticDataset", "check_dataset", "read_image"]

IGNORE = 255
"""The semantic target's ignore value (void pixels)."""


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image as ``uint8 H x W x 3`` RGB; :class:`DataError` if missing or unreadable."""
    path = Path(path)
    try:
        with open_image(path) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"{path}: image not found; check the image folder") from None
    except DataError:
        raise
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read the image ({e})") from None


def item_index(i: Any, n: int) -> int:
    """``i`` as a position in ``range(n)`` (negative indices count from the end, as for lists);
    ``TypeError`` / ``IndexError`` otherwise. The index rule of every dataset here."""
    if not isinstance(i, (int, np.integer)):
        raise TypeError(f"dataset index must be an integer, got {type(i).__name__}")
    if not -n <= i < n:
        raise IndexError(f"index {i} out of range for a dataset of {n} images")
    return int(i) % n


class PanopticDataset:
    """A COCO-panoptic dataset: ``len(ds)``, ``ds[i]`` (a dict), iteration, ``ds.categories``.

    ``kind``: ``"coco"`` or ``"ade20k"`` (category 0 is a real class, string image ids, no crowd).
    The JSON is checked when the dataset is built; each item's files when it is read (a missing
    PNG, ids in the PNG and ``segments_info`` that differ, or sizes that differ raise
    :class:`DataError` naming the file). ``image_dir=None`` skips reading images (``image`` is
    then absent), e.g. for evaluation.

    Item fields: ``image`` (``uint8 HxWx3``), ``image_id``, ``file_name``, ``height``, ``width``,
    ``instances`` (``boxes float32 Nx4`` xyxy, ``labels int64 N`` contiguous thing index,
    ``masks uint8 NxHxW``; crowd excluded), ``semantic`` (``int64 HxW``, stuff ``0..S-1``, ``S`` =
    any thing, 255 = void), ``panoptic`` (``int32 HxW`` ids, 0 = void), ``segments``.
    """

    def __init__(
        self,
        image_dir: str | os.PathLike[str] | None,
        json_path: str | os.PathLike[str],
        png_dir: str | os.PathLike[str] | None = None,
        kind: str = "coco",
    ) -> None:
        if kind not in KINDS:
            raise DataError(f"unknown dataset kind {kind!r}; use one of {list(KINDS)}")
        self.kind = kind
        self.json_path = Path(json_path)
        self.image_dir = Path(image_dir) if image_dir is not None else None
        self.png_dir = Path(png_dir) if png_dir is not None else self.json_path.with_suffix("")
        data = load_panoptic_json(self.json_path, kind=kind)
        self.categories = CategoryMap.from_json(data["categories"], source=str(self.json_path))
        anns = {a["image_id"]: a for a in data["annotations"]}
        self.images: list[dict[str, Any]] = list(data["images"])
        self._anns = [anns[im["id"]] for im in self.images]
        self._thing_lut = self.categories.thing_lut()
        self._stuff_lut = self.categories.stuff_lut()

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self[i]

    def annotation(self, i: int) -> dict[str, Any]:
        """The raw JSON annotation (``image_id``, ``file_name``, ``segments_info``) of item ``i``."""
        return self._anns[i]

    def read_panoptic(self, i: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """``(panoptic int32 HxW, segments_info)`` of item ``i``, checked against each other."""
        im, ann = self.images[i], self._anns[i]
        png = self.png_dir / ann["file_name"]
        pan = read_panoptic_png(png)
        problems = _check_pair(pan, ann["segments_info"], im, png)
        if problems:
            raise DataError(problems[0])
        return pan, ann["segments_info"]

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = item_index(i, len(self))
        im = self.images[i]
        pan, segs = self.read_panoptic(i)
        h, w = pan.shape
        item: dict[str, Any] = {"image_id": im["id"], "file_name": im["file_name"], "height": h, "width": w}
        if self.image_dir is not None:
            path = self.image_dir / im["file_name"]
            image = read_image(path)
            if image.shape[:2] != (h, w):
                raise DataError(
                    f"{path}: image is {image.shape[1]}x{image.shape[0]} but its panoptic PNG is {w}x{h}"
                )
            item["image"] = image
        item.update(self.targets(pan, segs))
        item["panoptic"] = pan
        item["segments"] = segs
        return item

    def targets(self, pan: np.ndarray, segments: list[dict[str, Any]]) -> dict[str, Any]:
        """Instance and semantic targets from a panoptic map and its ``segments_info``."""
        h, w = pan.shape
        S = self.categories.num_stuff
        ids = np.array([s["id"] for s in segments], dtype=np.int64)
        sem_of = np.array(
            [S if s["category_id"] in self._thing_lut else self._stuff_lut[s["category_id"]] for s in segments],
            dtype=np.int64,
        )
        # Segment index per pixel (-1 = void) via a sorted lookup.
        if len(ids):
            order = np.argsort(ids)
            pos = np.searchsorted(ids[order], pan)
            np.minimum(pos, len(ids) - 1, out=pos)
            idx = np.where(ids[order][pos] == pan, order[pos], -1)
        else:
            idx = np.full((h, w), -1, dtype=np.int64)
        semantic = np.where(idx >= 0, sem_of[np.maximum(idx, 0)] if len(ids) else IGNORE, IGNORE).astype(np.int64)
        boxes, labels, masks = [], [], []
        for k, s in enumerate(segments):
            if s["category_id"] not in self._thing_lut or s.get("iscrowd", 0) == 1:
                continue
            m = idx == k
            ys = np.nonzero(m.any(axis=1))[0]
            xs = np.nonzero(m.any(axis=0))[0]
            if len(ys) == 0:
                continue
            boxes.append([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1])
            labels.append(self._thing_lut[s["category_id"]])
            masks.append(m)
        instances = {
            "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            "labels": np.asarray(labels, dtype=np.int64),
            "masks": np.asarray(masks, dtype=np.uint8).reshape(-1, h, w),
        }
        return {"instances": instances, "semantic": semantic}


def _check_pair(pan: np.ndarray, segments: list[dict[str, Any]], image: dict[str, Any], png: Path) -> list[str]:
    """Problems between a panoptic map and its segments_info (and the image's declared size)."""
    problems = []
    h, w = pan.shape
    if ("height" in image and image["height"] != h) or ("width" in image and image["width"] != w):
        problems.append(
            f"{png}: PNG is {w}x{h} but the JSON says image {image['id']!r} is "
            f"{image.get('width')}x{image.get('height')}"
        )
    present, counts = np.unique(pan, return_counts=True)
    listed = {s["id"]: s for s in segments}
    extra = [int(v) for v in present if v != 0 and int(v) not in listed]
    if extra:
        problems.append(f"{png}: segment id(s) {extra[:5]} in the PNG are absent from segments_info")
    in_png = {int(v): int(c) for v, c in zip(present, counts)}
    missing = [sid for sid in listed if sid not in in_png]
    if missing:
        problems.append(f"{png}: segment id(s) {missing[:5]} of segments_info are absent from the PNG")
    wrong_area = [sid for sid, s in listed.items() if sid in in_png and "area" in s and s["area"] != in_png[sid]]
    if wrong_area:
        sid = wrong_area[0]
        problems.append(
            f"{png}: segment {sid} has area {listed[sid]['area']} in the JSON but {in_png[sid]} pixels in the PNG"
        )
    return problems


def check_dataset(
    image_dir: str | os.PathLike[str] | None,
    json_path: str | os.PathLike[str],
    png_dir: str | os.PathLike[str] | None = None,
    kind: str = "coco",
    *,
    progress: bool = False,
    max_problems: int | None = None,
) -> list[str]:
    """Every problem of a dataset, one line each (empty list = ready to train on).

    Checks the JSON schema (keys, categories, duplicate image ids, unknown categories, crowd rules
    of ``kind``), then every image: missing or unreadable image / PNG, sizes that differ between
    the image, the PNG and the JSON, ids in the PNG absent from ``segments_info`` or the reverse,
    areas that differ from the pixel counts. ``image_dir=None`` skips the images.
    """
    import json as _json

    json_path = Path(json_path)
    png_dir = Path(png_dir) if png_dir is not None else json_path.with_suffix("")
    try:
        with open(json_path, "rb") as f:
            data = _json.load(f)
    except FileNotFoundError:
        return [f"{json_path}: panoptic JSON not found"]
    except (ValueError, UnicodeDecodeError) as e:
        return [f"{json_path}: not valid JSON ({e})"]
    problems = validate_panoptic_json(data, source=str(json_path), kind=kind)
    if not isinstance(data, dict) or any(not isinstance(data.get(k), list) for k in ("images", "annotations")):
        return problems
    if not png_dir.is_dir():
        problems.append(f"{png_dir}: panoptic PNG folder not found")
        return problems
    if image_dir is not None and not Path(image_dir).is_dir():
        problems.append(f"{image_dir}: image folder not found")
        image_dir = None
    anns = {}
    for a in data["annotations"]:
        if isinstance(a, dict) and "image_id" in a:
            try:
                anns.setdefault(a["image_id"], a)
            except TypeError:
                pass
    images = [im for im in data["images"] if isinstance(im, dict) and "id" in im and "file_name" in im]
    it = images
    if progress:
        from tqdm import tqdm

        it = tqdm(images, desc="check", unit="img")
    for im in it:
        if max_problems is not None and len(problems) >= max_problems:
            break
        try:
            ann = anns.get(im["id"])
        except TypeError:
            continue
        if ann is None or not isinstance(ann.get("segments_info"), list) or "file_name" not in ann:
            continue
        png = png_dir / str(ann["file_name"])
        try:
            pan = read_panoptic_png(png)
        except DataError as e:
            problems.append(str(e))
            continue
        segs = [s for s in ann["segments_info"] if isinstance(s, dict) and "id" in s]
        try:
            problems.extend(_check_pair(pan, segs, im, png))
        except TypeError:
            problems.append(f"{png}: segments_info of image {im['id']!r} is malformed")
        if image_dir is not None:
            path = Path(image_dir) / str(im["file_name"])
            try:
                with open_image(path) as pim:
                    iw, ih = pim.size
            except FileNotFoundError:
                problems.append(f"{path}: image not found")
                continue
            except OSError as e:
                problems.append(f"{path}: cannot read the image ({e})")
                continue
            except DataError as e:
                problems.append(str(e))
                continue
            if (ih, iw) != pan.shape:
                problems.append(f"{path}: image is {iw}x{ih} but its panoptic PNG {png.name} is {pan.shape[1]}x{pan.shape[0]}")
    return problems[:max_problems] if max_problems is not None else problems
