"""Evolutionary search as in DetNAS / SPOS (SPEC.md section 3 baseline).

Generation 0 is ``population`` random architectures. Every later generation is made of
``mutations`` children (a parent drawn uniformly from the ``top_k`` best architectures evaluated so
far, each gene redrawn uniformly with probability ``mutation_prob``), ``crossovers`` children (two
such parents, each gene from either with probability 1/2), and random architectures for the rest.
A child that violates the constraint, was evaluated before, or repeats one in the same generation is
redrawn and not counted; after ``10 * mutations`` (resp. ``10 * crossovers``) attempts the missing
children are filled with random architectures, as SPOS does.

>>> from autopanoptic.search.spaces import nas_bench_macro
>>> policy = Evolution(population=6, generations=2, top_k=2, mutations=2, crossovers=2)
>>> state = policy.init(nas_bench_macro(), seed=0)
>>> archs, state = policy.ask(state)
>>> state = policy.tell(state, archs, [float(sum(a)) for a in archs])
>>> archs, state = policy.ask(state)
>>> len(archs), len(set(archs))
(6, 6)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
import numpy as np

from autopanoptic.errors import ConfigError
from autopanoptic.search.fair import derive_rng
from autopanoptic.search.policies.base import (
    Constraint,
    callable_or_none,
    check_seed,
    check_tell,
    optional_positive,
    positive,
    random_unseen,
    settings_json,
)
from autopanoptic.search.space import Arch, SearchSpace

__all__ = ["Evolution", "EvolutionState"]

_PURPOSE_GENERATION = 2


@attrs.frozen
class EvolutionState:
    """Everything that changes during an evolutionary search (an immutable value).

    ``top`` holds ``(arch, fitness, evaluation index)`` of the best architectures evaluated so far,
    best first (ties: earlier evaluation first), at most ``top_k`` of them.
    """

    space: SearchSpace
    seed: int
    generation: int = 0
    seen: frozenset[Arch] = frozenset()
    evaluations: int = 0
    top: tuple[tuple[Arch, float, int], ...] = ()
    best: Arch | None = None
    best_fitness: float | None = None
    pending: tuple[Arch, ...] | None = None
    exhausted: bool = False


def _nonneg(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"Evolution.{attribute.name} must be an int >= 0, got {value!r}")


def _prob(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"Evolution.{attribute.name} must be in [0, 1], got {value!r}")


@attrs.frozen
class Evolution:
    """DetNAS / SPOS evolution.

    Args:
        population: architectures per generation (50).
        generations: number of generations (20), so about ``population * generations`` evaluations.
        top_k: parents are drawn from the ``top_k`` best architectures evaluated so far (10).
        mutations: mutated children per generation (20).
        crossovers: crossed-over children per generation (20); the rest of a generation is random.
        mutation_prob: per-gene mutation probability (0.1).
        budget: optional cap on the total number of evaluations (the last generation is cut short).
        constraint: optional predicate; violating candidates are redrawn and not counted.
        max_tries: random draws per random candidate before giving up.
    """

    population: int = attrs.field(default=50, validator=positive)
    generations: int = attrs.field(default=20, validator=positive)
    top_k: int = attrs.field(default=10, validator=positive)
    mutations: int = attrs.field(default=20, validator=_nonneg)
    crossovers: int = attrs.field(default=20, validator=_nonneg)
    mutation_prob: float = attrs.field(default=0.1, converter=float, validator=_prob)
    budget: int | None = attrs.field(default=None, validator=optional_positive)
    constraint: Constraint | None = attrs.field(default=None, validator=callable_or_none)
    max_tries: int = attrs.field(default=10_000, validator=positive)

    def __attrs_post_init__(self) -> None:
        if self.mutations + self.crossovers > self.population:
            raise ConfigError(
                f"Evolution: mutations + crossovers ({self.mutations} + {self.crossovers}) "
                f"exceed the population ({self.population})"
            )

    @property
    def total(self) -> int:
        """Planned number of evaluations: ``population * generations``, capped by ``budget``."""
        planned = self.population * self.generations
        return planned if self.budget is None else min(planned, self.budget)

    def init(self, space: SearchSpace, seed: int) -> EvolutionState:
        """Initial state for ``space`` and ``seed``."""
        return EvolutionState(space=space, seed=check_seed(seed))

    # ---- roles ----------------------------------------------------------------------------------
    def _mutate(self, parent: Arch, space: SearchSpace, gen: np.random.Generator) -> Arch:
        n = np.asarray(space.n_choices)
        redraw = gen.random(len(n)) < self.mutation_prob
        fresh = gen.integers(0, n)
        return tuple(int(c) for c in np.where(redraw, fresh, np.asarray(parent)))

    def _cross(self, p1: Arch, p2: Arch, gen: np.random.Generator) -> Arch:
        pick = gen.random(len(p1)) < 0.5
        return tuple(int(c) for c in np.where(pick, np.asarray(p1), np.asarray(p2)))

    def _children(self, state: EvolutionState, gen: np.random.Generator, n: int, seen: set[Arch], make) -> list[Arch]:
        out: list[Arch] = []
        for _ in range(10 * n):
            if len(out) >= n:
                break
            child = make()
            if child in seen or (self.constraint is not None and not self.constraint(child)):
                continue
            seen.add(child)
            out.append(child)
        return out

    def ask(self, state: EvolutionState) -> tuple[tuple[Arch, ...], EvolutionState]:
        """The next generation (distinct, unseen, allowed architectures)."""
        if state.pending is not None:
            return state.pending, state
        if self.done(state):
            raise ValueError("ask() after the search is done")
        space = state.space
        gen = derive_rng(state.seed, _PURPOSE_GENERATION, state.generation)
        size = min(self.population, self.total - state.evaluations)
        seen = set(state.seen)
        batch: list[Arch] = []
        parents = [a for a, _, _ in state.top]
        if state.generation > 0 and parents:
            n_mut = min(self.mutations, size)
            batch += self._children(
                state, gen, n_mut, seen, lambda: self._mutate(parents[int(gen.integers(len(parents)))], space, gen)
            )
            n_cross = min(self.crossovers, size - len(batch))
            batch += self._children(
                state,
                gen,
                n_cross,
                seen,
                lambda: self._cross(parents[int(gen.integers(len(parents)))], parents[int(gen.integers(len(parents)))], gen),
            )
        exhausted = False
        while len(batch) < size:
            arch = random_unseen(space, gen, self.constraint, seen, self.max_tries)
            if arch is None:
                exhausted = True
                break
            seen.add(arch)
            batch.append(arch)
        # an empty batch (space exhausted) is still asked and told, then the search is done
        batch_t = tuple(batch)
        return batch_t, attrs.evolve(state, generation=state.generation + 1, exhausted=exhausted, pending=batch_t)

    def tell(self, state: EvolutionState, archs: Iterable[Arch], fitnesses: Iterable[float]) -> EvolutionState:
        """Record the fitnesses of the last generation and update the top-k parents."""
        archs, fits = check_tell(state.pending, archs, fitnesses)
        entries = list(state.top) + [(a, f, state.evaluations + i) for i, (a, f) in enumerate(zip(archs, fits))]
        entries.sort(key=lambda e: (-e[1], e[2]))
        top = tuple(entries[: self.top_k])
        return attrs.evolve(
            state,
            seen=state.seen | frozenset(archs),
            evaluations=state.evaluations + len(archs),
            top=top,
            best=top[0][0] if top else None,
            best_fitness=top[0][1] if top else None,
            pending=None,
        )

    def done(self, state: EvolutionState) -> bool:
        """True after the last generation, when the budget is spent, or when the space is exhausted."""
        if state.pending is not None:
            return False
        return state.generation >= self.generations or state.evaluations >= self.total or state.exhausted

    def best(self, state: EvolutionState) -> Arch | None:
        """The best architecture evaluated so far (``None`` before any)."""
        return state.best

    def max_proposals(self, space: SearchSpace) -> int:
        """Upper bound on the number of architectures proposed."""
        return self.total

    def to_json(self) -> dict[str, Any]:
        """The settings, with the constraint replaced by its name."""
        return settings_json(self)
