"""The searchable heads: the mask head, the semantic subnet and the semantic classifier.

- :class:`MaskHead`: RoI features (``14 x 14``) through ``mask_layers`` searchable head layers
  (``C -> C``); torchvision's ``MaskRCNNPredictor`` then does the ``2 x 2`` deconvolution to
  ``28 x 28`` and the per-class mask logits.
- :class:`SemanticSubnet`: ``semantic_layers`` searchable layers (``C_fpn -> C_sem -> C_sem ...``),
  **one set of weights and one choice per depth shared by P2..P5**; every output is upsampled
  (bilinear) to the size of P2 (stride 4).
- :class:`SemanticClassifier`: the recalibrated subnet outputs concatenated, a ``1 x 1`` conv to
  ``num_stuff + 1`` logits (every stuff class plus one "any thing" class) at stride 4, upsampled x4.
- :func:`semantic_loss`: cross-entropy with ``255`` ignored, normalised by the labelled pixels.

A searchable layer is an ``nn.ModuleList`` of candidate ops (:mod:`autopanoptic.nn.ops.heads`);
a supernet holds all of ``HEAD_OPS`` in every layer, a standalone network only the chosen one.

>>> import torch
>>> from autopanoptic.search.spaces import HEAD_OPS
>>> sub = SemanticSubnet([8, 4, 4], [HEAD_OPS] * 2)
>>> feats = [torch.zeros(1, 8, 16 // 2**i, 16 // 2**i) for i in range(4)]
>>> [tuple(o.shape) for o in sub(feats, (0, 2))]
[(1, 4, 16, 16), (1, 4, 16, 16), (1, 4, 16, 16), (1, 4, 16, 16)]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from autopanoptic.nn.ops.heads import make_head_op

__all__ = ["MaskHead", "SearchableStack", "SemanticClassifier", "SemanticSubnet", "semantic_loss"]


class SearchableStack(nn.Module):
    """A chain of searchable head layers; layer ``i`` maps ``channels[i]`` to ``channels[i + 1]``
    and offers the ops named in ``candidates[i]``.

    >>> stack = SearchableStack([4, 6, 6], [("dwconv3x3", "atconv5x5"), ("dfconv3x3",)])
    >>> stack(torch.zeros(1, 4, 5, 5), (1, 0)).shape
    torch.Size([1, 6, 5, 5])
    """

    def __init__(self, channels: Sequence[int], candidates: Sequence[Sequence[str]]):
        super().__init__()
        if len(channels) != len(candidates) + 1:
            raise ValueError(f"need len(channels) == layers + 1, got {len(channels)} channels for {len(candidates)} layers")
        self.layers = nn.ModuleList(
            nn.ModuleList(make_head_op(op, cin, cout) for op in ops)
            for ops, cin, cout in zip(candidates, channels[:-1], channels[1:])
        )

    def forward(self, x: torch.Tensor, choices: Sequence[int]) -> torch.Tensor:
        if len(choices) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} choices, got {len(choices)}")
        for layer, c in zip(self.layers, choices):
            x = layer[c](x)
        return x


class MaskHead(SearchableStack):
    """The searchable mask head, used as torchvision ``RoIHeads.mask_head``.

    ``RoIHeads`` calls ``mask_head(features)`` without an architecture, so the owning network sets
    :attr:`active` (a tuple of choices) for the duration of its forward pass; an explicit
    ``choices`` argument takes precedence.
    """

    def __init__(self, channels: int, candidates: Sequence[Sequence[str]]):
        super().__init__([channels] * (len(candidates) + 1), candidates)
        self.out_channels = channels
        self.active: tuple[int, ...] | None = None

    def forward(self, x: torch.Tensor, choices: Sequence[int] | None = None) -> torch.Tensor:
        choices = self.active if choices is None else choices
        if choices is None:
            raise RuntimeError("MaskHead has no active architecture: pass choices or set .active")
        return super().forward(x, choices)


class SemanticSubnet(SearchableStack):
    """The semantic subnet, shared by the FPN levels P2..P5 (one set of weights, one choice per
    depth). ``forward(features, choices)`` returns one ``N x C_sem x H2 x W2`` map per level, at the
    size of the first (stride 4) level."""

    def forward(self, features: Sequence[torch.Tensor], choices: Sequence[int]) -> list[torch.Tensor]:  # type: ignore[override]
        size = features[0].shape[-2:]
        outs = []
        for f in features:
            y = super().forward(f, choices)
            if y.shape[-2:] != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            outs.append(y)
        return outs


class SemanticClassifier(nn.Module):
    """Concatenate the subnet outputs, ``1 x 1`` conv to ``num_classes`` logits (stride 4), upsample
    by ``upsample`` (bilinear) to the input resolution.

    >>> clf = SemanticClassifier(2 * 4, 3)
    >>> clf([torch.zeros(1, 4, 5, 5)] * 2).shape
    torch.Size([1, 3, 20, 20])
    """

    def __init__(self, in_channels: int, num_classes: int, upsample: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, num_classes, 1)
        self.upsample = upsample

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        logits = self.conv(torch.cat(list(features), dim=1))
        return F.interpolate(logits, scale_factor=self.upsample, mode="bilinear", align_corners=False)


def semantic_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Pixel cross-entropy, ``ignore_index`` ignored, summed and divided by the number of labelled
    pixels (zero, with a gradient path, when nothing is labelled).

    ``logits`` is ``N x K x H' x W'`` and ``target`` ``N x H x W``; a size mismatch is resolved by
    cropping the logits (padding at the bottom/right) or padding the target with ``ignore_index``.

    >>> logits = torch.zeros(1, 3, 2, 2)
    >>> round(float(semantic_loss(logits, torch.tensor([[[0, 1], [255, 2]]]))), 4)
    1.0986
    """
    logits = logits.float()  # fp32 under mixed precision too
    h, w = target.shape[-2:]
    lh, lw = logits.shape[-2:]
    if (lh, lw) != (h, w):
        if lh >= h and lw >= w:
            logits = logits[..., :h, :w]
        else:
            target = F.pad(target, (0, max(0, lw - w), 0, max(0, lh - h)), value=ignore_index)[..., :lh, :lw]
    total = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum")
    labelled = (target != ignore_index).sum().clamp(min=1)
    return total / labelled
