"""Objectives for tutorials, demos, tests and benchmarks of the search core (no training involved).

- :class:`Landscape`: a deterministic synthetic fitness over any search space: a main effect per
  (layer, choice), interactions between neighbouring layers of adjustable strength, and optional
  seeded evaluation noise. Its exact optimum is known (dynamic programming along the chain of
  layers), so regret can be measured.
- :class:`NasBenchMacro` (:func:`load_nas_bench_macro`): the NAS-Bench-Macro CIFAR-10 table:
  a real accuracy for each of the 6561 architectures of :func:`~autopanoptic.search.spaces.nas_bench_macro`.

Both are callables ``objective(archs) -> list[float]``, the ``evaluate`` that
:func:`autopanoptic.search.run` expects.

>>> from autopanoptic.search.spaces import auto_panoptic
>>> land = Landscape.random(auto_panoptic(), seed=0, interaction=0.5)
>>> arch, value = land.optimum()
>>> land.regret(arch)
0.0
>>> land([arch])[0] == value
True
"""

from __future__ import annotations

import bisect
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from autopanoptic.errors import DataError
from autopanoptic.search.fair import derive_rng
from autopanoptic.search.space import Arch, SearchSpace
from autopanoptic.search.spaces import nas_bench_macro

__all__ = ["Landscape", "NasBenchMacro", "load_nas_bench_macro"]

_PURPOSE_LANDSCAPE = 11
_PURPOSE_NOISE = 12


def _rows(value: Iterable[Iterable[Any]]) -> tuple[tuple[Any, ...], ...]:
    return tuple(tuple(float(x) if not isinstance(x, (list, tuple)) else tuple(map(float, x)) for x in row) for row in value)


@attrs.frozen
class Landscape:
    """A synthetic fitness: ``sum_i main[i][a_i] + sum_i pair[i][a_i][a_{i+1}]`` (+ noise).

    Build one with :meth:`random`. ``noise`` is the standard deviation of Gaussian noise added to
    every evaluation; it is a deterministic function of ``(seed, arch)``, like evaluating on a
    fixed validation set, so repeated evaluations of one architecture agree.
    """

    space: SearchSpace
    main: tuple[tuple[float, ...], ...] = attrs.field(converter=_rows)
    pair: tuple[tuple[tuple[float, ...], ...], ...] = attrs.field(converter=_rows)
    noise: float = attrs.field(default=0.0, converter=float)
    seed: int = 0

    @classmethod
    def random(cls, space: SearchSpace, seed: int, *, interaction: float = 0.5, noise: float = 0.0) -> Landscape:
        """A random landscape: main effects ~ N(0, 1), neighbour interactions ~ N(0, interaction^2).

        ``interaction=0`` makes layers independent (then path-priority's per-layer scores are the
        right model); larger values make the best choice of a layer depend on its neighbours.
        """
        if interaction < 0 or noise < 0:
            raise ValueError("interaction and noise must be >= 0")
        gen = derive_rng(seed, _PURPOSE_LANDSCAPE)
        n = space.n_choices
        main = [gen.normal(size=k).tolist() for k in n]
        pair = [(interaction * gen.normal(size=(a, b))).tolist() for a, b in zip(n[:-1], n[1:])]
        return cls(space, main, pair, noise, int(seed))

    def true_fitness(self, arch: Arch) -> float:
        """The noiseless fitness."""
        arch = self.space.validate(arch)
        value = sum(self.main[i][c] for i, c in enumerate(arch))
        value += sum(self.pair[i][arch[i]][arch[i + 1]] for i in range(len(arch) - 1))
        return float(value)

    def fitness(self, arch: Arch) -> float:
        """The fitness an evaluation reports: the true fitness plus the (seeded) noise."""
        value = self.true_fitness(arch)
        if self.noise:
            value += self.noise * float(derive_rng(self.seed, _PURPOSE_NOISE, *arch).normal())
        return value

    def __call__(self, archs: Sequence[Arch]) -> list[float]:
        """Evaluate a batch (the ``evaluate`` callable of :func:`autopanoptic.search.run`)."""
        return [self.fitness(a) for a in archs]

    def optimum(self) -> tuple[Arch, float]:
        """The exact best architecture and its true fitness (Viterbi along the layer chain).

        Ties go to lower choice indices, layer by layer from the last.
        """
        best = np.asarray(self.main[0], dtype=float)
        back: list[np.ndarray] = []
        for i in range(1, len(self.main)):
            total = best[:, None] + np.asarray(self.pair[i - 1]) + np.asarray(self.main[i])[None, :]
            back.append(np.argmax(total, axis=0))
            best = total.max(axis=0)
        last = int(np.argmax(best))
        arch = [last]
        for b in reversed(back):
            arch.append(int(b[arch[-1]]))
        arch_t = tuple(reversed(arch))
        return arch_t, self.true_fitness(arch_t)

    def regret(self, arch: Arch) -> float:
        """``optimum value - true fitness of arch`` (0 for an optimal architecture)."""
        return max(0.0, self.optimum()[1] - self.true_fitness(arch))


NAS_BENCH_MACRO_STAGES = (2, 3, 3)
"""Layers per stage of NAS-Bench-Macro; the first layer of a stage downsamples."""


@attrs.frozen(eq=False)
class NasBenchMacro:
    """The NAS-Bench-Macro table: mean CIFAR-10 test accuracy (%) of every architecture.

    An identity (choice 0) in a non-first layer of a stage is a no-op, so several architectures are
    one network; :meth:`canonical` maps an architecture to its network, :attr:`n_networks` is 3969.
    """

    accuracy: dict[Arch, float]
    space: SearchSpace = attrs.field(factory=nas_bench_macro)
    _sorted: tuple[float, ...] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        per_network: dict[Arch, float] = {}
        for arch, acc in self.accuracy.items():
            per_network[self.canonical(arch)] = acc
        object.__setattr__(self, "_sorted", tuple(sorted(per_network.values())))

    @staticmethod
    def canonical(arch: Arch) -> Arch:
        """The architecture with each stage's non-first identities moved to the end of the stage
        (same network, one representative per network)."""
        out: list[int] = []
        start = 0
        for n in NAS_BENCH_MACRO_STAGES:
            stage = arch[start : start + n]
            rest = [c for c in stage[1:] if c != 0]
            out += [stage[0], *rest, *([0] * (n - 1 - len(rest)))]
            start += n
        return tuple(out)

    @property
    def n_networks(self) -> int:
        """Number of distinct networks (3969 for the full table)."""
        return len(self._sorted)

    @property
    def best_accuracy(self) -> float:
        return self._sorted[-1]

    def __call__(self, archs: Sequence[Arch]) -> list[float]:
        """Mean accuracy (%) of each architecture: an ``evaluate`` callable."""
        return [self.accuracy[self.space.validate(a)] for a in archs]

    def regret(self, arch: Arch) -> float:
        """Best accuracy minus the accuracy of ``arch`` (percentage points)."""
        return self.best_accuracy - self.accuracy[self.space.validate(arch)]

    def rank(self, arch: Arch) -> int:
        """Number of distinct networks with a strictly higher accuracy (0 = best)."""
        acc = self.accuracy[self.space.validate(arch)]
        return len(self._sorted) - bisect.bisect_right(self._sorted, acc)


def load_nas_bench_macro(path: str | os.PathLike[str]) -> NasBenchMacro:
    """Load ``nas-bench-macro_cifar10.json`` (keys ``"02012100"``, values with ``mean_acc``).

    Raises :class:`~autopanoptic.errors.DataError` naming the file when it is missing or malformed.
    """
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; pass the path of nas-bench-macro_cifar10.json") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(obj, dict) or not obj:
        raise DataError(f"{path}: expected a JSON object mapping architecture keys to results")
    table: dict[Arch, float] = {}
    for key, value in obj.items():
        try:
            if len(key) != 8 or set(key) - set("012"):
                raise ValueError
            acc = float(value["mean_acc"])
            if not math.isfinite(acc):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}: bad entry {key!r}: expected an 8-digit key over 0/1/2 with a finite mean_acc") from None
        table[tuple(int(c) for c in key)] = acc
    return NasBenchMacro(table)
