"""The framework-agnostic search core: standard library, numpy and attrs only.

Never imports torch or :mod:`autopanoptic.nn`; NAS code for any task can use it.

>>> from autopanoptic.search import PathPriority, run, spaces
>>> from autopanoptic.search.toy import Landscape
>>> space = spaces.nas_bench_macro()
>>> result = run(PathPriority(cycles=2), space, Landscape.random(space, seed=0), seed=0, progress=False)
>>> len(result.best)
8
"""

from autopanoptic.search.space import Arch, Layer, SearchSpace, load_arch, save_arch
from autopanoptic.search import hull, pareto, spaces, stats
from autopanoptic.search.fair import ConstraintError, as_generator, derive_rng, strict_fair_cycle
from autopanoptic.search.scoreboard import FitnessError, Scoreboard, rank_scores, ranks
from autopanoptic.search.policies import (
    Constraint,
    Evolution,
    EvolutionState,
    GuidedSearch,
    GuidedSearchState,
    PathPriority,
    PathPriorityState,
    Policy,
    RandomSearch,
    RandomSearchState,
)
from autopanoptic.search.run import SearchResult, journal_header, read_journal, run

__all__ = [
    "Arch",
    "Constraint",
    "ConstraintError",
    "Evolution",
    "EvolutionState",
    "FitnessError",
    "GuidedSearch",
    "GuidedSearchState",
    "Layer",
    "PathPriority",
    "PathPriorityState",
    "Policy",
    "RandomSearch",
    "RandomSearchState",
    "Scoreboard",
    "SearchResult",
    "SearchSpace",
    "as_generator",
    "derive_rng",
    "journal_header",
    "load_arch",
    "rank_scores",
    "ranks",
    "read_journal",
    "run",
    "save_arch",
    "hull",
    "pareto",
    "spaces",
    "stats",
    "strict_fair_cycle",
]
