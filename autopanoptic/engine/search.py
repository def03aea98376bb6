"""Architecture search on a trained supernet: binds a policy of :mod:`autopanoptic.search` to it.

The fitness of a candidate is its PQ (All, as a fraction) on the *search validation split*, carved
out of the training data (never the evaluation split). Before each candidate is scored, the BatchNorm
statistics of its path are recalibrated on a fixed calibration subset of the training data
(:func:`autopanoptic.nn.recalibrate_bn`). Every evaluation is journaled by the search core's
:func:`autopanoptic.search.run`, so an interrupted search resumes where it stopped.

The policy runs on the *sampling space* of :class:`~autopanoptic.engine.restrict.OpRestriction`
(ops excluded by ``model.exclude_ops`` were never trained, so they are never proposed either);
architectures are mapped to the full space before the supernet sees them and when saved.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from autopanoptic.config import SearchConfig
from autopanoptic.engine.datasets import load_batch
from autopanoptic.engine.evaluate import evaluate
from autopanoptic.engine.restrict import OpRestriction
from autopanoptic.errors import ConfigError
from autopanoptic.io import atomic_write_json
from autopanoptic.search.space import Arch

__all__ = ["CostBudget", "SearchOutcome", "calibration_batches", "make_policy", "search_supernet"]


@attrs.frozen
class CostBudget:
    """A constraint on an architecture of the sampling space: parameters and/or multiply-adds of
    its full-space counterpart, counted by ``count(arch) -> (params, macs)``."""

    count: Any = attrs.field(eq=False, repr=False)
    to_full: Any = attrs.field(eq=False, repr=False)
    max_params: float | None = None
    max_macs: float | None = None

    @property
    def name(self) -> str:
        """Stable name (recorded in the journal header)."""
        return f"budget(params<={self.max_params}, macs<={self.max_macs})"

    def __call__(self, arch: Arch) -> bool:
        params, macs = self.count(self.to_full(arch))
        return (self.max_params is None or params <= self.max_params) and (self.max_macs is None or macs <= self.max_macs)


def make_policy(cfg: SearchConfig, constraint=None):
    """The search policy named by ``cfg.policy`` with its settings.

    >>> type(make_policy(SearchConfig(policy="random", evaluations=7))).__name__
    'RandomSearch'
    """
    from autopanoptic.search import Evolution, GuidedSearch, PathPriority, RandomSearch

    if cfg.policy == "path-priority":
        return PathPriority(cycles=cfg.cycles, models_per_cycle=cfg.per_cycle, constraint=constraint)
    if cfg.policy == "evolution":
        pop = cfg.population
        top_k = max(1, min(10, pop // 5 or 1))
        mutations = min(20, max(0, (pop - top_k) * 2 // 5))
        crossovers = min(20, max(0, (pop - top_k) * 2 // 5))
        return Evolution(population=pop, generations=cfg.generations, top_k=top_k, mutations=mutations,
                         crossovers=crossovers, constraint=constraint)
    if cfg.policy == "random":
        return RandomSearch(budget=cfg.evaluations, constraint=constraint)
    if cfg.policy == "guided":
        return GuidedSearch(budget=cfg.evaluations, constraint=constraint)
    raise ConfigError(
        f"search.policy: unknown policy {cfg.policy!r}; use path-priority, evolution, random or guided"
    )


def calibration_batches(dataset: Any, indices: Sequence[int], n_batches: int, batch_size: int, device) -> list[list[torch.Tensor]]:
    """``n_batches`` fixed batches of images (cycling through ``indices``) for BN recalibration."""
    idx = list(indices)
    out = []
    for b in range(n_batches):
        chunk = [idx[(b * batch_size + j) % len(idx)] for j in range(batch_size)]
        out.append(load_batch(dataset, chunk, device=device)[0])
    return out


@attrs.frozen
class SearchOutcome:
    """The result of a search, in the full space."""

    best: Arch
    best_fitness: float | None
    history: tuple[tuple[Arch, float], ...]  # full-space archs, in evaluation order
    scoreboard: Any  # a Scoreboard of the sampling space (path-priority's own, or ranked history)
    top_k: tuple[Arch, ...]
    seconds: float
    chosen_fitness: float | None = None  # fitness of ``best``, evaluated after the search if it never was


def search_supernet(
    supernet: torch.nn.Module,
    dataset: Any,
    val_indices: Sequence[int],
    calib_indices: Sequence[int],
    cfg: SearchConfig,
    restriction: OpRestriction,
    *,
    device: torch.device | str = "cpu",
    journal: str | Path | None = None,
    candidates_json: str | Path | None = None,
    count=None,
    progress: bool = True,
) -> SearchOutcome:
    """Search the supernet with ``cfg.policy``; see the module docstring.

    ``count(full_arch) -> (params, macs)`` is needed only when ``cfg`` sets a budget.
    """
    from autopanoptic.nn import recalibrate_bn
    from autopanoptic.search import PathPriority, Scoreboard, run

    constraint = None
    if cfg.max_params is not None or cfg.max_macs is not None:
        if count is None:
            raise ConfigError("search.max_params / search.max_macs need a cost counter")
        constraint = CostBudget(functools.lru_cache(maxsize=None)(count), restriction.to_full, cfg.max_params, cfg.max_macs)
    policy = make_policy(cfg, constraint)
    calib = calibration_batches(dataset, calib_indices, cfg.calib_batches, cfg.calib_batch_size, device)
    started = time.perf_counter()

    def fitness(archs: list[Arch]) -> list[float]:
        out = []
        for a in archs:
            full = restriction.to_full(a)
            if calib:
                recalibrate_bn(supernet, full, calib)
            res = evaluate(supernet, dataset, val_indices, arch=full, device=device)
            out.append(res.pq)
        return out

    supernet.to(device)
    result = run(policy, restriction.sub, fitness, seed=cfg.seed, journal=journal, progress=progress)
    if isinstance(policy, PathPriority):
        board = policy.scoreboard(result.state)
        top = policy.top_k(result.state, 5)
    else:
        archs = [a for a, _ in result.history]
        board = Scoreboard.empty(restriction.sub).add(archs, [f for _, f in result.history]) if archs else Scoreboard.empty(restriction.sub)
        top = tuple(a for a, _ in sorted(result.history, key=lambda x: -x[1])[:5])
    history = tuple((restriction.to_full(a), f) for a, f in result.history)
    if candidates_json is not None:
        atomic_write_json(candidates_json, [{"index": i, "arch": list(a), "fitness": f} for i, (a, f) in enumerate(history)])
    if result.best is None:
        raise ConfigError("the search evaluated no architecture; raise search.cycles or search.evaluations")
    chosen = result.best_fitness
    if chosen is None:  # e.g. path-priority's composite: measure it the same way, for the record
        chosen = fitness([result.best])[0]
    return SearchOutcome(
        best=restriction.to_full(result.best),
        best_fitness=result.best_fitness,
        history=history,
        scoreboard=board,
        top_k=tuple(restriction.to_full(a) for a in top),
        seconds=time.perf_counter() - started,
        chosen_fitness=chosen,
    )
