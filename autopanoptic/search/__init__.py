"""The framework-agnostic search core: standard library, numpy and attrs only.

Never imports torch or :mod:`autopanoptic.nn`; NAS code for any task can use it.
"""

from autopanoptic.search.space import Arch, Layer, SearchSpace, load_arch, save_arch
from autopanoptic.search import spaces

__all__ = ["Arch", "Layer", "SearchSpace", "load_arch", "save_arch", "spaces"]
