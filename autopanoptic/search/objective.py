"""What ``evaluate`` may return to :func:`autopanoptic.search.run`, checked with one-line errors.

An objective comes in one of two explicit forms, chosen by ``run``'s ``batch`` flag (never guessed
from what the function returns):

- ``batch=True`` (the default): ``evaluate(archs) -> fitnesses``, called once per batch with a list
  of architectures; it returns one number per architecture, in the same order (a list, a tuple, a
  1-D numpy array or tensor, or any other ordered iterable).
- ``batch=False``: ``evaluate(arch) -> fitness``, called once per architecture with one tuple; it
  returns one number.

A fitness is a finite real number: a Python ``int`` or ``float``, a numpy scalar, or a 0-d array or
tensor. Anything else (``None``, a string, a bool, a dict, a nested list, a 2-D array, the wrong
count, NaN or infinity) raises :class:`~autopanoptic.search.scoreboard.FitnessError` with one line
that says what came back and what ``evaluate`` must return.

>>> list(fitnesses_of(lambda archs: [float(sum(a)) for a in archs], [(0, 1), (2, 2)], batch=True))
[1.0, 4.0]
>>> list(fitnesses_of(lambda arch: sum(arch), [(0, 1), (2, 2)], batch=False))
[1.0, 4.0]
>>> list(fitnesses_of(lambda arch: 0.5, [(0, 1), (2, 2)], batch=True))
Traceback (most recent call last):
...
autopanoptic.search.scoreboard.FitnessError: evaluate returned float 0.5 for a batch of 2 architectures; \
with batch=True (the default) evaluate(archs) must return one number per architecture (e.g. a list \
of 2 floats), or pass batch=False to run a function of one architecture
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Set
from typing import Any

from autopanoptic.search.scoreboard import FitnessError
from autopanoptic.search.space import Arch

__all__ = ["fitnesses_of", "to_fitness"]

_BATCH_RULE = "with batch=True (the default) evaluate(archs) must return one number per architecture"
_ONE_RULE = "with batch=False evaluate(arch) must return one finite number for the architecture"


def _show(value: Any) -> str:
    """A short one-line description of a returned value: its type and a clipped repr."""
    text = " ".join(repr(value).split())
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _ndim(value: Any) -> int | None:
    ndim = getattr(value, "ndim", None)
    return ndim if isinstance(ndim, int) else None


def to_fitness(value: Any) -> float | None:
    """``value`` as a float if it is one real number, else ``None`` (no check of finiteness).

    >>> to_fitness(3), to_fitness(0.5), to_fitness("0.5"), to_fitness(True), to_fitness([1.0])
    (3.0, 0.5, None, None, None)
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if _ndim(value) == 0 and not isinstance(value, (str, bytes)):  # numpy 0-d array, torch scalar tensor
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    return None


def _check_one(value: Any, what: str, rule: str) -> float:
    x = to_fitness(value)
    if x is None:
        raise FitnessError(f"evaluate returned {_show(value)} {what}; {rule}")
    if not math.isfinite(x):
        raise FitnessError(
            f"evaluate returned {x!r} {what}; {rule}, finite (return a very low number for a failed candidate)"
        )
    return x


def _check_batch(returned: Any, archs: Sequence[Arch]) -> list[float]:
    n = len(archs)
    rule = f"{_BATCH_RULE} (e.g. a list of {n} floats)"
    if returned is None:
        raise FitnessError(f"evaluate returned None for a batch of {n} architectures (a missing return?); {rule}")
    if to_fitness(returned) is not None or _ndim(returned) == 0:
        raise FitnessError(
            f"evaluate returned {_show(returned)} for a batch of {n} architectures; {rule}, "
            "or pass batch=False to run a function of one architecture"
        )
    ndim = _ndim(returned)
    if (
        isinstance(returned, (str, bytes, Mapping, Set))
        or not isinstance(returned, Iterable)
        or (ndim is not None and ndim != 1)
    ):
        shape = f" of shape {tuple(returned.shape)}" if ndim is not None and hasattr(returned, "shape") else ""
        raise FitnessError(
            f"evaluate returned {_show(returned)}{shape} for a batch of {n} architectures; "
            f"{rule}, in the order of archs"
        )
    values = list(returned)
    if len(values) != n:
        raise FitnessError(f"evaluate returned {len(values)} fitnesses for {n} architectures; {rule}")
    return [_check_one(v, f"as fitness {i} of the batch", _BATCH_RULE) for i, v in enumerate(values)]


def fitnesses_of(evaluate: Callable[..., Any], archs: Sequence[Arch], *, batch: bool) -> Iterator[float]:
    """Evaluate ``archs`` with ``evaluate`` in the given form, yielding checked fitnesses in order.

    With ``batch=True`` ``evaluate`` is called once and its whole answer is checked before the first
    fitness is yielded; with ``batch=False`` it is called once per architecture, lazily, so a caller
    can record each fitness before the next evaluation starts.
    """
    if batch:
        yield from _check_batch(evaluate(list(archs)), archs)
        return
    for arch in archs:
        yield _check_one(evaluate(arch), f"for architecture {list(arch)}", _ONE_RULE)
