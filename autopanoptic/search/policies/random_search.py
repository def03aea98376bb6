"""Random search: ``budget`` distinct architectures drawn uniformly (SPEC.md section 3 baseline).

>>> from autopanoptic.search.spaces import nas_bench_macro
>>> policy = RandomSearch(budget=4, batch_size=2)
>>> state = policy.init(nas_bench_macro(), seed=0)
>>> archs, state = policy.ask(state)
>>> len(archs)
2
>>> state = policy.tell(state, archs, [0.1, 0.2])
>>> policy.best(state) == archs[1], policy.done(state)
(True, False)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from autopanoptic.search.fair import derive_rng
from autopanoptic.search.policies.base import (
    Constraint,
    callable_or_none,
    check_seed,
    check_tell,
    optional_positive,
    positive,
    random_unseen,
    running_best,
    settings_json,
)
from autopanoptic.search.space import Arch, SearchSpace

__all__ = ["RandomSearch", "RandomSearchState"]

_PURPOSE_SAMPLE = 1


@attrs.frozen
class RandomSearchState:
    """Everything that changes during a random search (an immutable value)."""

    space: SearchSpace
    seed: int
    step: int = 0
    seen: frozenset[Arch] = frozenset()
    evaluations: int = 0
    best: Arch | None = None
    best_fitness: float | None = None
    pending: tuple[Arch, ...] | None = None
    exhausted: bool = False


@attrs.frozen
class RandomSearch:
    """Uniform random search over distinct architectures.

    Args:
        budget: number of distinct architectures to evaluate (paper baseline: 300).
        batch_size: architectures per ``ask`` (``None``: the whole budget at once).
        constraint: optional predicate; violating architectures are redrawn and not counted.
        max_tries: random draws per candidate before giving up (constraint error or exhaustion).

    Stops early when every allowed architecture has been evaluated. Ties in fitness keep the one
    evaluated first.
    """

    budget: int = attrs.field(default=300, validator=positive)
    batch_size: int | None = attrs.field(default=10, validator=optional_positive)
    constraint: Constraint | None = attrs.field(default=None, validator=callable_or_none)
    max_tries: int = attrs.field(default=10_000, validator=positive)

    def init(self, space: SearchSpace, seed: int) -> RandomSearchState:
        """Initial state for ``space`` and ``seed``."""
        return RandomSearchState(space=space, seed=check_seed(seed))

    def ask(self, state: RandomSearchState) -> tuple[tuple[Arch, ...], RandomSearchState]:
        """The next batch of distinct, unseen, allowed architectures."""
        if state.pending is not None:
            return state.pending, state
        if self.done(state):
            raise ValueError("ask() after the search is done")
        gen = derive_rng(state.seed, _PURPOSE_SAMPLE, state.step)
        n = min(self.batch_size or self.budget, self.budget - state.evaluations)
        seen = set(state.seen)
        batch: list[Arch] = []
        for _ in range(n):
            arch = random_unseen(state.space, gen, self.constraint, seen, self.max_tries)
            if arch is None:
                break
            seen.add(arch)
            batch.append(arch)
        # an empty batch (space exhausted) is still asked and told, then the search is done
        return tuple(batch), attrs.evolve(state, step=state.step + 1, pending=tuple(batch), exhausted=len(batch) < n)

    def tell(self, state: RandomSearchState, archs: Iterable[Arch], fitnesses: Iterable[float]) -> RandomSearchState:
        """Record the fitnesses of the last batch."""
        archs, fits = check_tell(state.pending, archs, fitnesses)
        best, best_fit = running_best(state.best, state.best_fitness, archs, fits)
        return attrs.evolve(
            state,
            seen=state.seen | frozenset(archs),
            evaluations=state.evaluations + len(archs),
            best=best,
            best_fitness=best_fit,
            pending=None,
        )

    def done(self, state: RandomSearchState) -> bool:
        """True when the budget is spent or the allowed space is exhausted."""
        return state.pending is None and (state.evaluations >= self.budget or state.exhausted)

    def best(self, state: RandomSearchState) -> Arch | None:
        """The best architecture evaluated so far (``None`` before any)."""
        return state.best

    def max_proposals(self, space: SearchSpace) -> int:
        """Upper bound on the number of architectures proposed."""
        return self.budget

    def to_json(self) -> dict[str, Any]:
        """The settings, with the constraint replaced by its name."""
        return settings_json(self)
