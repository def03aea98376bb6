"""Standalone networks: one architecture of the space, with only its chosen ops.

- :func:`extract` cuts the path ``arch`` out of a trained :class:`PanopticSupernet`: the chosen
  candidate of every searchable layer and all shared parts, weights copied. In eval mode its
  outputs equal the supernet's on that path.
- :func:`build_network` builds a freshly initialised standalone network for ``arch`` at any preset
  or width, e.g. the paper's retraining width (``paper-retrain``) for an architecture found with
  the ``paper-search`` supernet: the architecture is a list of choice indices, independent of the
  widths.

A standalone network is called like the supernet without ``arch``:
``net(images, targets=None)``.

>>> import torch
>>> from autopanoptic.nn.supernet import build_supernet
>>> sup = build_supernet("tiny", 2, 3).eval()
>>> arch = sup.search_space.sample(1)
>>> net = extract(sup, arch).eval()
>>> x = [torch.rand(3, 64, 64)]
>>> with torch.no_grad():
...     bool((net(x)[0]["panoptic"] == sup(x, arch=arch)[0]["panoptic"]).all())
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from autopanoptic.errors import ArchitectureError
from autopanoptic.nn.supernet import PanopticModel, PanopticSupernet, SupernetConfig, make_config
from autopanoptic.search.space import Arch
from autopanoptic.search.spaces import HEAD_OPS, INTER_RATIOS

__all__ = ["PanopticNetwork", "build_network", "extract"]


def _standalone_backbone(config: SupernetConfig, choices: Sequence[int]) -> nn.Module:
    from autopanoptic.nn.backbone import ShuffleNetBackbone

    return ShuffleNetBackbone(tuple(choices), config.stage_blocks, config.widths)


class PanopticNetwork(PanopticModel):
    """A standalone panoptic network for one architecture ``arch`` of ``config.search_space()``.

    Every searchable layer holds only its chosen op; ``forward(images, targets=None)`` behaves like
    ``PanopticSupernet.forward(images, targets, arch=self.arch)``. Use :func:`extract` or
    :func:`build_network` rather than the constructor.
    """

    def __init__(self, config: SupernetConfig, arch: Sequence[int], backbone: nn.Module | None = None):
        space = config.search_space()
        arch = space.validate(arch)
        nb = sum(config.stage_blocks)
        m, s = config.mask_layers, config.semantic_layers
        heads, inter = arch[nb : nb + m + s], arch[nb + m + s :]
        if backbone is None:
            backbone = _standalone_backbone(config, arch[:nb])
        super().__init__(
            config,
            backbone,
            [(HEAD_OPS[c],) for c in heads],
            [(INTER_RATIOS[c],) for c in inter],
        )
        self.arch: Arch = arch
        self.search_space = space
        # Inside the network every searchable layer has one candidate: index 0 everywhere.
        self._local_arch: Arch = (0,) * len(space)

    def _run_backbone(self, x: torch.Tensor, choices: Sequence[int]) -> list[torch.Tensor]:
        return list(self.backbone(x))

    def _path(self, arch: Any) -> Arch:
        if arch is not None and self.search_space.validate(arch) != self.arch:
            raise ArchitectureError(f"this standalone network is architecture {list(self.arch)}, not {list(arch)}")
        return self._local_arch

    def forward(self, images, targets=None):
        """Losses (training mode) or panoptic predictions (eval mode)."""
        return self._forward(images, targets, self._local_arch)

    def raw_outputs(self, images) -> dict[str, Any]:
        """Eval-mode outputs before fusion, as :meth:`PanopticSupernet.raw_outputs`."""
        return self._forward(images, None, self._local_arch, raw=True)

    def backbone_forward(self, images, arch: Any = None) -> list[torch.Tensor]:
        """Normalise/batch ``images`` and run the backbone (``arch`` ignored; for BN recalibration)."""
        return self._run_backbone(self.preprocess(images).tensors, ())


def build_network(preset: str | SupernetConfig, arch: Sequence[int], num_thing_classes: int | None = None,
                  num_stuff_classes: int | None = None, **overrides: Any) -> PanopticNetwork:
    """A freshly initialised standalone network for ``arch`` (e.g. for retraining at another width).

    ``preset`` is a preset name (then the class counts are required and ``overrides`` apply, as in
    :func:`autopanoptic.nn.build_supernet`) or a :class:`SupernetConfig`.

    >>> from autopanoptic.search.spaces import auto_panoptic
    >>> arch = auto_panoptic((1, 1, 2, 1)).sample(0)
    >>> net = build_network("tiny", arch, 2, 3, widths=(24, 48, 96, 192, 384))
    >>> net.config.widths[-1], net.arch == arch
    (384, True)
    """
    if isinstance(preset, SupernetConfig):
        config = preset
    else:
        if num_thing_classes is None or num_stuff_classes is None:
            raise ValueError("build_network needs num_thing_classes and num_stuff_classes with a preset name")
        config = make_config(preset, num_thing_classes, num_stuff_classes, **overrides)
    return PanopticNetwork(config, arch)


def extract(supernet: PanopticSupernet, arch: Sequence[int]) -> PanopticNetwork:
    """The standalone network of the path ``arch`` of ``supernet``, weights copied.

    The result is on the supernet's device, in the supernet's training/eval mode, and shares no
    tensors with it.
    """
    arch = supernet.validate_arch(arch)
    bb, mask, sem, f2b, b2f = supernet._split(arch)
    device = supernet.pixel_mean.device
    net = PanopticNetwork(supernet.config, arch, backbone=supernet.backbone.extract(bb))
    net.to(device)
    # Shared (unsearched) parts: same names in both networks.
    searchable = [f"{p}." for p in _searchable_prefixes(supernet)]
    shared = {
        k: v
        for k, v in supernet.state_dict().items()
        if not k.startswith("backbone.") and not any(k.startswith(p) for p in searchable)
    }
    missing, unexpected = net.load_state_dict(shared, strict=False)
    bad = [k for k in missing if not k.startswith("backbone.") and not any(k.startswith(p) for p in searchable)]
    if bad or unexpected:  # a structural mismatch would be a bug, not a user error
        raise RuntimeError(f"extract: state mismatch (missing {bad[:5]}, unexpected {list(unexpected)[:5]})")
    # The chosen candidate of every searchable head/attention layer.
    for mine, theirs, c in zip(net.head_layer_choices, supernet.head_layer_choices, mask + sem + f2b + b2f):
        mine[0].load_state_dict(theirs[c].state_dict())
    net.train(supernet.training)
    return net


def _searchable_prefixes(model: PanopticModel) -> list[str]:
    names = {id(m): n for n, m in model.named_modules()}
    return [names[id(layer)] for layer in model.head_layer_choices]
