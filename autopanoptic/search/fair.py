"""Strict-fair sampling (SPEC.md section 2; FairNAS).

One *cycle* is ``space.cycle_length`` architectures (the lcm of the choice counts). For every layer
independently we concatenate ``cycle_length / n_choices`` random permutations of its choices; column
``j`` of that table is architecture ``j``. Within a cycle every choice of every layer therefore
appears exactly ``cycle_length / n_choices`` times.

>>> from autopanoptic.search.spaces import auto_panoptic
>>> cycle = strict_fair_cycle(auto_panoptic(), 0)
>>> len(cycle), len(cycle[0])
(12, 56)
>>> sorted(a[0] for a in cycle)        # a backbone layer (4 choices): every choice 3 times
[0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from autopanoptic.errors import AutopanopticError
from autopanoptic.search.space import Arch, SearchSpace

__all__ = ["ConstraintError", "as_generator", "derive_rng", "strict_fair_cycle"]


class ConstraintError(AutopanopticError, ValueError):
    """No architecture satisfying the search constraint was found in a bounded number of draws."""


def as_generator(rng: np.random.Generator | int) -> np.random.Generator:
    """``rng`` itself if it is a numpy Generator, else a new Generator seeded with the int ``rng``.

    ``None`` is refused: randomness is always passed in explicitly, never drawn from the OS.

    >>> int(as_generator(3).integers(100)) == int(as_generator(3).integers(100))
    True
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, bool) or not isinstance(rng, (int, np.integer)):
        raise TypeError(f"rng must be a numpy Generator or an int seed, got {rng!r}")
    return np.random.default_rng(int(rng))


def derive_rng(seed: int, *keys: int) -> np.random.Generator:
    """A Generator determined by ``seed`` and a path of non-negative integer ``keys``.

    Policies derive every random draw from ``(seed, purpose, counter)`` this way, so a proposal
    depends on the state only, never on a global generator or on how many draws came before.

    >>> int(derive_rng(0, 1, 2).integers(1000)) == int(derive_rng(0, 1, 2).integers(1000))
    True
    """
    # keys go into spawn_key, not the entropy list: numpy zero-pads entropy, so (seed, 0) and (seed,)
    # would give the same stream
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=tuple(int(k) for k in keys)))


def strict_fair_cycle(space: SearchSpace, rng: np.random.Generator | int) -> tuple[Arch, ...]:
    """One strict-fair cycle of ``space.cycle_length`` architectures.

    Args:
        space: the search space.
        rng: a numpy Generator (advanced in place) or an int seed.

    Returns:
        A tuple of ``space.cycle_length`` architectures; for each layer with ``n`` choices, every
        choice is used by exactly ``cycle_length // n`` of them.
    """
    gen = as_generator(rng)
    m = space.cycle_length
    rows = [np.concatenate([gen.permutation(n) for _ in range(m // n)]) for n in space.n_choices]
    table = np.stack(rows)  # layers x m
    return tuple(tuple(int(c) for c in table[:, j]) for j in range(m))


def draw_satisfying(
    draw: Callable[[int], Arch],
    constraint: Callable[[Arch], bool] | None,
    max_tries: int,
    what: str = "architecture",
) -> Arch:
    """Call ``draw(attempt)`` until the result satisfies ``constraint`` (at most ``max_tries`` times).

    Raises :class:`ConstraintError` when no draw satisfied the constraint.
    """
    for attempt in range(max_tries):
        arch = draw(attempt)
        if constraint is None or constraint(arch):
            return arch
    raise ConstraintError(
        f"no {what} satisfying the constraint was found in {max_tries} random draws; "
        "loosen the constraint or raise max_tries"
    )
