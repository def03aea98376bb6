"""The searchable ShuffleNetV2 backbone (DetNAS space, SPEC.md section 1) and its standalone forms.

- :class:`ShuffleNetSupernet`: stem + four stages of searchable layers, each layer holding all four
  candidate ops (:mod:`autopanoptic.nn.ops.blocks`) with their own weights. ``forward(x, choices)``
  runs only the chosen op of each layer and returns the stage outputs ``[C2, C3, C4, C5]``.
- :class:`ShuffleNetBackbone`: one architecture only (``extract`` copies weights out of the
  supernet; or build it fresh at another width, e.g. :data:`RETRAIN_WIDTHS`).
- :class:`ShuffleNetClassifier`: the ImageNet form (backbone + last ``1x1`` conv + global pool +
  1000-way classifier) used to compare parameter / MAC counts with DetNAS.

Strides: the stem is a ``3x3`` stride-2 conv (+ BN + ReLU) and the first block of each stage has
stride 2, so the stage outputs are at strides 4, 8, 16 and 32. There is **no max-pool** after the
stem: as in SPOS / DetNAS (and unlike torchvision's ShuffleNetV2, which reaches stride 4 before
stage 1 through a max-pool and so only has strides 8..32 in its three stages), the five stride-2
steps are the stem and the four stage entries. This is also what reproduces DetNAS's MAC counts
(``docs/benchmarks/backbone_counts.md``).

>>> import torch
>>> net = ShuffleNetSupernet(stage_blocks=(1, 1, 2, 1), widths=(8, 16, 24, 32, 48))
>>> [tuple(f.shape[1:]) for f in net(torch.zeros(1, 3, 64, 64), (0, 1, 2, 3, 0))]
[(16, 16, 16), (24, 8, 8), (32, 4, 4), (48, 2, 2)]
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from autopanoptic.errors import ArchitectureError, ConfigError
from autopanoptic.nn.ops.blocks import make_backbone_op
from autopanoptic.search.space import SearchSpace
from autopanoptic.search.spaces import BACKBONE_OPS, PAPER_BACKBONE_BLOCKS, auto_panoptic

__all__ = [
    "RETRAIN_WIDTHS",
    "SEARCH_WIDTHS",
    "ShuffleNetBackbone",
    "ShuffleNetClassifier",
    "ShuffleNetSupernet",
]

SEARCH_WIDTHS: tuple[int, ...] = (48, 96, 240, 480, 960)
"""Stem and stage widths of the search supernet (DetNAS "1.3G")."""

RETRAIN_WIDTHS: tuple[int, ...] = (72, 172, 432, 864, 1728)
"""Stem and stage widths for retraining the chosen architecture (DetNAS "3.8G", ResNet-50-like)."""


def _check_shape(stage_blocks: Sequence[int], widths: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    blocks = tuple(int(b) for b in stage_blocks)
    ws = tuple(int(w) for w in widths)
    if len(blocks) != 4 or any(b < 1 for b in blocks):
        raise ConfigError(f"stage_blocks needs four stage lengths >= 1, got {list(stage_blocks)}")
    if len(ws) != 5 or any(w < 1 for w in ws):
        raise ConfigError(f"widths needs five positive widths (stem, stage1..4), got {list(widths)}")
    if any(b <= a for a, b in zip(ws, ws[1:])) or any(w % 2 for w in ws[1:]):
        raise ConfigError(f"widths must increase strictly and the stage widths must be even, got {list(ws)}")
    return blocks, ws


def _stem(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))


def _layer_plan(blocks: tuple[int, ...], widths: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """``(in_channels, out_channels, stride)`` of every searchable layer, in order."""
    plan = []
    for s, n in enumerate(blocks):
        cin, cout = widths[s], widths[s + 1]
        plan.append((cin, cout, 2))
        plan += [(cout, cout, 1)] * (n - 1)
    return plan


def _stage_ends(blocks: tuple[int, ...]) -> tuple[int, ...]:
    ends, total = [], 0
    for n in blocks:
        total += n
        ends.append(total - 1)
    return tuple(ends)


class ShuffleNetSupernet(nn.Module):
    """The backbone supernet: ``sum(stage_blocks)`` searchable layers of four candidate ops each.

    Args:
        stage_blocks: searchable blocks per stage (paper: ``(8, 8, 16, 8)``); the first block of
            each stage has stride 2.
        widths: stem width and the four stage widths (paper search: :data:`SEARCH_WIDTHS`).

    Attributes:
        layer_choices: ``nn.ModuleList`` with one ``nn.ModuleList`` of candidate modules per layer,
            index = choice (the order of ``BACKBONE_OPS``). No weight sharing between choices.
        out_channels: ``[C2, C3, C4, C5]`` channels (``widths[1:]``).
        stage_blocks, widths: as given (tuples).

    ``forward(x, choices)`` -> list of the four stage outputs (strides 4, 8, 16, 32).

    >>> net = ShuffleNetSupernet((1, 1, 2, 1), (8, 16, 24, 32, 48))
    >>> len(net.layer_choices), [len(c) for c in net.layer_choices][0], net.out_channels
    (5, 4, [16, 24, 32, 48])
    """

    def __init__(
        self,
        stage_blocks: Sequence[int] = PAPER_BACKBONE_BLOCKS,
        widths: Sequence[int] = SEARCH_WIDTHS,
    ):
        super().__init__()
        self.stage_blocks, self.widths = _check_shape(stage_blocks, widths)
        self.stem = _stem(self.widths[0])
        self.layer_choices = nn.ModuleList(
            nn.ModuleList(make_backbone_op(op, cin, cout, stride) for op in BACKBONE_OPS)
            for cin, cout, stride in _layer_plan(self.stage_blocks, self.widths)
        )
        self.stage_ends = _stage_ends(self.stage_blocks)
        self.out_channels = list(self.widths[1:])

    @property
    def search_space(self) -> SearchSpace:
        """The backbone part of the Auto-Panoptic space for these ``stage_blocks``."""
        return auto_panoptic(backbone_blocks=self.stage_blocks).subspace("backbone")

    def _choices(self, choices: Any) -> tuple[int, ...]:
        try:
            cs = tuple(int(c) for c in choices)
        except (TypeError, ValueError):
            raise ArchitectureError(f"backbone choices must be a sequence of ints, got {choices!r}") from None
        if len(cs) != len(self.layer_choices):
            raise ArchitectureError(
                f"the backbone has {len(self.layer_choices)} searchable layers but got {len(cs)} choices; "
                "pass the backbone part of the architecture"
            )
        bad = [i for i, c in enumerate(cs) if not 0 <= c < len(BACKBONE_OPS)]
        if bad:
            raise ArchitectureError(f"backbone layer {bad[0]}: choice {cs[bad[0]]} is not in 0..{len(BACKBONE_OPS) - 1}")
        return cs

    def forward(self, x: torch.Tensor, choices: Sequence[int]) -> list[torch.Tensor]:
        """Stage outputs ``[C2, C3, C4, C5]`` of the path ``choices`` (one int per layer)."""
        cs = self._choices(choices)
        x = self.stem(x)
        outs = []
        ends = self.stage_ends
        for i, (layer, c) in enumerate(zip(self.layer_choices, cs)):
            x = layer[c](x)
            if i in ends:
                outs.append(x)
        return outs

    def extract(self, choices: Sequence[int]) -> ShuffleNetBackbone:
        """A standalone :class:`ShuffleNetBackbone` of the path ``choices`` with copies of its weights
        (and BatchNorm statistics); same outputs as ``self(x, choices)``, in the same train/eval mode.

        >>> import torch
        >>> sup = ShuffleNetSupernet((1, 1, 2, 1), (8, 16, 24, 32, 48)).eval()
        >>> x = torch.rand(1, 3, 32, 32)
        >>> net = sup.extract((3, 2, 1, 0, 3)).eval()
        >>> all(torch.equal(a, b) for a, b in zip(sup(x, (3, 2, 1, 0, 3)), net(x)))
        True
        """
        cs = self._choices(choices)
        net = ShuffleNetBackbone(cs, self.stage_blocks, self.widths, _build=False)
        net.stem = copy.deepcopy(self.stem)
        net.blocks = nn.ModuleList(copy.deepcopy(layer[c]) for layer, c in zip(self.layer_choices, cs))
        net.train(self.training)
        return net


class ShuffleNetBackbone(nn.Module):
    """The backbone of one architecture: the stem and the chosen op of every layer.

    Build it fresh (e.g. at the retraining width :data:`RETRAIN_WIDTHS`) or get it with weights from
    :meth:`ShuffleNetSupernet.extract`. ``forward(x)`` -> ``[C2, C3, C4, C5]``.

    >>> import torch
    >>> net = ShuffleNetBackbone((0, 1, 2, 3, 0), (1, 1, 2, 1), (8, 16, 24, 32, 48))
    >>> [f.shape[1] for f in net(torch.zeros(2, 3, 32, 32))]
    [16, 24, 32, 48]
    """

    def __init__(
        self,
        choices: Sequence[int],
        stage_blocks: Sequence[int] = PAPER_BACKBONE_BLOCKS,
        widths: Sequence[int] = RETRAIN_WIDTHS,
        *,
        _build: bool = True,
    ):
        super().__init__()
        self.stage_blocks, self.widths = _check_shape(stage_blocks, widths)
        plan = _layer_plan(self.stage_blocks, self.widths)
        try:
            cs = tuple(int(c) for c in choices)
        except (TypeError, ValueError):
            cs = ()
        if len(cs) != len(plan) or any(not 0 <= c < len(BACKBONE_OPS) for c in cs):
            raise ArchitectureError(
                f"need {len(plan)} backbone choices in 0..{len(BACKBONE_OPS) - 1} for stage_blocks "
                f"{list(self.stage_blocks)}, got {list(choices)}"
            )
        self.choices = cs
        self.stage_ends = _stage_ends(self.stage_blocks)
        self.out_channels = list(self.widths[1:])
        if _build:
            self.stem = _stem(self.widths[0])
            self.blocks = nn.ModuleList(
                make_backbone_op(BACKBONE_OPS[c], cin, cout, stride) for c, (cin, cout, stride) in zip(cs, plan)
            )

    @property
    def ops(self) -> tuple[str, ...]:
        """The op name of every layer."""
        return tuple(BACKBONE_OPS[c] for c in self.choices)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Stage outputs ``[C2, C3, C4, C5]`` (strides 4, 8, 16, 32)."""
        x = self.stem(x)
        outs = []
        ends = self.stage_ends
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in ends:
                outs.append(x)
        return outs


class ShuffleNetClassifier(nn.Module):
    """The ImageNet form of a backbone (for counting and pretraining), as in DetNAS: backbone, last
    ``1x1`` conv + BN + ReLU to ``last_channels`` (default ``widths[-1]``, DetNAS's 1728 at the
    3.8G width), global average pool, dropout 0.1, ``Linear(last_channels, num_classes, bias=False)``.

    ``choices`` may also be a ready :class:`ShuffleNetBackbone` or a :class:`ShuffleNetSupernet`
    (then ``forward(x, choices)`` and ``layer_choices`` work as on the supernet: the ImageNet form
    of the whole space, for :func:`autopanoptic.nn.counting.build_cost_table`).

    >>> import torch
    >>> net = ShuffleNetClassifier((0,) * 5, (1, 1, 2, 1), (8, 16, 24, 32, 48), num_classes=10)
    >>> net(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        choices: Sequence[int] | ShuffleNetBackbone | ShuffleNetSupernet,
        stage_blocks: Sequence[int] = PAPER_BACKBONE_BLOCKS,
        widths: Sequence[int] = RETRAIN_WIDTHS,
        last_channels: int | None = None,
        num_classes: int = 1000,
    ):
        super().__init__()
        if isinstance(choices, (ShuffleNetBackbone, ShuffleNetSupernet)):
            self.backbone = choices
        else:
            self.backbone = ShuffleNetBackbone(choices, stage_blocks, widths)
        cin = self.backbone.widths[-1]
        last = int(last_channels or cin)
        self.last_conv = nn.Sequential(nn.Conv2d(cin, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Linear(last, num_classes, bias=False)

    @property
    def layer_choices(self) -> nn.ModuleList | None:
        """The backbone supernet's ``layer_choices`` (``None`` for a single architecture)."""
        if isinstance(self.backbone, ShuffleNetSupernet):
            return self.backbone.layer_choices
        return None

    def forward(self, x: torch.Tensor, choices: Sequence[int] | None = None) -> torch.Tensor:
        """Class logits ``N x num_classes`` (``choices``: the path, only when built on a supernet)."""
        feats = self.backbone(x) if choices is None else self.backbone(x, choices)
        x = self.last_conv(feats[-1])
        return self.classifier(self.dropout(self.pool(x).flatten(1)))
