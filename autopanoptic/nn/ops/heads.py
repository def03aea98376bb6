"""Candidate operations of the searchable head layers (mask head and semantic subnet).

The six choices, in the index order of :data:`autopanoptic.search.spaces.HEAD_OPS` (SPEC.md
section 1):

- ``dwconv3x3`` / ``dwconv5x5``: depthwise ``k x k`` then pointwise ``1 x 1``;
- ``atconv3x3`` / ``atconv5x5``: dense ``k x k`` with dilation 2 (same output size);
- ``dfconv3x3`` / ``dfconv5x5``: modulated deformable ``k x k`` (DCNv2) through
  :func:`torchvision.ops.deform_conv2d`; offsets and mask come from a zero-initialised conv.

Each is followed by GroupNorm (32 groups, fewer for narrow layers: see :func:`gn_groups`) and ReLU.
All keep the spatial size (stride 1).

>>> import torch
>>> op = make_head_op("atconv3x3", 8, 16)
>>> op(torch.zeros(2, 8, 10, 10)).shape
torch.Size([2, 16, 10, 10])
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import deform_conv2d

from autopanoptic.search.spaces import HEAD_OPS

__all__ = [
    "AtrousConv",
    "DeformConv",
    "DepthwiseSeparableConv",
    "ModulatedDeformConv2d",
    "gn_groups",
    "group_norm",
    "make_head_op",
]


def gn_groups(channels: int, max_groups: int = 32) -> int:
    """Number of GroupNorm groups for ``channels``: the largest divisor of ``channels`` that is at
    most ``max_groups`` and leaves at least two channels per group (one group for 1 channel).

    >>> gn_groups(256), gn_groups(128), gn_groups(32), gn_groups(24), gn_groups(1)
    (32, 32, 16, 12, 1)
    """
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    limit = max(1, min(max_groups, channels // 2))
    for g in range(limit, 0, -1):
        if channels % g == 0:
            return g
    return 1


def group_norm(channels: int) -> nn.GroupNorm:
    """``GroupNorm(gn_groups(channels), channels)`` (usable as a torchvision ``norm_layer``)."""
    return nn.GroupNorm(gn_groups(channels), channels)


class DepthwiseSeparableConv(nn.Module):
    """``dwconv{k}x{k}``: depthwise ``k x k`` + pointwise ``1 x 1`` + GroupNorm + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels, in_channels, kernel_size, padding=kernel_size // 2, groups=in_channels, bias=False
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.norm = group_norm(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.pointwise(self.depthwise(x))))


class AtrousConv(nn.Module):
    """``atconv{k}x{k}``: dense ``k x k`` conv with dilation 2 (same size) + GroupNorm + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 2):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=dilation * (kernel_size // 2), dilation=dilation, bias=False
        )
        self.norm = group_norm(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class ModulatedDeformConv2d(nn.Module):
    """The deformable convolution itself (weights only; offsets and mask are inputs).

    Calls :func:`torchvision.ops.deform_conv2d` (DCNv2 when ``mask`` is given). It defines
    :meth:`count_macs` because a functional op is invisible to module hooks.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=1)

    def forward(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pad = self.kernel_size // 2
        autocast = x.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(x.device.type)
        if autocast or x.dtype != self.weight.dtype:
            # torchvision's kernels have no bf16 version (none at all on CPU): fp32 under mixed precision
            with torch.autocast(x.device.type, enabled=False):
                return deform_conv2d(x.float(), offset.float(), self.weight.float(), None, padding=(pad, pad),
                                     mask=mask.float())
        return deform_conv2d(x, offset, self.weight, None, padding=(pad, pad), mask=mask)

    def count_macs(self, inputs: tuple, output: torch.Tensor) -> int:
        """Multiply-accumulates of one call: one per weight per output position (the bilinear
        sampling and the modulation are not counted, as for a plain convolution).

        >>> m = ModulatedDeformConv2d(4, 8, 3)
        >>> m.count_macs((), torch.zeros(2, 8, 5, 5))
        14400
        """
        n, _, h, w = output.shape
        return int(n * h * w * self.out_channels * self.in_channels * self.kernel_size**2)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"


class DeformConv(nn.Module):
    """``dfconv{k}x{k}``: modulated deformable conv (DCNv2) + GroupNorm + ReLU.

    A ``k x k`` conv (zero-initialised, so training starts from a regular convolution with mask
    0.5) predicts ``2 k^2`` offsets and ``k^2`` mask logits per position.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        k2 = kernel_size * kernel_size
        self.k2 = k2
        self.offset = nn.Conv2d(in_channels, 3 * k2, kernel_size, padding=kernel_size // 2)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        self.conv = ModulatedDeformConv2d(in_channels, out_channels, kernel_size)
        self.norm = group_norm(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        om = self.offset(x)
        offset, mask = om[:, : 2 * self.k2], om[:, 2 * self.k2 :].sigmoid()
        return self.act(self.norm(self.conv(x, offset, mask)))


def make_head_op(name: str, in_channels: int, out_channels: int) -> nn.Module:
    """Build the head op called ``name`` (one of ``HEAD_OPS``) mapping ``in_channels`` to
    ``out_channels`` at the same spatial size.

    >>> type(make_head_op("dfconv5x5", 4, 4)).__name__
    'DeformConv'
    """
    if name not in HEAD_OPS:
        raise ValueError(f"unknown head op {name!r}; choices are {list(HEAD_OPS)}")
    kind, k = name[:6], int(name[6])
    if kind == "dwconv":
        return DepthwiseSeparableConv(in_channels, out_channels, k)
    if kind == "atconv":
        return AtrousConv(in_channels, out_channels, k)
    return DeformConv(in_channels, out_channels, k)
