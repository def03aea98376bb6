"""Candidate operations of the searchable backbone layers (the DetNAS / SPOS ShuffleNetV2 space).

The four choices, in the index order of :data:`autopanoptic.search.spaces.BACKBONE_OPS`
(SPEC.md section 1): ``shuffle3x3``, ``shuffle5x5``, ``shuffle7x7``, ``xception3x3``.

Every choice is a :class:`ShuffleBlock` whose *branch* differs:

- ``shuffle kxk``: ``1x1`` (to ``C_out / 2``) + BN + ReLU, depthwise ``kxk`` + BN, ``1x1`` + BN + ReLU;
- ``xception3x3``: three times [depthwise ``3x3`` + BN, ``1x1`` + BN], ReLU after the first two
  ``1x1`` (SPEC.md; the middle width is ``C_out / 2`` too).

Stride 1 (``C_in == C_out``): the input is split in two halves along the channels; the first half
passes through, the second goes through the branch (``C/2 -> C/2``); the halves are concatenated
and the channels shuffled with two groups. Stride 2 (``C_out > C_in``): no split; the branch maps
``C_in -> C_out - C_in`` (its first depthwise conv has stride 2), a projection branch (depthwise
``kxk`` stride 2 + BN, ``1x1`` + BN + ReLU, ``k`` = the choice's kernel, 3 for xception) keeps
``C_in``; concatenation (projection first) and the same shuffle.

All convolutions are bias-free (each is followed by BatchNorm). Spatial size: stride 1 keeps it,
stride 2 gives ``ceil(H / 2) x ceil(W / 2)`` (odd sizes allowed).

>>> import torch
>>> op = make_backbone_op("shuffle5x5", 8, 16, stride=2)
>>> op(torch.zeros(2, 8, 11, 10)).shape
torch.Size([2, 16, 6, 5])
"""

from __future__ import annotations

import torch
from torch import nn

from autopanoptic.errors import ConfigError
from autopanoptic.search.spaces import BACKBONE_OPS

__all__ = ["BACKBONE_KERNELS", "ShuffleBlock", "channel_shuffle", "make_backbone_op"]

BACKBONE_KERNELS: dict[str, int] = {"shuffle3x3": 3, "shuffle5x5": 5, "shuffle7x7": 7, "xception3x3": 3}
"""Kernel size of each backbone choice (also the kernel of its stride-2 projection branch)."""


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    """ShuffleNet's channel shuffle: view channels as ``groups x (C / groups)``, transpose, flatten.

    >>> import torch
    >>> channel_shuffle(torch.arange(6.0).view(1, 6, 1, 1)).flatten().tolist()
    [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
    """
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c)


def _dw(c: int, k: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(c, c, k, stride, k // 2, groups=c, bias=False)


def _pw(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, 1, 0, bias=False)


def _shuffle_branch(cin: int, mid: int, cout: int, k: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        _pw(cin, mid), _bn(mid), nn.ReLU(inplace=True),
        _dw(mid, k, stride), _bn(mid),
        _pw(mid, cout), _bn(cout), nn.ReLU(inplace=True),
    )  # fmt: skip


def _xception_branch(cin: int, mid: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        _dw(cin, 3, stride), _bn(cin), _pw(cin, mid), _bn(mid), nn.ReLU(inplace=True),
        _dw(mid, 3, 1), _bn(mid), _pw(mid, mid), _bn(mid), nn.ReLU(inplace=True),
        _dw(mid, 3, 1), _bn(mid), _pw(mid, cout), _bn(cout),
    )  # fmt: skip


class ShuffleBlock(nn.Module):
    """One candidate op of a backbone layer (see the module docstring for its structure).

    Attributes: ``op`` (the choice's name), ``in_channels``, ``out_channels``, ``stride``,
    ``branch`` (``nn.Sequential``) and ``proj`` (``nn.Sequential`` for stride 2, else ``None``).

    >>> import torch
    >>> ShuffleBlock("xception3x3", 16, 16, 1)(torch.zeros(1, 16, 7, 7)).shape
    torch.Size([1, 16, 7, 7])
    """

    def __init__(self, op: str, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        if op not in BACKBONE_KERNELS:
            raise ConfigError(f"unknown backbone op {op!r}; choose one of {', '.join(BACKBONE_OPS)}")
        if stride not in (1, 2):
            raise ConfigError(f"backbone block stride must be 1 or 2, got {stride}")
        if out_channels % 2:
            raise ConfigError(f"backbone block width must be even (channel split/shuffle), got {out_channels}")
        if stride == 1 and in_channels != out_channels:
            raise ConfigError(f"a stride-1 backbone block keeps its width, got {in_channels} -> {out_channels}")
        if stride == 2 and not 0 < in_channels < out_channels:
            raise ConfigError(
                f"a stride-2 backbone block must widen its input, got {in_channels} -> {out_channels}; "
                "use strictly increasing widths"
            )
        self.op, self.in_channels, self.out_channels, self.stride = op, in_channels, out_channels, stride
        k = BACKBONE_KERNELS[op]
        mid = out_channels // 2
        if stride == 1:
            cin, cout = out_channels // 2, out_channels // 2
        else:
            cin, cout = in_channels, out_channels - in_channels
        if op == "xception3x3":
            self.branch = _xception_branch(cin, mid, cout, stride)
        else:
            self.branch = _shuffle_branch(cin, mid, cout, k, stride)
        self.proj: nn.Sequential | None = None
        if stride == 2:
            self.proj = nn.Sequential(
                _dw(in_channels, k, 2), _bn(in_channels),
                _pw(in_channels, in_channels), _bn(in_channels), nn.ReLU(inplace=True),
            )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.proj is None:
            keep, through = x.chunk(2, dim=1)
            out = torch.cat((keep, self.branch(through)), dim=1)
        else:
            out = torch.cat((self.proj(x), self.branch(x)), dim=1)
        return channel_shuffle(out, 2)

    def extra_repr(self) -> str:
        return f"op={self.op}, in={self.in_channels}, out={self.out_channels}, stride={self.stride}"


def make_backbone_op(name: str, in_channels: int, out_channels: int, stride: int = 1) -> ShuffleBlock:
    """The candidate op ``name`` (one of ``BACKBONE_OPS``) of a backbone layer.

    >>> make_backbone_op("shuffle7x7", 24, 24).stride
    1
    """
    return ShuffleBlock(name, in_channels, out_channels, stride)
