"""Path-priority search (Auto-Panoptic, SPEC.md section 3).

``cycles`` (T) rounds; each round draws ``models_per_cycle`` (E, a multiple of the space's cycle
length m; default m) architectures by strict-fair sampling (E / m fair cycles), gets their
fitnesses, and adds the rank scores ``K - rank`` (``K = E - 1``) to a :class:`Scoreboard`.
The chosen architecture takes the highest-scoring choice of each layer (ties: lower choice index);
:meth:`PathPriority.top_k` gives the next-best composite alternatives, and :meth:`PathPriority.front`
the composites along the scoreboard's score / cost front (given a cost per op).

With a ``constraint``, a fair cycle containing any violating architecture is redrawn as a whole
(so every batch stays strictly fair), at most ``max_tries`` times per cycle before a
:class:`~autopanoptic.search.fair.ConstraintError`. The chosen architecture and the alternatives
are the highest-scoring composites that satisfy the constraint.

>>> from autopanoptic.search.spaces import auto_panoptic
>>> policy = PathPriority(cycles=1)
>>> state = policy.init(auto_panoptic(), seed=0)
>>> archs, state = policy.ask(state)
>>> len(archs)
12
>>> state = policy.tell(state, archs, [float(a[0]) for a in archs])
>>> policy.done(state), policy.best(state)[0]
(True, 3)
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from autopanoptic.errors import ConfigError
from autopanoptic.search.fair import ConstraintError, derive_rng, strict_fair_cycle
from autopanoptic.search.hull import convex_front
from autopanoptic.search.policies.base import (
    Constraint,
    callable_or_none,
    check_seed,
    check_tell,
    optional_positive,
    positive,
    settings_json,
)
from autopanoptic.search.scoreboard import Scoreboard
from autopanoptic.search.space import Arch, SearchSpace

__all__ = ["PathPriority", "PathPriorityState"]

_PURPOSE_CYCLE = 3


@attrs.frozen
class PathPriorityState:
    """Everything that changes during a path-priority search (an immutable value)."""

    space: SearchSpace
    seed: int
    models_per_cycle: int
    cycle: int = 0
    board: Scoreboard | None = None
    evaluated: tuple[tuple[Arch, float], ...] = ()
    pending: tuple[Arch, ...] | None = None


@attrs.frozen
class PathPriority:
    """Path-priority search.

    Args:
        cycles: number of rounds T (paper: 5).
        models_per_cycle: architectures per round E, a multiple of the space's cycle length
            (``None``: the cycle length; paper: 12).
        constraint: optional predicate; a fair cycle with a violating architecture is redrawn whole.
        max_tries: redraws per fair cycle before a ConstraintError; also the number of ranked
            composites examined when looking for the best one satisfying the constraint.
    """

    cycles: int = attrs.field(default=5, validator=positive)
    models_per_cycle: int | None = attrs.field(default=None, validator=optional_positive)
    constraint: Constraint | None = attrs.field(default=None, validator=callable_or_none)
    max_tries: int = attrs.field(default=1000, validator=positive)

    def models_for(self, space: SearchSpace) -> int:
        """E for ``space``; raises ConfigError unless it is a multiple of the cycle length."""
        m = space.cycle_length
        e = self.models_per_cycle or m
        if e % m:
            raise ConfigError(
                f"PathPriority.models_per_cycle={e} is not a multiple of the cycle length {m} of space "
                f"{space.name!r}; use a multiple of {m}"
            )
        return e

    def init(self, space: SearchSpace, seed: int) -> PathPriorityState:
        """Initial state (empty scoreboard) for ``space`` and ``seed``."""
        return PathPriorityState(
            space=space, seed=check_seed(seed), models_per_cycle=self.models_for(space), board=Scoreboard.empty(space)
        )

    def ask(self, state: PathPriorityState) -> tuple[tuple[Arch, ...], PathPriorityState]:
        """The next round: E / m strict-fair cycles, each satisfying the constraint as a whole."""
        if state.pending is not None:
            return state.pending, state
        if self.done(state):
            raise ValueError("ask() after the search is done")
        gen = derive_rng(state.seed, _PURPOSE_CYCLE, state.cycle)
        batch: list[Arch] = []
        for _ in range(state.models_per_cycle // state.space.cycle_length):
            for _attempt in range(self.max_tries):
                cycle = strict_fair_cycle(state.space, gen)
                if self.constraint is None or all(self.constraint(a) for a in cycle):
                    break
            else:
                raise ConstraintError(
                    f"path-priority: no strict-fair cycle whose {state.space.cycle_length} architectures all "
                    f"satisfy the constraint was found in {self.max_tries} draws; loosen the constraint, "
                    "raise max_tries, or use a policy that redraws single candidates"
                )
            batch += cycle
        batch_t = tuple(batch)
        return batch_t, attrs.evolve(state, pending=batch_t)

    def tell(self, state: PathPriorityState, archs: Iterable[Arch], fitnesses: Iterable[float]) -> PathPriorityState:
        """Rank the round's fitnesses and add the scores to the scoreboard."""
        archs, fits = check_tell(state.pending, archs, fitnesses)
        return attrs.evolve(
            state,
            cycle=state.cycle + 1,
            board=state.board.add(archs, fits),
            evaluated=state.evaluated + tuple(zip(archs, fits)),
            pending=None,
        )

    def done(self, state: PathPriorityState) -> bool:
        """True after ``cycles`` rounds."""
        return state.pending is None and state.cycle >= self.cycles

    def scoreboard(self, state: PathPriorityState) -> Scoreboard:
        """The per-layer, per-choice scores so far."""
        return state.board

    def top_k(self, state: PathPriorityState, k: int) -> tuple[Arch, ...]:
        """The ``k`` best composite architectures by total score that satisfy the constraint.

        Without a constraint this is exactly ``scoreboard(state).top_k(k)``. With one, the first
        ``max_tries * k`` composites in score order are examined.
        """
        if self.constraint is None:
            return state.board.top_k(k)
        ranked = itertools.islice(state.board.iter_ranked(), self.max_tries * max(k, 1))
        return tuple(itertools.islice((a for a in ranked if self.constraint(a)), k))

    def front(self, state: PathPriorityState, costs: Sequence[Sequence[float]], k: int | None = None) -> tuple[Arch, ...]:
        """Composites along the scoreboard's front against an additive cost (``costs``: one number
        per layer and choice of the policy's space, e.g. a latency table's milliseconds): those that
        maximise ``total score - lam * total cost`` for some ``lam >= 0``, highest score first (the
        top composite, with a tied cheaper choice preferred), cheapest last; violators of the
        constraint skipped; at most ``k``, evenly spread (:func:`~autopanoptic.search.hull.convex_front`).
        Empty before the first round.

        >>> from autopanoptic.search.spaces import nas_bench_macro
        >>> policy = PathPriority(cycles=1)
        >>> state = policy.init(nas_bench_macro(), seed=0)
        >>> archs, state = policy.ask(state)
        >>> state = policy.tell(state, archs, [float(sum(a)) for a in archs])
        >>> front = policy.front(state, [[0.0, 1.0, 2.0]] * 8)
        >>> front[0] == policy.best(state), front[-1]
        (True, (0, 0, 0, 0, 0, 0, 0, 0))
        """
        if state.cycle == 0:
            return ()
        return tuple(p.arch for p in convex_front(state.board.scores, costs, k=k, constraint=self.constraint))

    def best(self, state: PathPriorityState) -> Arch | None:
        """The highest-scoring composite satisfying the constraint (``None`` before the first round).

        If none of the examined composites satisfies the constraint, the best evaluated
        architecture (which does) is returned.
        """
        if state.cycle == 0:
            return None
        found = self.top_k(state, 1)
        if found:
            return found[0]
        return max(state.evaluated, key=lambda e: e[1])[0]

    def max_proposals(self, space: SearchSpace) -> int:
        """The number of architectures proposed: ``cycles * E``."""
        return self.cycles * self.models_for(space)

    def to_json(self) -> dict[str, Any]:
        """The settings, with the constraint replaced by its name."""
        return settings_json(self)
