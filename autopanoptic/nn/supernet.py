"""The searchable panoptic supernet: composition, presets and :func:`build_supernet`.

Data flow of one forward pass (SPEC.md section 1, "Order"):

``images -> normalise + pad (batch) -> ShuffleNet backbone (C2..C5) -> FPN with GroupNorm (P2..P5)
+ P6 by max-pooling`` then

- f2b context: P2..P6 global-average-pooled and concatenated;
- semantic subnet on the raw P2..P5 (shared weights, one choice per depth) -> 4 maps at stride 4;
- b2f context: the 4 subnet outputs pooled and concatenated;
- P2..P6 recalibrated by b2f -> torchvision RPN and RoIHeads (box head: two GroupNorm FC layers;
  mask head: RoIAlign 14x14 -> searchable layers -> 2x2 deconv -> per-class logits);
- subnet outputs recalibrated by f2b -> concat -> 1x1 conv -> logits at stride 4 -> upsample x4.

Training mode returns the loss dict (Mask R-CNN losses with weight 1.0, ``loss_semantic`` with its
weight, 0.3, already applied); eval mode returns per image ``{"panoptic", "segments", "semantic"}``
after :func:`autopanoptic.nn.fusion.panoptic_fusion`.

**Image handling.** Images are *not* resized: the network normalises them (ImageNet mean/std) and
pads the batch at the bottom/right to a multiple of 32; predictions are cropped back, so they are
at the original image size. Resize images (and targets) to the scale you want before the call
(the ``tiny`` preset expects about 128 px, the paper presets about 800 px).

>>> import torch
>>> net = build_supernet("tiny", num_thing_classes=2, num_stuff_classes=3).eval()
>>> arch = net.search_space.sample(0)
>>> out = net([torch.rand(3, 64, 80)], arch=arch)
>>> out[0]["panoptic"].shape, out[0]["panoptic"].dtype
(torch.Size([64, 80]), torch.int32)
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads, paste_masks_in_image
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign, roi_align
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from autopanoptic.errors import ArchitectureError, ConfigError
from autopanoptic.nn.attention import AttentionLayers, pooled_context
from autopanoptic.nn.fusion import COCO_REFERENCE_AREA, panoptic_fusion
from autopanoptic.nn.heads import MaskHead, SemanticClassifier, SemanticSubnet, semantic_loss
from autopanoptic.nn.ops.heads import group_norm
from autopanoptic.search.space import Arch, SearchSpace
from autopanoptic.search.spaces import HEAD_OPS, INTER_RATIOS, auto_panoptic

__all__ = [
    "PRESETS",
    "BoxHead",
    "PanopticModel",
    "PanopticSupernet",
    "SupernetConfig",
    "build_supernet",
    "load_config",
    "postprocess",
    "save_config",
]

_FEATURE_NAMES = ("0", "1", "2", "3")  # P2..P5 in the FPN's OrderedDict; P6 is "pool"


def _int_tuple(x: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in x)


def _float_tuple(x: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in x)


def _positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    vals = value if isinstance(value, tuple) else (value,)
    if any(v <= 0 for v in vals):
        raise ConfigError(f"supernet config: {attribute.name} must be positive, got {value!r}")


def _even_widths(instance: Any, attribute: attrs.Attribute, value: tuple[int, ...]) -> None:
    if len(value) != 5 or any(v <= 0 or v % 2 for v in value):
        raise ConfigError(f"supernet config: widths needs 5 positive even numbers (stem, stage1..4), got {list(value)}")


def _four_stages(instance: Any, attribute: attrs.Attribute, value: tuple[int, ...]) -> None:
    if len(value) != 4 or any(v < 1 for v in value):
        raise ConfigError(f"supernet config: stage_blocks needs four stage lengths >= 1, got {list(value)}")


@attrs.frozen
class SupernetConfig:
    """Everything that fixes the shape of a panoptic (super)network; a frozen value.

    ``widths`` are (stem, stage1..4) channel counts, ``stage_blocks`` the searchable blocks per
    backbone stage. ``image_size`` is the nominal (square) input size used by counting and the
    benchmarks; the network itself accepts any size. Save/load with :func:`save_config` /
    :func:`load_config` (YAML or JSON).
    """

    num_thing_classes: int = attrs.field(converter=int, validator=_positive)
    num_stuff_classes: int = attrs.field(converter=int, validator=_positive)
    preset: str = "custom"
    stage_blocks: tuple[int, ...] = attrs.field(default=(8, 8, 16, 8), converter=_int_tuple, validator=_four_stages)
    widths: tuple[int, ...] = attrs.field(default=(48, 96, 240, 480, 960), converter=_int_tuple, validator=_even_widths)
    fpn_channels: int = attrs.field(default=256, converter=int, validator=_positive)
    semantic_channels: int = attrs.field(default=128, converter=int, validator=_positive)
    mask_layers: int = attrs.field(default=4, converter=int, validator=_positive)
    semantic_layers: int = attrs.field(default=3, converter=int, validator=_positive)
    box_head_dim: int = attrs.field(default=1024, converter=int, validator=_positive)
    anchor_sizes: tuple[int, ...] = attrs.field(default=(32, 64, 128, 256, 512), converter=_int_tuple)
    aspect_ratios: tuple[float, ...] = attrs.field(default=(0.5, 1.0, 2.0), converter=_float_tuple)
    rpn_pre_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_test: int = 1000
    rpn_batch_size_per_image: int = 256
    box_batch_size_per_image: int = 512
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    detections_per_img: int = 100
    image_size: int = attrs.field(default=800, converter=int, validator=_positive)
    size_divisible: int = 32
    image_mean: tuple[float, ...] = attrs.field(default=(0.485, 0.456, 0.406), converter=_float_tuple)
    image_std: tuple[float, ...] = attrs.field(default=(0.229, 0.224, 0.225), converter=_float_tuple)
    semantic_loss_weight: float = 0.3
    instance_score_threshold: float = 0.5
    overlap_threshold: float = 0.5
    stuff_area: float = 4096.0
    reference_area: float = float(COCO_REFERENCE_AREA)

    @anchor_sizes.validator
    def _check_anchors(self, attribute: attrs.Attribute, value: tuple[int, ...]) -> None:
        if len(value) != 5 or any(v <= 0 for v in value):
            raise ConfigError(f"supernet config: anchor_sizes needs 5 positive sizes (P2..P6), got {list(value)}")

    def search_space(self) -> SearchSpace:
        """The search space of networks of this shape (``auto_panoptic`` with these layer counts)."""
        return auto_panoptic(self.stage_blocks, self.mask_layers, self.semantic_layers)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (lists for tuples), for YAML / JSON."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.asdict(self).items()}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> SupernetConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {a.name for a in attrs.fields(cls)}
        unknown = sorted(set(obj) - names)
        if unknown:
            raise ConfigError(f"supernet config: unknown field(s) {unknown}; valid fields are {sorted(names)}")
        try:
            return cls(**dict(obj))
        except TypeError as e:
            raise ConfigError(f"supernet config: {e}") from None


PRESETS: dict[str, dict[str, Any]] = {
    # A CPU demo network: 5 backbone blocks, narrow layers, ~128 px images.
    "tiny": dict(
        stage_blocks=(1, 1, 2, 1),
        widths=(16, 32, 64, 128, 256),
        fpn_channels=32,
        semantic_channels=16,
        box_head_dim=128,
        anchor_sizes=(8, 16, 32, 64, 128),
        rpn_pre_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=150,
        rpn_post_nms_top_n_train=100,
        rpn_post_nms_top_n_test=50,
        rpn_batch_size_per_image=64,
        box_batch_size_per_image=64,
        detections_per_img=20,
        image_size=128,
    ),
    # The paper's search supernet (DetNAS "1.3G" widths).
    "paper-search": dict(stage_blocks=(8, 8, 16, 8), widths=(48, 96, 240, 480, 960)),
    # The paper's retraining width (DetNAS "3.8G", ResNet-50-like).
    "paper-retrain": dict(stage_blocks=(8, 8, 16, 8), widths=(72, 172, 432, 864, 1728)),
}
"""Preset name -> :class:`SupernetConfig` fields (besides the class counts)."""


def make_config(preset: str, num_thing_classes: int, num_stuff_classes: int, **overrides: Any) -> SupernetConfig:
    """The :class:`SupernetConfig` of ``preset`` with ``overrides`` applied.

    >>> make_config("paper-retrain", 80, 53).widths
    (72, 172, 432, 864, 1728)
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown supernet preset {preset!r}; choose one of {sorted(PRESETS)}")
    fields = {**PRESETS[preset], **overrides}
    fields.update(preset=preset, num_thing_classes=num_thing_classes, num_stuff_classes=num_stuff_classes)
    return SupernetConfig.from_dict(fields)


def save_config(config: SupernetConfig, path: str | os.PathLike[str]) -> Path:
    """Write ``config`` as YAML (``.yaml`` / ``.yml``) or JSON (anything else), atomically."""
    from autopanoptic.io import atomic_write_json, atomic_write_text

    path = Path(path)
    if path.suffix in (".yaml", ".yml"):
        import yaml

        return atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
    return atomic_write_json(path, config.to_dict())


def load_config(path: str | os.PathLike[str]) -> SupernetConfig:
    """Read a config written by :func:`save_config`."""
    import json

    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such supernet config file") from None
    try:
        obj = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: cannot parse supernet config ({e})") from None
    if not isinstance(obj, Mapping):
        raise ConfigError(f"{path}: a supernet config must be a mapping")
    try:
        return SupernetConfig.from_dict(obj)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


class BoxHead(nn.Module):
    """The box head: two fully connected layers of ``dim`` units, each with GroupNorm and ReLU."""

    def __init__(self, in_features: int, dim: int):
        super().__init__()
        self.fc6 = nn.Linear(in_features, dim)
        self.norm6 = group_norm(dim)
        self.fc7 = nn.Linear(dim, dim)
        self.norm7 = group_norm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.norm6(self.fc6(x.flatten(start_dim=1))))
        return torch.relu(self.norm7(self.fc7(x)))


class PanopticModel(nn.Module):
    """Shared composition of :class:`PanopticSupernet` and the standalone
    :class:`autopanoptic.nn.standalone.PanopticNetwork`.

    ``head_candidates`` holds, for each of the mask then semantic layers, the head op names the
    layer offers; ``inter_candidates`` for each of the f2b then b2f layers, the ratios. A subclass
    supplies the backbone and how to run it.
    """

    def __init__(
        self,
        config: SupernetConfig,
        backbone: nn.Module,
        head_candidates: Sequence[Sequence[str]],
        inter_candidates: Sequence[Sequence[int]],
    ):
        super().__init__()
        c = config
        self.config = c
        self.backbone = backbone
        in_channels = list(_backbone_out_channels(backbone, c))
        F_, S_ = c.fpn_channels, c.semantic_channels
        self.fpn = FeaturePyramidNetwork(in_channels, F_, extra_blocks=LastLevelMaxPool(), norm_layer=group_norm)
        m, s = c.mask_layers, c.semantic_layers
        self.semantic_subnet = SemanticSubnet([F_] + [S_] * s, head_candidates[m : m + s])
        self.f2b = AttentionLayers(5 * F_, S_, inter_candidates[:4])
        self.b2f = AttentionLayers(4 * S_, F_, inter_candidates[4:9])
        self.semantic_classifier = SemanticClassifier(4 * S_, c.num_stuff_classes + 1, upsample=4)

        anchors = AnchorGenerator(tuple((a,) for a in c.anchor_sizes), (tuple(c.aspect_ratios),) * 5)
        self.rpn = RegionProposalNetwork(
            anchors,
            RPNHead(F_, len(c.aspect_ratios)),
            fg_iou_thresh=0.7,
            bg_iou_thresh=0.3,
            batch_size_per_image=c.rpn_batch_size_per_image,
            positive_fraction=0.5,
            pre_nms_top_n=dict(training=c.rpn_pre_nms_top_n_train, testing=c.rpn_pre_nms_top_n_test),
            post_nms_top_n=dict(training=c.rpn_post_nms_top_n_train, testing=c.rpn_post_nms_top_n_test),
            nms_thresh=0.7,
        )
        self.roi_heads = RoIHeads(
            box_roi_pool=MultiScaleRoIAlign(list(_FEATURE_NAMES), output_size=7, sampling_ratio=2),
            box_head=BoxHead(F_ * 7 * 7, c.box_head_dim),
            box_predictor=FastRCNNPredictor(c.box_head_dim, c.num_thing_classes + 1),
            fg_iou_thresh=0.5,
            bg_iou_thresh=0.5,
            batch_size_per_image=c.box_batch_size_per_image,
            positive_fraction=0.25,
            bbox_reg_weights=None,
            score_thresh=c.box_score_thresh,
            nms_thresh=c.box_nms_thresh,
            detections_per_img=c.detections_per_img,
            mask_roi_pool=MultiScaleRoIAlign(list(_FEATURE_NAMES), output_size=14, sampling_ratio=2),
            mask_head=MaskHead(F_, head_candidates[:m]),
            mask_predictor=MaskRCNNPredictor(F_, F_, c.num_thing_classes + 1),
        )
        self.register_buffer("pixel_mean", torch.tensor(c.image_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(c.image_std).view(3, 1, 1), persistent=False)

    # ---- parts -------------------------------------------------------------------------------
    @property
    def mask_head(self) -> MaskHead:
        return self.roi_heads.mask_head

    @property
    def head_layer_choices(self) -> list[nn.ModuleList]:
        """The searchable non-backbone layers in space order: mask, semantic, f2b, b2f."""
        return [
            *self.mask_head.layers,
            *self.semantic_subnet.layers,
            *self.f2b.layers,
            *self.b2f.layers,
        ]

    def _run_backbone(self, x: torch.Tensor, choices: Sequence[int]) -> list[torch.Tensor]:
        raise NotImplementedError

    def _split(self, arch: Sequence[int]) -> tuple[tuple[int, ...], ...]:
        c = self.config
        nb, m, s = sum(c.stage_blocks), c.mask_layers, c.semantic_layers
        cuts = [0, nb, nb + m, nb + m + s, nb + m + s + 4, nb + m + s + 9]
        return tuple(tuple(arch[a:b]) for a, b in zip(cuts[:-1], cuts[1:]))

    # ---- input handling ----------------------------------------------------------------------
    def preprocess(self, images: Sequence[torch.Tensor]) -> ImageList:
        """Normalise and pad a list of ``3 x H x W`` images in ``[0, 1]`` into one batch."""
        if isinstance(images, torch.Tensor) and images.dim() == 3:
            images = [images]
        if len(images) == 0:
            raise ValueError("images must be a non-empty list of 3 x H x W tensors")
        device = self.pixel_mean.device
        sizes = []
        for i, img in enumerate(images):
            if not isinstance(img, torch.Tensor) or img.dim() != 3 or img.shape[0] != 3:
                shape = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
                raise ValueError(f"image {i} must be a float tensor 3 x H x W, got {shape}")
            sizes.append((int(img.shape[1]), int(img.shape[2])))
        d = self.config.size_divisible
        hmax = -(-max(h for h, _ in sizes) // d) * d
        wmax = -(-max(w for _, w in sizes) // d) * d
        # Functional padding (not writes into a zero batch), so that a traced export (ONNX) keeps the
        # image as the graph's input.
        batch = torch.stack([
            nn.functional.pad((img.to(device=device, dtype=torch.float32) - self.pixel_mean) / self.pixel_std,
                              (0, wmax - w, 0, hmax - h))
            for img, (h, w) in zip(images, sizes)
        ])
        return ImageList(batch, sizes)

    def _prepare_targets(self, targets: Sequence[Mapping[str, torch.Tensor]], image_list: ImageList):
        if len(targets) != len(image_list.image_sizes):
            raise ValueError(f"got {len(targets)} targets for {len(image_list.image_sizes)} images")
        device = image_list.tensors.device
        hp, wp = image_list.tensors.shape[-2:]
        semantic = torch.full((len(targets), hp, wp), 255, dtype=torch.int64, device=device)
        det_targets = []
        for i, (t, (h, w)) in enumerate(zip(targets, image_list.image_sizes)):
            missing = [k for k in ("boxes", "labels", "masks", "semantic") if k not in t]
            if missing:
                raise ValueError(f"target {i} lacks {missing}; needs boxes, labels, masks and semantic")
            sem = torch.as_tensor(t["semantic"], device=device)
            if tuple(sem.shape) != (h, w):
                raise ValueError(f"target {i}: semantic is {tuple(sem.shape)} but the image is {(h, w)}")
            semantic[i, :h, :w] = sem.to(torch.int64)
            boxes = torch.as_tensor(t["boxes"], dtype=torch.float32, device=device).reshape(-1, 4)
            masks = torch.as_tensor(t["masks"], device=device)
            det_targets.append(
                {
                    "boxes": boxes,
                    "labels": torch.as_tensor(t["labels"], dtype=torch.int64, device=device).reshape(-1),
                    "masks": masks.reshape(len(boxes), h, w) if masks.numel() == 0 else masks,
                }
            )
        return det_targets, semantic

    # ---- the forward pass --------------------------------------------------------------------
    def _dense(self, x: torch.Tensor, bb, sem, f2b, b2f):
        """Backbone, FPN, semantic subnet and both attentions: (recalibrated FPN features as an
        OrderedDict "0".."3", "pool"; semantic logits at the input resolution)."""
        feats = self._run_backbone(x, bb)
        fpn = self.fpn(OrderedDict(zip(_FEATURE_NAMES, feats)))
        levels = list(fpn.values())  # P2..P6
        f2b_context = pooled_context(levels)
        sem_feats = self.semantic_subnet(levels[:4], sem)
        b2f_context = pooled_context(sem_feats)
        levels = self.b2f(b2f_context, levels, b2f)
        sem_feats = self.f2b(f2b_context, sem_feats, f2b)
        logits = self.semantic_classifier(sem_feats)
        return OrderedDict(zip(fpn.keys(), levels)), logits

    def _path(self, arch: Any) -> Arch:
        """The architecture in this module's own indexing (validated)."""
        raise NotImplementedError

    def cost_forward(self, arch: Any = None, image_size: int | None = None) -> None:
        """A deterministic pass through every part of the path ``arch`` at inference cost, for
        counting multiply-accumulates with module hooks (works on the ``meta`` device).

        One ``image_size`` x ``image_size`` image (default ``config.image_size``, padded to a
        multiple of 32); the RPN head on all levels; the box head and predictor on
        ``rpn_post_nms_top_n_test`` RoIs; the mask head and predictor on ``detections_per_img`` RoIs.
        Proposal selection, NMS and fusion are not multiply-accumulates and are skipped.
        """
        c = self.config
        bb, mask, sem, f2b, b2f = self._split(self._path(arch))
        size = int(image_size or c.image_size)
        padded = -(-size // c.size_divisible) * c.size_divisible
        device = self.pixel_mean.device
        with torch.no_grad():
            x = torch.zeros(1, 3, padded, padded, device=device)
            features, _ = self._dense(x, bb, sem, f2b, b2f)
            levels = list(features.values())
            self.rpn.head(levels)
            box = torch.tensor([[0.0, 0.0, size / 2, size / 2]], device=device)
            rois = box.expand(c.rpn_post_nms_top_n_test, 4)
            box_feats = roi_align(levels[0], [rois], 7, spatial_scale=0.25, sampling_ratio=2)
            self.roi_heads.box_predictor(self.roi_heads.box_head(box_feats))
            mask_feats = roi_align(levels[0], [rois[: c.detections_per_img]], 14, spatial_scale=0.25, sampling_ratio=2)
            self.roi_heads.mask_predictor(self.mask_head(mask_feats, mask))

    def _forward(self, images, targets, arch: Sequence[int], raw: bool = False):
        bb, mask, sem, f2b, b2f = self._split(arch)
        image_list = self.preprocess(images)
        if self.training and targets is None:
            raise ValueError("training mode needs targets (or call .eval() for predictions)")
        det_targets, sem_targets = (None, None)
        if targets is not None:
            det_targets, sem_targets = self._prepare_targets(targets, image_list)

        features, logits = self._dense(image_list.tensors, bb, sem, f2b, b2f)

        proposals, rpn_losses = self.rpn(image_list, features, det_targets if self.training else None)
        self.mask_head.active = tuple(mask)
        try:
            detections, roi_losses = self.roi_heads(
                features, proposals, image_list.image_sizes, det_targets if self.training else None
            )
        finally:
            self.mask_head.active = None

        if self.training:
            losses = {**rpn_losses, **roi_losses}
            losses["loss_semantic"] = self.config.semantic_loss_weight * semantic_loss(logits, sem_targets)
            return losses
        if raw:
            return {"semantic_logits": logits, "detections": detections, "image_sizes": image_list.image_sizes}
        return self._postprocess(logits, detections, image_list.image_sizes)

    def _postprocess(self, logits, detections, image_sizes) -> list[dict[str, Any]]:
        # fp32 with autocast off, even when the forward ran under mixed precision (engine/amp.py)
        with torch.autocast(logits.device.type, enabled=False):
            return [postprocess(self.config, lg.float(), {k: v.float() if v.is_floating_point() else v
                                                          for k, v in det.items()}, size)
                    for lg, det, size in zip(logits, detections, image_sizes)]


def postprocess(config: SupernetConfig, logits: torch.Tensor, det: Mapping[str, torch.Tensor],
                size: tuple[int, int]) -> dict[str, Any]:
    """One image's eval-mode prediction from the network's raw outputs: ``logits`` (``C x H' x W'``
    semantic logits, cropped here to ``size`` = ``(H, W)``) and ``det`` (``boxes`` ``N x 4``,
    ``scores``, ``labels`` 1-based, ``masks`` ``N x 1 x 28 x 28`` probabilities, as torchvision's
    RoIHeads returns them): masks pasted and thresholded at 0.5, then
    :func:`~autopanoptic.nn.fusion.panoptic_fusion` with ``config``'s thresholds.

    Returns ``{"panoptic", "segments", "semantic", "instances"}`` as the network's forward does.
    """
    c = config
    h, w = size
    semantic = logits[:, :h, :w].argmax(dim=0)
    if len(det["boxes"]):
        masks = paste_masks_in_image(det["masks"], det["boxes"], (h, w))[:, 0] > 0.5
    else:
        masks = torch.zeros((0, h, w), dtype=torch.bool, device=semantic.device)
    panoptic, segments = panoptic_fusion(
        masks,
        det["scores"],
        det["labels"] - 1,
        semantic,
        c.num_stuff_classes,
        score_threshold=c.instance_score_threshold,
        overlap_threshold=c.overlap_threshold,
        stuff_area=c.stuff_area,
        reference_area=c.reference_area,
    )
    instances = {"boxes": det["boxes"], "scores": det["scores"], "labels": det["labels"] - 1, "masks": masks}
    return {"panoptic": panoptic, "segments": segments, "semantic": semantic, "instances": instances}


def _backbone_out_channels(backbone: nn.Module, config: SupernetConfig) -> tuple[int, ...]:
    oc = getattr(backbone, "out_channels", None)
    if oc is None:
        return tuple(config.widths[1:])
    if isinstance(oc, int):
        raise ConfigError("the backbone must expose out_channels for each of its four stages")
    return tuple(int(v) for v in oc)


class PanopticSupernet(PanopticModel):
    """The weight-sharing supernet: every searchable layer holds all of its candidate ops.

    Call ``supernet(images, targets=None, arch=arch)``; only the ops of ``arch`` run, so only their
    parameters (and the shared, unsearched ones) receive gradients. Build it with
    :func:`build_supernet`.
    """

    def __init__(self, config: SupernetConfig):
        from autopanoptic.nn.backbone import ShuffleNetSupernet

        space = config.search_space()
        m, s = config.mask_layers, config.semantic_layers
        super().__init__(
            config,
            ShuffleNetSupernet(config.stage_blocks, config.widths),
            [HEAD_OPS] * (m + s),
            [INTER_RATIOS] * 9,
        )
        self.search_space: SearchSpace = space

    @property
    def layer_choices(self) -> list[nn.ModuleList]:
        """One ``nn.ModuleList`` of candidate modules per layer of :attr:`search_space`, in order."""
        return [*self.backbone.layer_choices, *self.head_layer_choices]

    def _run_backbone(self, x: torch.Tensor, choices: Sequence[int]) -> list[torch.Tensor]:
        return list(self.backbone(x, tuple(choices)))

    def validate_arch(self, arch: Any) -> Arch:
        """``arch`` as a tuple of ints, checked against :attr:`search_space`."""
        if arch is None:
            raise ArchitectureError("the supernet needs arch=...: one choice per layer of supernet.search_space")
        return self.search_space.validate(arch)

    def _path(self, arch: Any) -> Arch:
        return self.validate_arch(arch)

    def forward(self, images, targets=None, arch: Any = None):
        """Losses (training mode) or panoptic predictions (eval mode) of the path ``arch``."""
        return self._forward(images, targets, self.validate_arch(arch))

    def raw_outputs(self, images, arch: Any) -> dict[str, Any]:
        """Eval-mode outputs before fusion: ``semantic_logits`` (padded batch), ``detections``
        (torchvision's per-image dicts, 28x28 mask probabilities) and ``image_sizes``."""
        return self._forward(images, None, self.validate_arch(arch), raw=True)

    def backbone_forward(self, images, arch: Any) -> list[torch.Tensor]:
        """Normalise/batch ``images`` and run only the backbone on the path ``arch`` (the only part
        with BatchNorm: used for BN recalibration)."""
        bb = self._split(self.validate_arch(arch))[0]
        return self._run_backbone(self.preprocess(images).tensors, bb)


def build_supernet(preset: str, num_thing_classes: int, num_stuff_classes: int, **overrides: Any) -> PanopticSupernet:
    """Build the panoptic supernet of ``preset`` (``tiny``, ``paper-search``, ``paper-retrain``).

    ``overrides`` replace any :class:`SupernetConfig` field (e.g. ``stage_blocks=(1, 1, 1, 1)``).

    >>> net = build_supernet("tiny", 3, 2)
    >>> len(net.layer_choices) == len(net.search_space) == 5 + 16
    True
    """
    return PanopticSupernet(make_config(preset, num_thing_classes, num_stuff_classes, **overrides))


def supernet_from_config(config: SupernetConfig) -> PanopticSupernet:
    """Build a supernet from a :class:`SupernetConfig` (e.g. one read with :func:`load_config`)."""
    return PanopticSupernet(config)
