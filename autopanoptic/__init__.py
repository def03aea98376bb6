"""autopanoptic: one-shot architecture search for whole panoptic-segmentation networks.

Sub-packages:

- :mod:`autopanoptic.search` -- the framework-agnostic search core (numpy + attrs only).
- :mod:`autopanoptic.data` -- COCO-panoptic datasets, a synthetic dataset, exact and fast PQ.
- :mod:`autopanoptic.nn` -- the searchable panoptic supernet (PyTorch / torchvision).

Importing this package imports none of them, so ``import autopanoptic.search`` never loads torch.
"""

__version__ = "0.1.0"
