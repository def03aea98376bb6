"""Evaluation: run a network over a split, PQ in memory, and export in the COCO panoptic format.

:func:`evaluate` sums one :class:`~autopanoptic.data.PQStats` per image, in image order; with
``export_dir`` it also writes ``predictions.json`` plus one PNG per image in ``predictions/`` and
``ground_truth.json`` (the split's own annotations, pointing at the dataset's PNG folder), which the
COCO panoptic API's ``pq_compute`` accepts as they are.

Everything :func:`evaluate` computes for one image is an :class:`ImageResult`, handed to its
``on_image`` callback; the steps after the loop (writing the JSON files, box / mask AP, mIoU) are
:func:`finish`, and the bytes of a prediction PNG and a drawing come from
:func:`encode_prediction_png` and :func:`draw_prediction`. A distributed evaluation
(:func:`autopanoptic.engine.distributed.evaluate_sharded`) uses the same four pieces, so its files
and numbers are those of one process by construction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from autopanoptic.io import atomic_write_bytes, atomic_write_json
from autopanoptic.search.space import Arch

__all__ = [
    "EvalResult",
    "ImageResult",
    "draw_prediction",
    "encode_prediction_png",
    "evaluate",
    "finish",
    "prediction_segments",
    "summary_table",
]


@attrs.frozen
class EvalResult:
    """PQ statistics of a split, and where predictions were exported (if they were)."""

    stats: Any  # autopanoptic.data.PQStats
    n_images: int
    predictions_json: Path | None = None
    ground_truth_json: Path | None = None
    drawn: tuple[Path, ...] = ()
    ap: dict[str, Any] | None = None  # autopanoptic.data.metrics.instance_ap (bbox, segm)
    semantic: dict[str, Any] | None = None  # SemanticConfusion.summary()

    def summary(self) -> dict[str, Any]:
        """``{"All"|"Things"|"Stuff": {pq, sq, rq, n}, "per_class": ...}`` (fractions)."""
        return self.stats.summary()

    @property
    def pq(self) -> float:
        return float(self.summary()["All"]["pq"])


def prediction_segments(pan: np.ndarray, segments: Sequence[dict[str, Any]], categories) -> list[dict[str, Any]]:
    """Network segments (``id``, ``label``, ``isthing``, ``score``) as COCO ``segments_info``
    (``id``, ``category_id``, ``iscrowd``, ``area``, ``bbox``), keeping only segments with pixels."""
    ids, counts = np.unique(pan, return_counts=True)
    area = dict(zip(ids.tolist(), counts.tolist()))
    out = []
    for s in segments:
        sid = int(s["id"])
        if sid == 0 or area.get(sid, 0) == 0:
            continue
        ys, xs = np.nonzero(pan == sid)
        out.append(
            {
                "id": sid,
                "category_id": int(categories.to_category_id(int(s["label"]), bool(s["isthing"]))),
                "iscrowd": 0,
                "area": int(area[sid]),
                "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)],
                **({"score": float(s["score"])} if s.get("score") is not None else {}),
            }
        )
    return out


@attrs.frozen(eq=False)
class ImageResult:
    """What :func:`evaluate` computed for one image (given to its ``on_image`` callback).

    ``panoptic`` is the predicted ``H x W`` id map, ``segments_info`` its COCO segments (see
    :func:`prediction_segments`), ``png_name`` the file name of its exported PNG, ``stats`` the
    image's own PQ statistics; ``ap`` (:class:`~autopanoptic.data.metrics.APRecords`) and
    ``confusion`` (:class:`~autopanoptic.data.metrics.SemanticConfusion`) are set with
    ``branch_metrics`` only.
    """

    index: int
    image_id: Any
    png_name: str
    panoptic: np.ndarray
    segments_info: list[dict[str, Any]]
    stats: Any  # autopanoptic.data.PQStats
    ap: Any = None  # autopanoptic.data.metrics.APRecords
    confusion: Any = None  # autopanoptic.data.metrics.SemanticConfusion

    def annotation(self) -> dict[str, Any]:
        """The image's entry of ``predictions.json``."""
        return {"image_id": self.image_id, "file_name": self.png_name, "segments_info": self.segments_info}


def encode_prediction_png(pan: np.ndarray) -> bytes:
    """The bytes of the exported PNG of a predicted id map (RGB, id = R + 256 G + 256^2 B)."""
    import io

    from PIL import Image

    from autopanoptic.data.format import id2rgb

    buf = io.BytesIO()
    Image.fromarray(id2rgb(pan)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def draw_prediction(path: str | Path, image: Any, pan: np.ndarray, segments_info: Sequence[dict[str, Any]],
                    categories) -> Path:
    """Draw a prediction over its image as a PNG at ``path`` (small images enlarged, nearest neighbour,
    so the report stays readable)."""
    from autopanoptic.data import save_panoptic_overlay

    f = max(1, 256 // max(1, min(pan.shape)))
    big = lambda a: np.repeat(np.repeat(np.asarray(a), f, axis=0), f, axis=1)  # noqa: E731
    return save_panoptic_overlay(Path(path), big(image), big(pan), segments_info, categories)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    dataset: Any,
    indices: Sequence[int],
    *,
    arch: Arch | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 4,
    export_dir: str | Path | None = None,
    draw: int = 0,
    draw_dir: str | Path | None = None,
    progress: bool = False,
    desc: str = "evaluate",
    on_image: Any = None,
    branch_metrics: bool = False,
    amp: str = "off",
    resize: Any = None,
    loader_workers: int = 0,
) -> EvalResult:
    """PQ of ``model`` (a supernet with ``arch``, or a standalone network with ``arch=None``) on
    ``dataset[indices]``.

    Example::

        res = evaluate(net, ds, range(len(ds)), export_dir="run/eval")
        print(res.summary()["All"])

    ``on_image(result)`` is called once per image, in image order, with its :class:`ImageResult`
    (the prediction, its PQ statistics and, with ``branch_metrics``, its AP records and confusion
    matrix); :func:`autopanoptic.engine.distributed.evaluate_sharded` uses it to gather the images
    of every rank. The callback should keep only what it needs (``panoptic`` is a full-size map).
    ``amp`` (``off`` / ``bf16`` / ``fp16``): the network's forward under autocast. ``resize`` (a
    :class:`~autopanoptic.engine.resize.Resize`): the network sees each image resized, and its
    prediction is mapped back to the image's own size before it is scored. ``loader_workers``:
    DataLoader processes reading and decoding the batches ahead, in order
    (:func:`autopanoptic.engine.loader.eval_batches`).
    """
    from autopanoptic.engine.loader import eval_batches
    from autopanoptic.engine.amp import autocast as amp_context
    from autopanoptic.engine.resize import to_original
    from autopanoptic.data import PQStats, pq_stats
    from autopanoptic.data import metrics as M

    categories = dataset.categories
    device = torch.device(device)
    was_training = model.training
    model.eval()
    stats = PQStats.zeros(categories)
    ap_parts: list = []
    confusion = M.SemanticConfusion.zeros(categories.num_stuff + 1)
    annotations, drawn = [], []
    export_dir = Path(export_dir) if export_dir is not None else None
    indices = [int(i) for i in indices]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(indices), desc=desc, unit="img", dynamic_ncols=True, leave=False)
    try:
        chunks = [indices[start : start + batch_size] for start in range(0, len(indices), batch_size)]
        for chunk, (samples, images) in zip(chunks, eval_batches(dataset, chunks, resize=resize,
                                                                 workers=loader_workers, device=device)):
            images = [x.to(device, non_blocking=True) for x in images]
            with amp_context(amp, device):  # post-processing and fusion stay fp32 (engine/amp.py)
                outs = model(images) if arch is None else model(images, arch=arch)
            if resize is not None and resize.enabled:
                outs = [to_original(o, np.asarray(s["panoptic"]).shape[:2]) for o, s in zip(outs, samples)]
            for i, sample, out in zip(chunk, samples, outs):
                pan = out["panoptic"].detach().cpu().numpy().astype(np.int64)
                segs = prediction_segments(pan, out["segments"], categories)
                image_stats = pq_stats(
                    np.asarray(sample["panoptic"]), sample["segments"], pan, segs, categories,
                    source=str(sample["file_name"]),
                )
                stats = stats + image_stats
                records = image_confusion = None
                if branch_metrics:
                    inst = {k: v.detach().cpu().numpy() for k, v in out["instances"].items()}
                    records = M.ap_records_from_sample(sample, inst, categories)
                    image_confusion = M.semantic_confusion(
                        sample["semantic"], out["semantic"].detach().cpu().numpy(), categories.num_stuff + 1
                    )
                    ap_parts.append(records)
                    confusion = confusion + image_confusion
                result = ImageResult(
                    index=i, image_id=sample["image_id"], png_name=Path(str(sample["file_name"])).with_suffix(".png").name,
                    panoptic=pan, segments_info=segs, stats=image_stats, ap=records, confusion=image_confusion,
                )
                if on_image is not None:  # e.g. autopanoptic.engine.distributed gathers the images of every rank
                    on_image(result)
                if export_dir is not None:
                    atomic_write_bytes(export_dir / "predictions" / result.png_name, encode_prediction_png(pan))
                    annotations.append(result.annotation())
                if draw_dir is not None and len(drawn) < draw:
                    drawn.append(draw_prediction(Path(draw_dir) / f"prediction_{len(drawn)}.png", sample["image"], pan,
                                                 segs, categories))
            if bar is not None:
                bar.update(len(chunk))
                bar.set_postfix(pq=f"{100 * stats.summary()['All']['pq']:.1f}")
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    return finish(dataset, indices, stats, export_dir=export_dir, annotations=annotations, drawn=drawn,
                  ap_records=M.APRecords.concat(ap_parts) if branch_metrics else None,
                  confusion=confusion if branch_metrics else None)


def finish(dataset: Any, indices: Sequence[int], stats: Any, *, export_dir: str | Path | None = None,
           annotations: Sequence[dict[str, Any]] = (), drawn: Sequence[Path] = (), ap_records: Any = None,
           confusion: Any = None) -> EvalResult:
    """The end of an evaluation, from what its images gave (in image order): with ``export_dir``,
    write ``predictions.json`` (``annotations``) and ``ground_truth.json``; with ``ap_records`` and
    ``confusion``, box / mask AP (pycocotools) and the semantic summary."""
    from autopanoptic.data import metrics as M

    categories = dataset.categories
    pred_json = gt_json = None
    if export_dir is not None:
        export_dir = Path(export_dir)
        gt_json = _write_ground_truth(dataset, indices, export_dir / "ground_truth.json")
        pred_json = atomic_write_json(
            export_dir / "predictions.json", {"annotations": list(annotations), "categories": categories.to_json()},
            indent=None,
        )
    ap = semantic = None
    if ap_records is not None:
        ap = M.instance_ap(ap_records, categories.num_things, names=[categories.name(c) for c in categories.thing_ids])
    if confusion is not None:
        semantic = confusion.summary(M.semantic_class_names(categories))
    return EvalResult(stats=stats, n_images=len(indices), predictions_json=pred_json, ground_truth_json=gt_json,
                      drawn=tuple(drawn), ap=ap, semantic=semantic)


def _write_ground_truth(dataset: Any, indices: Sequence[int], path: Path) -> Path:
    """The split's ground truth as a COCO panoptic JSON (its PNGs stay in the dataset's folder)."""
    data = json.loads(Path(dataset.json_path).read_text())
    keep = {dataset.images[i]["id"] for i in indices}
    images = [im for im in data["images"] if im["id"] in keep]
    anns = [a for a in data["annotations"] if a["image_id"] in keep]
    out = {k: v for k, v in data.items() if k not in ("images", "annotations")}
    out.update(images=images, annotations=anns, png_folder=str(Path(dataset.png_dir).resolve()))
    return atomic_write_json(path, out, indent=None)


def summary_table(summary: dict[str, Any]) -> str:
    """A small text table of PQ / SQ / RQ (in %) for All, Things and Stuff.

    >>> print(summary_table({g: {"pq": 0.5, "sq": 0.75, "rq": 2 / 3, "n": 2} for g in ("All", "Things", "Stuff")}))
               PQ     SQ     RQ   n
    All      50.0   75.0   66.7   2
    Things   50.0   75.0   66.7   2
    Stuff    50.0   75.0   66.7   2
    """
    lines = [f"{'':6} {'PQ':>6} {'SQ':>6} {'RQ':>6} {'n':>3}"]
    for g in ("All", "Things", "Stuff"):
        r = summary[g]
        lines.append(f"{g:6} {100 * r['pq']:6.1f} {100 * r['sq']:6.1f} {100 * r['rq']:6.1f} {r['n']:3d}")
    return "\n".join(lines)
