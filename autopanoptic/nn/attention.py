"""Inter-modular attention: SE-style channel gains between the instance and semantic branches.

One candidate block (SPEC.md section 1) maps a *context* vector (global-average-pooled inputs,
concatenated) to a per-channel gain ``a = 1 - sigmoid(W_up relu(W_down context))`` and applies it
residually to its target: ``X' = X + a * X``. The bottleneck width is ``out_channels // r`` with
``r`` in :data:`autopanoptic.search.spaces.INTER_RATIOS` (``4, 8, 16``).

- f2b (foreground to background), one block per semantic level P2..P5: context = FPN levels P2..P6
  pooled and concatenated (``5 * fpn_channels``), gain over ``semantic_channels``.
- b2f (background to foreground), one block per FPN level P2..P6: context = the four semantic subnet
  outputs pooled and concatenated (``4 * semantic_channels``), gain over ``fpn_channels``.

>>> import torch
>>> block = SEAttention(in_channels=10, out_channels=8, ratio=4)
>>> x = torch.ones(2, 8, 3, 3)
>>> y = block(torch.zeros(2, 10), x)
>>> y.shape, bool(((y >= 1) & (y <= 2)).all())
(torch.Size([2, 8, 3, 3]), True)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from autopanoptic.search.spaces import INTER_RATIOS  # noqa: F401  (the doctest below uses it)

__all__ = ["AttentionLayers", "SEAttention", "pooled_context"]


class SEAttention(nn.Module):
    """One inter-modular attention candidate with reduction ratio ``ratio``."""

    def __init__(self, in_channels: int, out_channels: int, ratio: int):
        super().__init__()
        hidden = max(1, out_channels // ratio)
        self.in_channels, self.out_channels, self.ratio = in_channels, out_channels, ratio
        self.down = nn.Linear(in_channels, hidden)
        self.up = nn.Linear(hidden, out_channels)

    def gain(self, context: torch.Tensor) -> torch.Tensor:
        """The gain ``a`` (``N x out_channels``, each in ``(0, 1)``) for a context ``N x in_channels``."""
        return 1.0 - torch.sigmoid(self.up(torch.relu(self.down(context))))

    def forward(self, context: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``x + a * x`` with ``a = gain(context)`` broadcast over the spatial dimensions of ``x``."""
        a = self.gain(context)
        return x + a[:, :, None, None] * x


def pooled_context(features: Sequence[torch.Tensor]) -> torch.Tensor:
    """Global-average-pool each ``N x C_i x H_i x W_i`` map and concatenate: ``N x sum(C_i)``.

    >>> import torch
    >>> pooled_context([torch.ones(2, 3, 4, 4), torch.zeros(2, 5, 2, 2)]).shape
    torch.Size([2, 8])
    """
    return torch.cat([f.mean(dim=(2, 3)) for f in features], dim=1)


class AttentionLayers(nn.Module):
    """A row of searchable attention layers (f2b or b2f), each with one candidate per ratio.

    ``layers[i]`` is an ``nn.ModuleList`` of candidates, one per ratio of ``candidates[i]`` (all
    of :data:`INTER_RATIOS` in a supernet, just the chosen one in a standalone network).
    ``forward(context, targets, choices)`` returns the recalibrated targets, ``targets[i]`` going
    through ``layers[i][choices[i]]``.

    >>> AttentionLayers(4, 8, [INTER_RATIOS] * 5).layers[4][2].ratio
    16
    """

    def __init__(self, in_channels: int, out_channels: int, candidates: Sequence[Sequence[int]]):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList(SEAttention(in_channels, out_channels, r) for r in ratios) for ratios in candidates
        )

    def forward(self, context: torch.Tensor, targets: Sequence[torch.Tensor], choices: Sequence[int]) -> list[torch.Tensor]:
        if len(targets) != len(self.layers) or len(choices) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} targets and choices, got {len(targets)} and {len(choices)}")
        return [layer[c](context, x) for layer, c, x in zip(self.layers, choices, targets)]
