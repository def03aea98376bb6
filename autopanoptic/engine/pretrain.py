"""Backbone pretraining on an image-classification folder, and the checked weight hand-over.

The paper's recipe starts from an ImageNet-pretrained backbone (section 4: the supernet's backbone
is pretrained with batch 1024 for 300k iterations before the supernet moves to panoptic data; the
chosen backbone is pretrained again, standalone, at the retraining width). Two stages:

- :func:`pretrain_supernet`: the searchable backbone (:class:`~autopanoptic.nn.backbone.ShuffleNetSupernet`)
  plus a classification head (:func:`supernet_classifier`), trained with **strict fairness**: one
  optimizer step is one strict-fair cycle of the backbone space (``m = 4``: every choice of every
  layer exactly once per step), gradients normalised by usage. Its ``backbone.pt`` initialises
  ``train-supernet``.
- :func:`pretrain_standalone`: the chosen backbone alone (:class:`~autopanoptic.nn.backbone.ShuffleNetClassifier`,
  usually at the retraining width) as a plain classifier. Its ``backbone.pt`` initialises ``retrain``.

Both reuse the engine's loop :func:`autopanoptic.engine.train.train` (strict fairness, usage-normalised
gradients, SGD, schedules, atomic resumable checkpoints). That loop reads panoptic samples through
``engine.datasets.load_batch`` and sums the loss dict ``model(images, targets[, arch=])`` returns, so
a thin adapter is needed, and only that: :class:`ClassificationTask` (images -> normalised batch ->
logits -> ``{"loss_cls": cross-entropy}``) and a dataset view whose items carry the class label as
the single entry of ``instances.labels`` (the loop turns it into ``targets[i]["labels"] = label + 1``)
with no boxes or masks. Images are resized to a square ``image_size``; the loop's seeded horizontal
flips are the only augmentation.

Output folder (``OUT``)::

    pretrain.yaml     the PretrainConfig, backbone shape and classes (what was run)
    checkpoint.pt     resumable training state (the loop's checkpoint)
    losses.json       the loss log
    backbone.pt       the backbone weights and their shape: the hand-over file
    summary.json      steps, first/last loss, held-out top-1 accuracy

:func:`load_backbone_weights` loads ``backbone.pt`` (or a pretraining ``checkpoint.pt``) into any
model that contains a ShuffleNet backbone -- a panoptic supernet or standalone network, a bare
backbone, a classifier -- mapping between the supernet form (every choice) and the standalone form
(one choice per layer), and returns a :class:`LoadReport` of what was loaded, what is new and what
was unused. A different ``stage_blocks``, width, or (standalone into standalone) architecture is a
:class:`~autopanoptic.errors.CheckpointError` naming both sides.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
import yaml
from torch import nn

from autopanoptic.errors import CheckpointError, ConfigError
from autopanoptic.io import atomic_write_json, atomic_write_text
from autopanoptic.search.space import Arch

__all__ = [
    "BackboneShape",
    "ClassificationTask",
    "LoadReport",
    "PretrainConfig",
    "PretrainResult",
    "backbone_shape",
    "classification_accuracy",
    "load_backbone_weights",
    "load_pretrain_config",
    "pretrain_standalone",
    "pretrain_supernet",
    "read_backbone_choices",
    "save_backbone",
    "supernet_classifier",
]

BACKBONE_FORMAT = "autopanoptic-backbone-1"
"""Stored under ``backbone_meta.format`` in every hand-over file."""


def _positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not value > 0:
        raise ConfigError(f"pretrain.{attribute.name}: must be > 0, got {value!r}")


def _non_negative(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not value >= 0:
        raise ConfigError(f"pretrain.{attribute.name}: must be >= 0, got {value!r}")


def _val_fraction(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"pretrain.val_fraction: must be in [0, 1), got {value!r}")


def _schedule(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value not in ("cosine", "step", "constant"):
        raise ConfigError(f"pretrain.schedule: must be one of cosine, step, constant; got {value!r}")


@attrs.frozen
class PretrainConfig:
    """Classification pretraining. One step = one SGD step; for the supernet it is one strict-fair
    cycle of the backbone space (4 architectures), each on its own batch of ``batch_size`` images.

    The paper: batch 1024, 300k iterations on ImageNet. The defaults are a CPU-sized demo.
    ``val_fraction`` of the images are held out for the top-1 accuracy in ``summary.json``.
    """

    steps: int = attrs.field(default=100, converter=int, validator=_positive)
    batch_size: int = attrs.field(default=16, converter=int, validator=_positive)
    image_size: int = attrs.field(default=64, converter=int, validator=_positive)
    lr: float = attrs.field(default=0.1, converter=float, validator=_positive)
    momentum: float = attrs.field(default=0.9, converter=float, validator=_non_negative)
    weight_decay: float = attrs.field(default=4e-5, converter=float, validator=_non_negative)
    warmup_steps: int = attrs.field(default=0, converter=int, validator=_non_negative)
    schedule: str = attrs.field(default="cosine", validator=_schedule)
    milestones: tuple[int, ...] = attrs.field(default=(), converter=lambda v: tuple(int(x) for x in v))
    gamma: float = attrs.field(default=0.1, converter=float, validator=_positive)
    checkpoint_every: int = attrs.field(default=50, converter=int, validator=_positive)
    val_fraction: float = attrs.field(default=0.1, converter=float, validator=_val_fraction)
    flip: bool = attrs.field(default=True, converter=bool)
    seed: int = attrs.field(default=0, converter=int)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists for tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.asdict(self).items()}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], *, source: str = "pretrain config") -> PretrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are a :class:`ConfigError`."""
        names = {a.name for a in attrs.fields(cls)}
        unknown = sorted(set(obj) - names)
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {unknown}; known keys: {', '.join(sorted(names))}")
        try:
            return cls(**dict(obj))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{source}: {e}") from None


def load_pretrain_config(path: str | os.PathLike[str]) -> PretrainConfig:
    """Read a :class:`PretrainConfig` from YAML: either its fields at the top level, or the
    ``pretrain:`` section of a ``pretrain.yaml`` written by a previous run."""
    path = Path(path)
    try:
        obj = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such pretrain config file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("pretrain"), Mapping):
        obj = obj["pretrain"]
    if not isinstance(obj, Mapping):
        raise ConfigError(f"{path}: a pretrain config must be a mapping of keys to values")
    return PretrainConfig.from_dict(obj, source=str(path))


@attrs.frozen
class BackboneShape:
    """What fixes a backbone's tensors (``stage_blocks``, ``widths``) and its input normalisation."""

    stage_blocks: tuple[int, ...] = attrs.field(converter=lambda v: tuple(int(x) for x in v))
    widths: tuple[int, ...] = attrs.field(converter=lambda v: tuple(int(x) for x in v))
    image_mean: tuple[float, ...] = attrs.field(default=(0.485, 0.456, 0.406), converter=lambda v: tuple(float(x) for x in v))
    image_std: tuple[float, ...] = attrs.field(default=(0.229, 0.224, 0.225), converter=lambda v: tuple(float(x) for x in v))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists)."""
        return {k: list(v) for k, v in attrs.asdict(self).items()}


def backbone_shape(cfg: Any, which: str = "model") -> BackboneShape:
    """The backbone shape of a run :class:`~autopanoptic.config.Config`: ``which="model"`` is the
    supernet's (``model.preset`` + ``model.overrides``), ``"retrain"`` the retrained network's
    (``retrain.preset`` + overrides, falling back to the model's, as ``retrain`` builds it)."""
    from autopanoptic.nn.supernet import make_config

    def ov(pairs) -> dict[str, Any]:
        return {k: tuple(v) if isinstance(v, list) else v for k, v in pairs}

    if which == "model":
        preset, overrides = cfg.model.preset, ov(cfg.model.overrides)
    elif which == "retrain":
        rc = cfg.retrain
        preset = rc.preset or cfg.model.preset
        overrides = ov(rc.overrides) if rc.preset else {**ov(cfg.model.overrides), **ov(rc.overrides)}
    else:
        raise ConfigError(f"backbone width {which!r}: use 'model' (the supernet's) or 'retrain'")
    try:
        c = make_config(preset, 1, 1, **overrides)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{which}.preset / {which}.overrides: {str(e).splitlines()[0]}") from None
    return BackboneShape(c.stage_blocks, c.widths, c.image_mean, c.image_std)


def read_backbone_choices(cfg: Any, arch_path: str | os.PathLike[str]) -> tuple[int, ...]:
    """The backbone part of the architecture file ``arch_path`` (validated against the search space
    of ``cfg.model``, e.g. a run's ``arch.json``)."""
    from autopanoptic.nn.supernet import make_config
    from autopanoptic.search import load_arch

    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.model.overrides}
    try:
        space = make_config(cfg.model.preset, 1, 1, **overrides).search_space()
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model.preset / model.overrides: {str(e).splitlines()[0]}") from None
    arch = load_arch(space, arch_path)
    return tuple(arch[i] for i in space.groups["backbone"])


# ---- networks ------------------------------------------------------------------------------------
def supernet_classifier(stage_blocks: Sequence[int], widths: Sequence[int], num_classes: int) -> nn.Module:
    """The searchable backbone with a classification head: the ImageNet form
    :class:`~autopanoptic.nn.backbone.ShuffleNetClassifier` built on a
    :class:`~autopanoptic.nn.backbone.ShuffleNetSupernet`; ``net(x, arch)`` -> logits.

    >>> net = supernet_classifier((1, 1, 1, 1), (8, 16, 24, 32, 48), num_classes=3)
    >>> net(torch.zeros(2, 3, 32, 32), (0, 1, 2, 3)).shape
    torch.Size([2, 3])
    """
    from autopanoptic.nn.backbone import ShuffleNetClassifier, ShuffleNetSupernet

    return ShuffleNetClassifier(ShuffleNetSupernet(stage_blocks, widths), num_classes=num_classes)


class ClassificationTask(nn.Module):
    """Adapter to the engine's training loop: ``forward(images, targets, arch=None)`` stacks the
    ``3 x S x S`` images in ``[0, 1]``, normalises them like the panoptic network does, and returns
    ``{"loss_cls": cross_entropy}`` with the class of image ``i`` = ``targets[i]["labels"][0] - 1``.
    :meth:`logits` gives the class scores."""

    def __init__(self, net: nn.Module, image_mean: Sequence[float], image_std: Sequence[float]):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(list(image_mean), dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(image_std), dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def logits(self, images: Sequence[torch.Tensor] | torch.Tensor, arch: Arch | None = None) -> torch.Tensor:
        """Class logits of a list (or a batch tensor) of images in ``[0, 1]``."""
        x = images if isinstance(images, torch.Tensor) else torch.stack(list(images))
        x = (x - self.mean) / self.std
        return self.net(x) if arch is None else self.net(x, arch)

    def forward(self, images, targets=None, arch: Arch | None = None):
        """The loss dict in training (``targets`` given), else the logits."""
        out = self.logits(images, arch)
        if targets is None:
            return out
        labels = torch.stack([t["labels"][0] for t in targets]).to(out.device) - 1
        return {"loss_cls": nn.functional.cross_entropy(out, labels)}


class _TrainItems:
    """A classification dataset seen as the panoptic samples ``engine.datasets.to_tensors`` reads."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import numpy as np

        item = self.dataset[i]
        h, w = item["image"].shape[:2]
        return {
            "image": item["image"],
            "instances": {
                "boxes": np.zeros((0, 4), np.float32),
                "labels": np.array([item["label"]], np.int64),
                "masks": np.zeros((0, h, w), np.uint8),
            },
            "semantic": np.zeros((h, w), np.int64),
        }


@torch.no_grad()
def classification_accuracy(
    task: ClassificationTask,
    dataset: Any,
    indices: Sequence[int],
    *,
    archs: Sequence[Arch | None] = (None,),
    batch_size: int = 32,
    device: torch.device | str = "cpu",
) -> float:
    """Top-1 accuracy of ``task`` on ``dataset[indices]`` (items with ``image`` and ``label``),
    averaged over ``archs`` (backbone paths of a supernet; ``(None,)`` for a standalone network);
    ``nan`` for no images."""
    correct, total = _correct_and_total(task, dataset, indices, archs=archs, batch_size=batch_size, device=device)
    return correct / total if total else math.nan


@torch.no_grad()
def _correct_and_total(task, dataset, indices, *, archs, batch_size, device) -> tuple[int, int]:
    import numpy as np

    indices = [int(i) for i in indices]
    was = task.training
    task.eval()
    correct = total = 0
    try:
        for start in range(0, len(indices), batch_size):
            items = [dataset[i] for i in indices[start : start + batch_size]]
            x = torch.from_numpy(np.stack([it["image"] for it in items])).permute(0, 3, 1, 2).float().div_(255.0)
            y = torch.tensor([it["label"] for it in items])
            for arch in archs:
                pred = task.logits(x.to(device), arch).argmax(1).cpu()
                correct += int((pred == y).sum())
                total += len(items)
    finally:
        task.train(was)
    return correct, total


# ---- hand-over file ------------------------------------------------------------------------------
def _backbone_of(model: nn.Module) -> tuple[str, nn.Module]:
    """``(prefix, module)`` of the ShuffleNet backbone inside ``model`` (the shallowest one)."""
    from autopanoptic.nn.backbone import ShuffleNetBackbone, ShuffleNetSupernet

    found = [(name, m) for name, m in model.named_modules() if isinstance(m, (ShuffleNetSupernet, ShuffleNetBackbone))]
    if not found:
        raise CheckpointError(
            f"{type(model).__name__} has no ShuffleNet backbone (ShuffleNetSupernet or ShuffleNetBackbone) to load into"
        )
    name, module = min(found, key=lambda nm: nm[0].count(".") if nm[0] else -1)
    return (name + "." if name else ""), module


def _meta_of(backbone: nn.Module) -> dict[str, Any]:
    from autopanoptic.nn.backbone import ShuffleNetSupernet

    form = "supernet" if isinstance(backbone, ShuffleNetSupernet) else "standalone"
    meta = {"format": BACKBONE_FORMAT, "form": form, "stage_blocks": list(backbone.stage_blocks),
            "widths": list(backbone.widths)}
    if form == "standalone":
        meta["choices"] = list(backbone.choices)
    return meta


def save_backbone(model: nn.Module, path: str | os.PathLike[str], **extra: Any) -> Path:
    """Write the backbone inside ``model`` (weights + shape, see :func:`load_backbone_weights`) to
    ``path`` atomically; ``extra`` (e.g. ``classes``) is stored beside it."""
    from autopanoptic.engine.checkpoint import save_checkpoint

    _, backbone = _backbone_of(model)
    state = {k: v.detach().cpu() for k, v in backbone.state_dict().items()}
    return save_checkpoint(path, {"backbone_meta": _meta_of(backbone), "backbone": state, **extra})


@attrs.frozen
class LoadReport:
    """What :func:`load_backbone_weights` did. Names are the *model's* state-dict keys, except
    ``unused`` (the checkpoint's backbone keys nothing was loaded from)."""

    source: str
    checkpoint_form: str
    model_form: str
    loaded: tuple[str, ...]
    new: tuple[str, ...]
    unused: tuple[str, ...]
    new_in_backbone: tuple[str, ...]

    def summary(self) -> str:
        """One line for the user."""
        return (
            f"{self.source}: loaded {len(self.loaded)} backbone tensors ({self.checkpoint_form} -> {self.model_form}); "
            f"{len(self.new)} tensors keep their fresh values ({len(self.new_in_backbone)} of them in the backbone); "
            f"{len(self.unused)} checkpoint tensors unused"
        )

    def to_json(self) -> dict[str, Any]:
        """Plain data, e.g. to write ``init_report.json`` beside a run."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.asdict(self).items()}


_LAYER = re.compile(r"^layer_choices\.(\d+)\.(\d+)\.(.*)$")
_BLOCK = re.compile(r"^blocks\.(\d+)\.(.*)$")


def _read_handover(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from autopanoptic.engine.checkpoint import load_checkpoint

    state = load_checkpoint(path)
    if isinstance(state.get("backbone_meta"), Mapping) and isinstance(state.get("backbone"), Mapping):
        return dict(state["backbone_meta"]), dict(state["backbone"])
    fp = state.get("fingerprint") if isinstance(state.get("fingerprint"), Mapping) else {}
    meta = fp.get("backbone_meta")
    if isinstance(meta, Mapping) and isinstance(state.get("model"), Mapping):
        prefix = str(meta.get("prefix", "net.backbone."))
        weights = {k[len(prefix):]: v for k, v in state["model"].items() if k.startswith(prefix)}
        return dict(meta), weights
    raise CheckpointError(
        f"{path}: holds no backbone weights (not written by `autopanoptic pretrain` or `pretrain-supernet`); "
        "pass the backbone.pt of a pretraining folder"
    )


def load_backbone_weights(model: nn.Module, checkpoint_path: str | os.PathLike[str]) -> LoadReport:
    """Load pretrained backbone weights into the ShuffleNet backbone inside ``model``.

    ``checkpoint_path`` is a ``backbone.pt`` written by :func:`pretrain_supernet`,
    :func:`pretrain_standalone` or :func:`save_backbone` (or a pretraining ``checkpoint.pt``).
    Forms map as follows: supernet -> supernet and standalone -> standalone copy everything (the
    latter only for the same choices); supernet -> standalone takes each layer's chosen op (like
    ``extract``); standalone -> supernet fills each layer's pretrained op and leaves the other
    choices fresh (listed in ``new_in_backbone``). ``stage_blocks`` and ``widths`` must be equal.
    Nothing is changed when an error is raised.

    >>> from autopanoptic.nn.backbone import ShuffleNetSupernet
    >>> import tempfile, pathlib
    >>> p = save_backbone(ShuffleNetSupernet((1, 1, 1, 1), (8, 16, 24, 32, 48)), pathlib.Path(tempfile.mkdtemp()) / "b.pt")
    >>> r = load_backbone_weights(ShuffleNetSupernet((1, 1, 1, 1), (8, 16, 24, 32, 48)), p)
    >>> len(r.new), len(r.unused), len(r.loaded) > 0
    (0, 0, True)
    """
    path = Path(checkpoint_path)
    meta, weights = _read_handover(path)
    prefix, backbone = _backbone_of(model)
    target = _meta_of(backbone)
    if meta.get("format") != BACKBONE_FORMAT:
        raise CheckpointError(f"{path}: backbone format {meta.get('format')!r} is not {BACKBONE_FORMAT!r}; re-export it")
    if list(meta.get("stage_blocks", [])) != target["stage_blocks"]:
        raise CheckpointError(
            f"{path}: architecture mismatch: the checkpoint's backbone has stage_blocks {meta.get('stage_blocks')} "
            f"but the model's has {target['stage_blocks']}; pretrain with the model's preset"
        )
    if list(meta.get("widths", [])) != target["widths"]:
        raise CheckpointError(
            f"{path}: width mismatch: the checkpoint was pretrained at widths {meta.get('widths')} but the model's "
            f"backbone has widths {target['widths']}; pretrain at the model's width (for `retrain`, "
            "`autopanoptic pretrain` uses the retraining width)"
        )
    mapped: dict[str, str] = {}  # model backbone key -> checkpoint key
    src_form, dst_form = meta["form"], target["form"]
    if src_form == dst_form == "standalone":
        if list(meta["choices"]) != target["choices"]:
            from autopanoptic.search.spaces import BACKBONE_OPS

            i = next(i for i, (a, b) in enumerate(zip(meta["choices"], target["choices"])) if a != b)
            raise CheckpointError(
                f"{path}: architecture mismatch: backbone layer {i} is {BACKBONE_OPS[meta['choices'][i]]} in the "
                f"checkpoint but {BACKBONE_OPS[target['choices'][i]]} in the model; pretrain this architecture "
                "(`autopanoptic pretrain --arch`)"
            )
    for key in backbone.state_dict():
        src = key
        m_layer, m_block = _LAYER.match(key), _BLOCK.match(key)
        if src_form == "standalone" and dst_form == "supernet" and m_layer:
            i, c, rest = int(m_layer.group(1)), int(m_layer.group(2)), m_layer.group(3)
            src = f"blocks.{i}.{rest}" if meta["choices"][i] == c else None
        elif src_form == "supernet" and dst_form == "standalone" and m_block:
            i, rest = int(m_block.group(1)), m_block.group(2)
            src = f"layer_choices.{i}.{target['choices'][i]}.{rest}"
        if src is not None and src in weights:
            mapped[key] = src
    own = backbone.state_dict()
    bad = [(k, tuple(weights[s].shape), tuple(own[k].shape)) for k, s in mapped.items() if weights[s].shape != own[k].shape]
    if bad:
        k, a, b = bad[0]
        raise CheckpointError(f"{path}: tensor {k} is {a} in the checkpoint but {b} in the model; the backbones differ")
    if not mapped:
        raise CheckpointError(f"{path}: no backbone tensor matches the model; was it written for another network?")
    backbone.load_state_dict({k: weights[s] for k, s in mapped.items()}, strict=False)
    used = set(mapped.values())
    new_bb = tuple(prefix + k for k in own if k not in mapped)
    loaded = {prefix + k for k in mapped}
    return LoadReport(
        source=str(path),
        checkpoint_form=src_form,
        model_form=dst_form,
        loaded=tuple(prefix + k for k in mapped),
        new=tuple(k for k in model.state_dict() if k not in loaded),
        unused=tuple(k for k in weights if k not in used),
        new_in_backbone=new_bb,
    )


# ---- the two pretraining stages ------------------------------------------------------------------
@attrs.frozen
class PretrainResult:
    """What a pretraining stage did: the trained task model, the loop's result, and the files."""

    task: Any  # ClassificationTask
    steps: int
    resumed_from: int
    losses: tuple[dict[str, float], ...]
    accuracy: float
    backbone_path: Path
    summary_path: Path


def _run(
    task: ClassificationTask,
    dataset: Any,
    out_dir: Path,
    cfg: PretrainConfig,
    shape: BackboneShape,
    *,
    archs_for_step,
    eval_archs: Sequence[Arch | None],
    meta: dict[str, Any],
    device: Any,
    progress: bool,
    stop_after: int | None,
    desc: str,
    parallel: str,
) -> PretrainResult:
    from autopanoptic.data.imagefolder import split_indices
    from autopanoptic.data.metrics import json_safe
    from autopanoptic.engine import distributed
    from autopanoptic.engine.train import train

    main = distributed.world().is_main  # in a process group rank 0 alone writes OUT (train() included)
    train_idx, val_idx = split_indices(len(dataset), cfg.val_fraction, cfg.seed)
    classes = list(dataset.classes)
    info = {"pretrain": cfg.to_dict(), "shape": shape.to_dict(), "classes": classes,
            "data": str(Path(dataset.root).resolve()), **meta}
    if main:
        atomic_write_text(out_dir / "pretrain.yaml", yaml.safe_dump(info, sort_keys=False))
    fingerprint = {
        "pretrain": cfg.to_dict(), "shape": shape.to_dict(), "classes": classes,
        "backbone_meta": {**_meta_of(_backbone_of(task)[1]), "prefix": "net.backbone."}, **meta,
    }
    result = train(
        task, _TrainItems(dataset), train_idx, cfg, archs_for_step=archs_for_step,
        checkpoint_path=out_dir / "checkpoint.pt", losses_path=out_dir / "losses.json", fingerprint=fingerprint,
        device=device, stop_after=stop_after, flip=cfg.flip, progress=progress, desc=desc, parallel=parallel,
    )
    # each rank scores its share of the held-out images; the counts are summed (one process's accuracy)
    counts = distributed.all_gather_objects(_correct_and_total(
        task, dataset, distributed.shard(val_idx), archs=eval_archs, batch_size=max(cfg.batch_size, 8), device=device))
    total = sum(t for _, t in counts)
    acc = sum(c for c, _ in counts) / total if total else math.nan
    backbone_path = out_dir / "backbone.pt"
    if main:
        save_backbone(task, backbone_path, classes=classes, steps=result.steps)
    first = result.losses[0]["loss"] if result.losses else math.nan
    last = sum(r["loss"] for r in result.losses[-5:]) / max(1, len(result.losses[-5:])) if result.losses else math.nan
    summary = {
        "steps": result.steps, "finished": result.steps >= cfg.steps, "first_loss": first, "last_loss_mean5": last,
        "val_images": len(val_idx), "val_top1": acc, "backbone": str(backbone_path), **meta,
    }
    summary_path = out_dir / "summary.json"
    if main:
        atomic_write_json(summary_path, json_safe(summary))
    return PretrainResult(task=task, steps=result.steps, resumed_from=result.resumed_from, losses=result.losses,
                          accuracy=acc, backbone_path=backbone_path, summary_path=summary_path)


def pretrain_supernet(
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    shape: BackboneShape,
    cfg: PretrainConfig = PretrainConfig(),
    *,
    device: Any = "cpu",
    progress: bool = True,
    stop_after: int | None = None,
) -> PretrainResult:
    """Train the searchable backbone of ``shape`` + a classification head on the ImageFolder
    ``data_dir`` with strict fairness (each step = the strict-fair cycle of the backbone space for
    ``(cfg.seed, step)``); write ``out_dir`` (module docstring). Resumes from ``checkpoint.pt``.

    Example::

        shape = backbone_shape(load_config("tiny"))
        res = pretrain_supernet("imagenet/train", "runs/pre-super", shape, PretrainConfig(steps=1000))
        # then: load_backbone_weights(supernet, res.backbone_path)
    """
    from autopanoptic.data.imagefolder import ImageFolderDataset
    from autopanoptic.engine.train import fair_cycle_for_step

    out = Path(out_dir)
    dataset = ImageFolderDataset(data_dir, image_size=cfg.image_size)
    torch.manual_seed(cfg.seed)
    net = supernet_classifier(shape.stage_blocks, shape.widths, dataset.num_classes)
    task = ClassificationTask(net, shape.image_mean, shape.image_std)
    space = net.backbone.search_space
    eval_archs = fair_cycle_for_step(space, cfg.seed, cfg.steps)  # one cycle: every op once per layer
    return _run(task, dataset, out, cfg, shape, archs_for_step=lambda step: fair_cycle_for_step(space, cfg.seed, step),
                eval_archs=eval_archs, meta={"form": "supernet"}, device=device, progress=progress,
                stop_after=stop_after, desc="pretrain-supernet", parallel="cycle")


def pretrain_standalone(
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    choices: Sequence[int],
    shape: BackboneShape,
    cfg: PretrainConfig = PretrainConfig(),
    *,
    device: Any = "cpu",
    progress: bool = True,
    stop_after: int | None = None,
) -> PretrainResult:
    """Train the backbone of one architecture (``choices``: its backbone part) at ``shape`` (usually
    ``backbone_shape(cfg, "retrain")``) as a plain classifier on ``data_dir``; write ``out_dir``.

    Example::

        shape = backbone_shape(cfg, "retrain")
        res = pretrain_standalone("imagenet/train", "runs/pre", arch[:40], shape)
    """
    from autopanoptic.data.imagefolder import ImageFolderDataset
    from autopanoptic.errors import ArchitectureError
    from autopanoptic.nn.backbone import ShuffleNetClassifier

    out = Path(out_dir)
    dataset = ImageFolderDataset(data_dir, image_size=cfg.image_size)
    torch.manual_seed(cfg.seed)
    cs = [int(c) for c in choices]
    if len(cs) != sum(shape.stage_blocks):
        raise ArchitectureError(
            f"the backbone has {sum(shape.stage_blocks)} searchable layers but the architecture gives {len(cs)} "
            "backbone choices; use an architecture of the same search space"
        )
    net = ShuffleNetClassifier(cs, shape.stage_blocks, shape.widths, num_classes=dataset.num_classes)
    task = ClassificationTask(net, shape.image_mean, shape.image_std)
    return _run(task, dataset, out, cfg, shape, archs_for_step=lambda step: [None], eval_archs=(None,),
                meta={"form": "standalone", "choices": cs}, device=device, progress=progress,
                stop_after=stop_after, desc="pretrain", parallel="data")
