"""Export a retrained network for use without this library: ONNX (checked with ONNX Runtime) or
plain PyTorch (``state_dict`` + ``arch.json`` + the network's config).

**ONNX.** :func:`export_onnx` traces the standalone network -- backbone, FPN, attention, RPN, RoI
heads and semantic head -- for one image (batch 1) of a fixed size with PyTorch's TorchScript-based
exporter (the ``torch.export``-based one cannot trace torchvision's NMS, whose output size depends
on the data). The graph has one input and five outputs:

- ``image``: ``1 x 3 x H x W`` float32 RGB in ``[0, 1]``, not normalised (the graph normalises and
  pads to a multiple of 32 itself); ``H x W`` is the size given at export;
- ``boxes`` ``N x 4`` (x1, y1, x2, y2 in pixels), ``scores`` ``N``, ``labels`` ``N`` (int64, 1-based
  thing classes), ``mask_probs`` ``N x 1 x 28 x 28`` (mask probabilities in each box),
  ``semantic_logits`` ``1 x (S + 1) x H x W`` (stuff classes, then "any thing").

The panoptic fusion stays outside the graph, a plain function: :func:`prediction_from_outputs`
turns the five outputs into the same panoptic map and segments the PyTorch network predicts
(it pastes the masks and calls :func:`autopanoptic.nn.fusion.panoptic_fusion`).

:func:`check_onnx` runs ONNX Runtime and PyTorch on a few evaluation images and compares: the
same number of detections, every output within ``rtol = atol = 1e-4`` (:data:`TOLERANCE`), and the
PQ of the fused ONNX predictions equal to the PQ of PyTorch's. Deformable convolutions
(``dfconv3x3``, ``dfconv5x5``) have no ONNX Runtime kernel: an architecture using one is refused
with an :class:`ExportError` naming the layer and the op.

**Plain PyTorch.** :func:`export_torch` writes ``state_dict.pt``, ``arch.json`` and
``network.yaml``; three lines rebuild the network::

    config = autopanoptic.nn.supernet.load_config("export/network.yaml")
    net = autopanoptic.nn.build_network(config, autopanoptic.search.load_arch(config.search_space(), "export/arch.json"))
    net.load_state_dict(torch.load("export/state_dict.pt", weights_only=True))

``onnx`` and ``onnxruntime`` are an optional extra: ``pip install 'autopanoptic[onnx]'``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from autopanoptic.errors import AutopanopticError
from autopanoptic.io import atomic_write_bytes

__all__ = [
    "DEFAULT_OPSET",
    "DEFORMABLE_OPS",
    "OUTPUT_NAMES",
    "TOLERANCE",
    "ExportError",
    "OnnxCheck",
    "OnnxRuntimeNetwork",
    "check_onnx",
    "deformable_layers",
    "export_onnx",
    "export_torch",
    "prediction_from_outputs",
]

DEFAULT_OPSET = 17
DEFORMABLE_OPS = ("dfconv3x3", "dfconv5x5")
OUTPUT_NAMES = ("boxes", "scores", "labels", "mask_probs", "semantic_logits")
TOLERANCE = 1e-4  # rtol and atol of every output, ONNX Runtime against PyTorch

ONNX_MISSING = "ONNX export needs onnx and onnxruntime, which are not installed: pip install 'autopanoptic[onnx]'"


class ExportError(AutopanopticError, RuntimeError):
    """The network cannot be exported, or the export does not reproduce PyTorch's outputs."""


def _require_onnx():
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise ExportError(ONNX_MISSING) from None
    return onnx, onnxruntime


def deformable_layers(net) -> list[tuple[str, str]]:
    """``(layer, op)`` of every layer of a standalone network that uses a deformable convolution."""
    named = net.search_space.arch_to_named(net.arch)
    return [(layer, op) for group in named.values() for layer, op in group.items() if op in DEFORMABLE_OPS]


class _Traceable(torch.nn.Module):
    """The network as a function of one image tensor returning the five raw outputs."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor):
        out = self.net.raw_outputs([image[0]])
        det = out["detections"][0]
        h, w = out["image_sizes"][0]
        return det["boxes"], det["scores"], det["labels"], det["masks"], out["semantic_logits"][:, :, :h, :w]


def _torch_outputs(net, image: torch.Tensor) -> list[np.ndarray]:
    with torch.no_grad():
        return [t.detach().cpu().numpy() for t in _Traceable(net).eval()(image[None])]


def export_onnx(net, path: str | os.PathLike[str], *, size: tuple[int, int], opset: int = DEFAULT_OPSET) -> Path:
    """Export the standalone network ``net`` (eval mode, CPU) to ``path`` for ``size = (H, W)`` images.

    Raises :class:`ExportError` for an architecture with a deformable convolution, or when the
    ``onnx`` extra is missing or the exporter fails (its first line is kept).
    """
    bad = deformable_layers(net)
    if bad:
        layer, op = bad[0]
        raise ExportError(
            f"layer {layer} uses {op}, a deformable convolution, which ONNX Runtime has no kernel for; use the "
            "plain PyTorch export (--format torch), or search with model.exclude_ops=[dfconv3x3, dfconv5x5]"
        )
    onnx, _ = _require_onnx()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = net.eval().cpu()
    example = torch.rand(1, 3, int(size[0]), int(size[1]), generator=torch.Generator().manual_seed(0))
    tmp = path.with_name(path.name + ".tmp")
    try:
        with warnings.catch_warnings():  # the tracer's warnings are about shapes fixed on purpose (batch 1)
            warnings.simplefilter("ignore")
            torch.onnx.export(_Traceable(net).eval(), (example,), str(tmp), dynamo=False, opset_version=int(opset),
                              input_names=["image"], output_names=list(OUTPUT_NAMES))
        onnx.checker.check_model(str(tmp))
    except Exception as e:  # the exporter raises many types; the user needs its first line
        tmp.unlink(missing_ok=True)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"ONNX export (opset {opset}) failed: {first}") from None
    os.replace(tmp, path)
    return path


def prediction_from_outputs(outputs: Sequence[Any], config, size: tuple[int, int] | None = None) -> dict[str, Any]:
    """The panoptic prediction of one image from the five ONNX outputs (arrays or tensors, in
    :data:`OUTPUT_NAMES` order) and the network's config (``network.yaml``, read with
    :func:`autopanoptic.nn.supernet.load_config`): ``{"panoptic", "segments", "semantic",
    "instances"}``, exactly as the PyTorch network's forward returns it.

    Example (``session`` an ``onnxruntime.InferenceSession`` of ``model.onnx``)::

        outputs = session.run(None, {"image": image[None].numpy()})
        pred = prediction_from_outputs(outputs, load_config("export/network.yaml"))
        pred["panoptic"]  # H x W segment ids; pred["segments"]: id, label, isthing, score
    """
    from autopanoptic.nn.supernet import postprocess

    boxes, scores, labels, masks, logits = (torch.as_tensor(np.asarray(o)) for o in outputs)
    h, w = size if size is not None else tuple(logits.shape[-2:])
    det = {"boxes": boxes, "scores": scores, "labels": labels, "masks": masks}
    return postprocess(config, logits[0], det, (int(h), int(w)))


class OnnxRuntimeNetwork(torch.nn.Module):
    """An exported network run by ONNX Runtime, called like the PyTorch network in eval mode
    (``net(images) -> [prediction, ...]``), e.g. by :func:`autopanoptic.engine.evaluate.evaluate`."""

    def __init__(self, path: str | os.PathLike[str], config):
        super().__init__()
        _, ort = _require_onnx()
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.config = config

    def run(self, image: torch.Tensor) -> list[np.ndarray]:
        """The five raw outputs for one ``3 x H x W`` image."""
        return self.session.run(None, {"image": image[None].detach().cpu().numpy().astype(np.float32)})

    def forward(self, images):
        return [prediction_from_outputs(self.run(img), self.config) for img in images]


@attrs.frozen
class OnnxCheck:
    """ONNX Runtime against PyTorch on ``n_images`` evaluation images."""

    n_images: int
    max_abs_diff: dict[str, float]  # per output, over the images
    same_detections: bool  # the same number of detections on every image
    within_tolerance: bool  # every output within rtol = atol = TOLERANCE
    same_panoptic: int  # images whose fused panoptic maps and segments are identical
    pq_torch: float
    pq_onnx: float

    @property
    def ok(self) -> bool:
        return self.same_detections and self.within_tolerance and self.pq_torch == self.pq_onnx

    def to_json(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "tolerance": TOLERANCE, "ok": self.ok}


def _labels(prediction: dict[str, Any]) -> list[tuple[int, int, bool]]:
    return [(s["id"], s["label"], s["isthing"]) for s in prediction["segments"]]


def check_onnx(net, path: str | os.PathLike[str], dataset: Any, indices: Sequence[int]) -> OnnxCheck:
    """Compare ONNX Runtime with PyTorch on ``dataset[indices]`` (images of the exported size)."""
    from autopanoptic.engine.datasets import to_tensors
    from autopanoptic.engine.evaluate import evaluate

    net = net.eval().cpu()
    onnx_net = OnnxRuntimeNetwork(path, net.config)
    diffs = {name: 0.0 for name in OUTPUT_NAMES}
    same, close, same_panoptic = True, True, 0
    for i in indices:
        image = to_tensors(dataset[int(i)])[0]
        ours, theirs = _torch_outputs(net, image), onnx_net.run(image)
        a, b = prediction_from_outputs(ours, net.config), prediction_from_outputs(theirs, net.config)
        same_panoptic += int(torch.equal(a["panoptic"], b["panoptic"]) and _labels(a) == _labels(b))
        for name, x, y in zip(OUTPUT_NAMES, ours, theirs):
            if x.shape != y.shape:
                same = False
                continue
            if x.size:
                diffs[name] = max(diffs[name], float(np.abs(x.astype(np.float64) - y.astype(np.float64)).max()))
                close = close and bool(np.allclose(y, x, rtol=TOLERANCE, atol=TOLERANCE))
    pq_torch = evaluate(net, dataset, indices, batch_size=1).pq
    pq_onnx = evaluate(onnx_net, dataset, indices, batch_size=1).pq
    return OnnxCheck(n_images=len(indices), max_abs_diff=diffs, same_detections=same, within_tolerance=close,
                     same_panoptic=same_panoptic, pq_torch=pq_torch, pq_onnx=pq_onnx)


def export_torch(net, folder: str | os.PathLike[str]) -> Path:
    """Write ``state_dict.pt``, ``arch.json`` and ``network.yaml`` of ``net`` into ``folder``."""
    import io

    from autopanoptic.nn.supernet import save_config
    from autopanoptic.search import save_arch

    folder = Path(folder)
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, buf)
    atomic_write_bytes(folder / "state_dict.pt", buf.getvalue())
    save_arch(net.search_space, net.arch, folder / "arch.json")
    save_config(net.config, folder / "network.yaml")
    return folder


def same_size_images(dataset: Any, indices: Sequence[int], n: int) -> tuple[tuple[int, int], list[int]]:
    """The size of the first image of ``indices`` and up to ``n`` images of that size."""
    chosen: list[int] = []
    size: tuple[int, int] | None = None
    for i in indices:
        h, w = np.asarray(dataset[int(i)]["image"]).shape[:2]
        if size is None:
            size = (int(h), int(w))
        if (h, w) == size:
            chosen.append(int(i))
        if len(chosen) == n:
            break
    if size is None:
        raise ExportError("the evaluation split is empty: nothing to check the export on")
    return size, chosen


def export_run(cfg, run, *, format: str = "onnx", opset: int = DEFAULT_OPSET, images: int = 4,
               progress: bool = False) -> dict[str, Any]:
    """Export the run's retrained network into ``<run>/export/``.

    ``format="onnx"``: ``model.onnx`` for images of the first evaluation image's size, checked on
    up to ``images`` evaluation images of that size; the result is written to
    ``export/onnx_check.json`` and an :class:`ExportError` raised if the check fails (the files are
    kept for inspection). ``format="torch"``: :func:`export_torch`. Returns what was written.
    """
    from autopanoptic.engine import pipeline
    from autopanoptic.io import atomic_write_json

    if format not in ("onnx", "torch"):
        raise ExportError(f"unknown export format {format!r}; use onnx or torch")
    if format == "onnx":
        _require_onnx()  # say so before loading anything
    data = pipeline.prepare_data(cfg, run, progress=progress)
    net, _, steps = pipeline.load_retrained(cfg, run, data, device="cpu")
    folder = run.path("export")
    if format == "torch":
        export_torch(net, folder)
        return {"format": "torch", "folder": str(folder), "retrain_steps": steps}
    size, check_images = same_size_images(data.eval, data.splits.eval, images)
    path = export_onnx(net, folder / "model.onnx", size=size, opset=opset)
    check = check_onnx(net, path, data.eval, check_images).to_json()
    result = {"format": "onnx", "path": str(path), "opset": int(opset), "size": list(size),
              "retrain_steps": steps, "check": check}
    atomic_write_json(folder / "onnx_check.json", result)
    if not check["ok"]:
        worst = max(check["max_abs_diff"], key=check["max_abs_diff"].get)
        raise ExportError(
            f"{path}: ONNX Runtime does not reproduce PyTorch (largest difference {check['max_abs_diff'][worst]:.3g} "
            f"in {worst}, tolerance {TOLERANCE}; PQ {check['pq_onnx']:.6f} against {check['pq_torch']:.6f}); see "
            f"{folder / 'onnx_check.json'}"
        )
    return result
