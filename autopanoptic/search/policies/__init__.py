"""Search policies behind one pure interface: ``init / ask / tell / done / best``.

See :mod:`autopanoptic.search.policies.base` for the contract every policy keeps.
"""

from autopanoptic.search.policies.base import Constraint, Policy
from autopanoptic.search.policies.evolution import Evolution, EvolutionState
from autopanoptic.search.policies.guided import GuidedSearch, GuidedSearchState
from autopanoptic.search.policies.path_priority import PathPriority, PathPriorityState
from autopanoptic.search.policies.random_search import RandomSearch, RandomSearchState

__all__ = [
    "Constraint",
    "Evolution",
    "EvolutionState",
    "GuidedSearch",
    "GuidedSearchState",
    "PathPriority",
    "PathPriorityState",
    "Policy",
    "RandomSearch",
    "RandomSearchState",
]
