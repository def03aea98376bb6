"""Candidate operations of the searchable layers.

- :mod:`autopanoptic.nn.ops.blocks`: the backbone choices (ShuffleNetV2 / Xception blocks,
  :func:`make_backbone_op`);
- :mod:`autopanoptic.nn.ops.heads`: the head choices (depthwise, atrous and deformable convs).
"""

from autopanoptic.nn.ops.blocks import BACKBONE_KERNELS, ShuffleBlock, channel_shuffle, make_backbone_op

__all__ = ["BACKBONE_KERNELS", "ShuffleBlock", "channel_shuffle", "make_backbone_op"]
