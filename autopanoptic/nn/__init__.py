"""The searchable panoptic network (torch / torchvision).

Public API (see ``docs/reference/nn.md``):

- :func:`build_supernet` (presets ``tiny``, ``paper-search``, ``paper-retrain``),
  :class:`PanopticSupernet`, :class:`SupernetConfig`, :func:`load_config`, :func:`save_config`;
- :func:`extract` (standalone network of one path, weights copied), :func:`build_network`
  (a fresh standalone network, e.g. at the retraining width), :class:`PanopticNetwork`;
- :func:`panoptic_fusion` (SPEC.md section 4).
- backbone, counting, BN recalibration (``docs/reference/nn-backbone.md``): :class:`ShuffleNetSupernet`,
  :class:`ShuffleNetBackbone`, :class:`ShuffleNetClassifier`, :func:`count`, :class:`CostTable`,
  :func:`build_cost_table`, :func:`recalibrate_bn`, :func:`choose_device`.
"""

from autopanoptic.nn.backbone import ShuffleNetBackbone, ShuffleNetClassifier, ShuffleNetSupernet
from autopanoptic.nn.bn import recalibrate_bn
from autopanoptic.nn.counting import CostTable, build_cost_table, count
from autopanoptic.nn.device import choose_device
from autopanoptic.nn.fusion import panoptic_fusion
from autopanoptic.nn.standalone import PanopticNetwork, build_network, extract
from autopanoptic.nn.supernet import (
    PRESETS,
    PanopticSupernet,
    SupernetConfig,
    build_supernet,
    load_config,
    make_config,
    save_config,
    supernet_from_config,
)

__all__ = [
    "CostTable",
    "ShuffleNetBackbone",
    "ShuffleNetClassifier",
    "ShuffleNetSupernet",
    "build_cost_table",
    "choose_device",
    "count",
    "recalibrate_bn",
    "PRESETS",
    "PanopticNetwork",
    "PanopticSupernet",
    "SupernetConfig",
    "build_network",
    "build_supernet",
    "extract",
    "load_config",
    "make_config",
    "panoptic_fusion",
    "save_config",
    "supernet_from_config",
]
