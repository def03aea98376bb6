"""Ready-made search spaces.

:func:`auto_panoptic` is the paper's 56-layer space (SPEC.md section 1), in the order
``backbone (40) | mask head (4) | semantic subnet (3) | f2b attention (4) | b2f attention (5)``.

>>> space = auto_panoptic()
>>> len(space), space.size == 4**40 * 6**7 * 3**9, space.cycle_length
(56, True, 12)
>>> list(space.groups)
['backbone', 'head', 'inter']
"""

from __future__ import annotations

from collections.abc import Sequence

from autopanoptic.search.space import Layer, SearchSpace

__all__ = [
    "BACKBONE_OPS",
    "HEAD_OPS",
    "INTER_OPS",
    "INTER_RATIOS",
    "PAPER_BACKBONE_BLOCKS",
    "auto_panoptic",
    "nas_bench_macro",
]

BACKBONE_OPS: tuple[str, ...] = ("shuffle3x3", "shuffle5x5", "shuffle7x7", "xception3x3")
"""The DetNAS ShuffleNetV2 block choices, in index order."""

HEAD_OPS: tuple[str, ...] = ("dwconv3x3", "dwconv5x5", "atconv3x3", "atconv5x5", "dfconv3x3", "dfconv5x5")
"""Head layer choices (mask head and semantic subnet), in index order."""

INTER_RATIOS: tuple[int, ...] = (4, 8, 16)
"""Reduction ratios of the inter-modular attention blocks, in index order."""

INTER_OPS: tuple[str, ...] = tuple(f"se_r{r}" for r in INTER_RATIOS)
"""Op names of the inter-modular attention choices: ``se_r4``, ``se_r8``, ``se_r16``."""

PAPER_BACKBONE_BLOCKS: tuple[int, int, int, int] = (8, 8, 16, 8)
"""Searchable blocks per backbone stage in the paper (40 layers)."""

F2B_LEVELS: tuple[str, ...] = ("p2", "p3", "p4", "p5")
B2F_LEVELS: tuple[str, ...] = ("p2", "p3", "p4", "p5", "p6")


def backbone_layer_name(stage: int, block: int) -> str:
    """Name of the searchable block ``block`` (0-based) of backbone ``stage`` (1-based)."""
    return f"backbone.stage{stage}.block{block}"


def auto_panoptic(
    backbone_blocks: Sequence[int] = PAPER_BACKBONE_BLOCKS,
    mask_layers: int = 4,
    semantic_layers: int = 3,
) -> SearchSpace:
    """The Auto-Panoptic search space.

    Args:
        backbone_blocks: searchable ShuffleNetV2 blocks in each of the four backbone stages (the
            first block of a stage has stride 2). The paper uses ``(8, 8, 16, 8)``.
        mask_layers: searchable layers in the mask head (paper: 4).
        semantic_layers: searchable layers in the semantic subnet (paper: 3).

    Layer names: ``backbone.stage{s}.block{b}``, ``mask.{i}``, ``semantic.{i}``, ``f2b.p{2..5}``,
    ``b2f.p{2..6}``; groups ``backbone``, ``head`` (mask then semantic) and ``inter`` (f2b then b2f).

    >>> auto_panoptic(backbone_blocks=(1, 1, 2, 1)).size == 4**5 * 6**7 * 3**9
    True
    """
    blocks = tuple(int(b) for b in backbone_blocks)
    if len(blocks) != 4 or any(b < 1 for b in blocks):
        raise ValueError(f"backbone_blocks needs four stage lengths >= 1, got {list(backbone_blocks)}")
    if mask_layers < 1 or semantic_layers < 1:
        raise ValueError("mask_layers and semantic_layers must be >= 1")
    layers: list[Layer] = []
    for s, n in enumerate(blocks, start=1):
        layers += [Layer(backbone_layer_name(s, b), BACKBONE_OPS, "backbone") for b in range(n)]
    layers += [Layer(f"mask.{i}", HEAD_OPS, "head") for i in range(mask_layers)]
    layers += [Layer(f"semantic.{i}", HEAD_OPS, "head") for i in range(semantic_layers)]
    layers += [Layer(f"f2b.{lvl}", INTER_OPS, "inter") for lvl in F2B_LEVELS]
    layers += [Layer(f"b2f.{lvl}", INTER_OPS, "inter") for lvl in B2F_LEVELS]
    paper = blocks == PAPER_BACKBONE_BLOCKS and mask_layers == 4 and semantic_layers == 3
    name = "auto-panoptic" if paper else f"auto-panoptic-{'-'.join(map(str, blocks))}-m{mask_layers}-s{semantic_layers}"
    return SearchSpace(layers, name=name)


NAS_BENCH_MACRO_OPS: tuple[str, ...] = ("identity", "mb3_e3", "mb5_e6")
"""NAS-Bench-Macro's choices: ``0`` identity, ``1`` MobileNetV2 k3 e3, ``2`` MobileNetV2 k5 e6."""


def nas_bench_macro() -> SearchSpace:
    """NAS-Bench-Macro's space: 8 layers x 3 choices (three stages of 2, 3 and 3 layers).

    An architecture ``(a0, ..., a7)`` is the benchmark key ``"".join(map(str, arch))``.
    """
    stages = (2, 3, 3)
    layers = []
    for s, n in enumerate(stages, start=1):
        layers += [Layer(f"stage{s}.layer{i}", NAS_BENCH_MACRO_OPS, "backbone") for i in range(n)]
    return SearchSpace(layers, name="nas-bench-macro")
