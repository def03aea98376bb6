"""What every search policy shares: the interface, constraint handling and random proposals.

A policy is a frozen attrs object holding *settings* only. Everything that changes lives in a frozen
*state* value, and every random draw is derived from ``(state.seed, purpose, counter)``:

- ``init(space, seed) -> state``
- ``ask(state) -> (archs, state)``: the next batch of architectures to evaluate;
- ``tell(state, archs, fitnesses) -> state``: their fitnesses (higher is better), in order;
- ``done(state) -> bool``; ``best(state) -> Arch | None`` (``None`` before anything was told).

Each policy also has ``max_proposals(space)`` (an upper bound used for progress bars) and
``to_json()`` (its settings, recorded in journals). Every policy takes ``constraint``: a predicate
on an architecture; a policy never proposes an architecture for which it returns false.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

import attrs
import numpy as np

from autopanoptic.errors import ConfigError
from autopanoptic.search.fair import ConstraintError
from autopanoptic.search.space import Arch, SearchSpace

__all__ = ["Constraint", "Policy", "constraint_name", "random_unseen", "settings_json"]

Constraint = Callable[[Arch], bool]
"""A predicate on an architecture: ``True`` = allowed."""

ENUMERATE_BELOW = 4096
"""Spaces this small are enumerated exactly when drawing unseen architectures."""


class Policy(Protocol):
    """The interface every search policy implements (see the module docstring)."""

    def init(self, space: SearchSpace, seed: int) -> Any: ...
    def ask(self, state: Any) -> tuple[tuple[Arch, ...], Any]: ...
    def tell(self, state: Any, archs: Iterable[Arch], fitnesses: Iterable[float]) -> Any: ...
    def done(self, state: Any) -> bool: ...
    def best(self, state: Any) -> Arch | None: ...
    def max_proposals(self, space: SearchSpace) -> int: ...
    def to_json(self) -> dict[str, Any]: ...


def constraint_name(constraint: Constraint | None) -> str | None:
    """A stable, human-readable name for a constraint (recorded in journal headers)."""
    if constraint is None:
        return None
    name = getattr(constraint, "name", None)
    if isinstance(name, str):
        return name
    mod = getattr(constraint, "__module__", None) or ""
    qual = getattr(constraint, "__qualname__", None) or type(constraint).__qualname__
    return f"{mod}.{qual}" if mod else qual


def settings_json(policy: Any) -> dict[str, Any]:
    """``{"type": class name, setting: value, ...}`` with the constraint replaced by its name."""
    out: dict[str, Any] = {"type": type(policy).__name__}
    for field in attrs.fields(type(policy)):
        value = getattr(policy, field.name)
        out[field.name] = constraint_name(value) if field.name == "constraint" else value
    return out


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{type(instance).__name__}.{attribute.name} must be a positive int, got {value!r}")


def optional_positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None:
        positive(instance, attribute, value)


def callable_or_none(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not callable(value):
        raise ConfigError(f"{type(instance).__name__}.constraint must be a predicate on an architecture or None")


def check_tell(pending: tuple[Arch, ...] | None, archs: Iterable[Arch], fitnesses: Iterable[float]) -> tuple[tuple[Arch, ...], tuple[float, ...]]:
    """Check that ``tell`` answers the last ``ask``; return archs and fitnesses as tuples."""
    from autopanoptic.search.scoreboard import FitnessError, _check_fitnesses

    if pending is None:
        raise ValueError("tell() without a pending ask(): ask for a batch first")
    archs = tuple(tuple(int(c) for c in a) for a in archs)
    if archs != pending:
        raise ValueError("tell() must report the batch returned by the last ask(), in the same order")
    fits = tuple(_check_fitnesses(fitnesses))
    if len(fits) != len(archs):
        raise FitnessError(f"{len(archs)} architectures but {len(fits)} fitnesses")
    return archs, fits


def running_best(
    best: Arch | None, best_fitness: float | None, archs: Iterable[Arch], fitnesses: Iterable[float]
) -> tuple[Arch | None, float | None]:
    """The best ``(arch, fitness)`` after a batch, ties going to the earlier architecture.

    >>> running_best(None, None, [(0,), (1,), (2,)], [0.5, 0.7, 0.7])
    ((1,), 0.7)
    """
    for a, f in zip(archs, fitnesses):
        if best_fitness is None or f > best_fitness:
            best, best_fitness = a, f
    return best, best_fitness


def sample_arch(space: SearchSpace, gen: np.random.Generator) -> Arch:
    """One uniformly random architecture (vectorised)."""
    return tuple(int(c) for c in gen.integers(0, np.asarray(space.n_choices)))


def random_unseen(
    space: SearchSpace,
    gen: np.random.Generator,
    constraint: Constraint | None,
    seen: set[Arch] | frozenset[Arch],
    max_tries: int,
) -> Arch | None:
    """A random architecture satisfying ``constraint`` and not in ``seen``.

    Returns ``None`` when there is none left (the allowed part of the space is exhausted; exact for
    spaces smaller than ``ENUMERATE_BELOW``, after ``max_tries`` draws that all hit seen
    architectures otherwise). Raises :class:`ConstraintError` when nothing satisfies the
    constraint (exact for small spaces, after ``max_tries`` draws otherwise).
    """
    small = space.size <= ENUMERATE_BELOW
    satisfied = False
    for _ in range(min(max_tries, 64) if small else max_tries):
        arch = sample_arch(space, gen)
        if constraint is not None and not constraint(arch):
            continue
        satisfied = True
        if arch not in seen:
            return arch
    if small:  # the fast path failed: decide exactly by enumeration
        allowed = [space.decode(code) for code in range(space.size)]
        allowed = [a for a in allowed if constraint is None or constraint(a)]
        if not allowed:
            raise ConstraintError(f"no architecture of space {space.name!r} satisfies the constraint")
        fresh = [a for a in allowed if a not in seen]
        return fresh[int(gen.integers(len(fresh)))] if fresh else None
    if not satisfied:
        raise ConstraintError(
            f"no architecture satisfying the constraint was found in {max_tries} random draws; "
            "loosen the constraint or raise max_tries"
        )
    return None
