"""Rank scoring and the per-layer scoreboard of path-priority search (SPEC.md section 3).

A batch of ``E`` evaluated architectures is ranked by fitness (rank 0 = the highest fitness; tied
fitnesses share the average of their ranks, so ranks and scores may be half-integers). Each
architecture scores ``K - rank`` with ``K = E - 1``, and that score is added to every
(layer, choice) the architecture uses. Scores are always multiples of 1/2, so float sums are
exact and adding batches in any order gives bit-identical boards.

>>> rank_scores([0.3, 0.9, 0.3])
(0.5, 2.0, 0.5)
>>> board = Scoreboard.empty((2, 3)).add([(0, 1), (1, 2), (0, 0)], [0.3, 0.9, 0.3])
>>> board.scores
((1.0, 2.0), (0.5, 0.5, 2.0))
>>> board.best()
(1, 2)
>>> board.top_k(3)
((1, 2), (0, 2), (1, 0))
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import attrs

from autopanoptic.errors import AutopanopticError
from autopanoptic.search.space import Arch, SearchSpace

__all__ = ["FitnessError", "Scoreboard", "rank_scores", "ranks"]

FORMAT = "autopanoptic-scoreboard"
VERSION = 1


class FitnessError(AutopanopticError, ValueError):
    """A fitness value is not a finite number, or fitnesses do not match the architectures."""


def _check_fitnesses(fitnesses: Iterable[Any]) -> list[float]:
    out = []
    for f in fitnesses:
        try:
            x = float(f)
        except (TypeError, ValueError):
            raise FitnessError(f"fitness must be a number, got {f!r}") from None
        if not math.isfinite(x):
            raise FitnessError(f"fitness must be finite, got {x!r}; return a very low number for failed candidates")
        out.append(x)
    return out


def ranks(fitnesses: Sequence[float]) -> tuple[float, ...]:
    """Rank of each fitness, 0 = highest; tied fitnesses share the average of their ranks.

    >>> ranks([1.0, 5.0, 5.0, 2.0])
    (3.0, 0.5, 0.5, 2.0)
    """
    values = _check_fitnesses(fitnesses)
    order = sorted(range(len(values)), key=lambda i: -values[i])
    out = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        shared = (start + end) / 2  # average of ranks start..end: an integer or a half-integer
        for pos in range(start, end + 1):
            out[order[pos]] = shared
        start = end + 1
    return tuple(out)


def rank_scores(fitnesses: Sequence[float]) -> tuple[float, ...]:
    """Score ``K - rank`` of each fitness with ``K = len(fitnesses) - 1`` (best gets ``K``).

    >>> rank_scores([0.1, 0.7, 0.4])
    (0.0, 2.0, 1.0)
    """
    r = ranks(fitnesses)
    k = len(r) - 1
    return tuple(k - x for x in r)


def _scores_valid(instance: Scoreboard, attribute: attrs.Attribute, value: tuple) -> None:
    if len(value) != len(instance.n_choices):
        raise ValueError(f"scores has {len(value)} layers but n_choices has {len(instance.n_choices)}")
    for i, (row, n) in enumerate(zip(value, instance.n_choices)):
        if len(row) != n:
            raise ValueError(f"layer {i}: {len(row)} scores for {n} choices")


def _to_n_choices(value: Any) -> tuple[int, ...]:
    if isinstance(value, SearchSpace):
        return value.n_choices
    out = tuple(int(n) for n in value)
    if not out or any(n < 1 for n in out):
        raise ValueError(f"n_choices must be a non-empty list of positive ints, got {list(value)}")
    return out


@attrs.frozen
class Scoreboard:
    """Immutable per-layer, per-choice scores.

    Build with :meth:`empty`, grow with :meth:`add` (returns a new board) or ``+`` (merges two
    boards of the same shape). ``batches`` and ``evaluations`` count what was added.
    """

    n_choices: tuple[int, ...] = attrs.field(converter=_to_n_choices)
    scores: tuple[tuple[float, ...], ...] = attrs.field(
        converter=lambda rows: tuple(tuple(float(x) for x in row) for row in rows), validator=_scores_valid
    )
    batches: int = 0
    evaluations: int = 0

    @classmethod
    def empty(cls, space: SearchSpace | Sequence[int]) -> Scoreboard:
        """A board of zeros for ``space`` (a SearchSpace, or its choice counts).

        >>> Scoreboard.empty((2, 1)).scores
        ((0.0, 0.0), (0.0,))
        """
        n_choices = _to_n_choices(space)
        return cls(n_choices, tuple((0.0,) * n for n in n_choices))

    def _check_arch(self, arch: Iterable[Any]) -> Arch:
        arch = tuple(arch)
        if len(arch) != len(self.n_choices):
            raise ValueError(f"architecture has {len(arch)} choices, the scoreboard {len(self.n_choices)} layers")
        for i, (c, n) in enumerate(zip(arch, self.n_choices)):
            if isinstance(c, bool) or not 0 <= int(c) < n or int(c) != c:
                raise ValueError(f"layer {i} has {n} choices; got {c!r}")
        return tuple(int(c) for c in arch)

    def add(self, archs: Sequence[Arch], fitnesses: Sequence[float]) -> Scoreboard:
        """A new board with one ranked batch added (ranks computed within this batch only).

        An empty batch changes nothing but still counts as a batch.
        """
        archs = [self._check_arch(a) for a in archs]
        fitnesses = list(fitnesses)
        if len(archs) != len(fitnesses):
            raise FitnessError(f"{len(archs)} architectures but {len(fitnesses)} fitnesses")
        scores = [list(row) for row in self.scores]
        for arch, s in zip(archs, rank_scores(fitnesses)):
            for i, c in enumerate(arch):
                scores[i][c] += s
        return Scoreboard(self.n_choices, scores, self.batches + 1, self.evaluations + len(archs))

    def __add__(self, other: Scoreboard) -> Scoreboard:
        if not isinstance(other, Scoreboard):
            return NotImplemented
        if other.n_choices != self.n_choices:
            raise ValueError("cannot merge scoreboards of different search spaces")
        scores = [[a + b for a, b in zip(r1, r2)] for r1, r2 in zip(self.scores, other.scores)]
        return Scoreboard(self.n_choices, scores, self.batches + other.batches, self.evaluations + other.evaluations)

    def total(self, arch: Arch) -> float:
        """Total score of a composite architecture: the sum of its choices' scores."""
        arch = self._check_arch(arch)
        return sum(self.scores[i][c] for i, c in enumerate(arch))

    def best(self) -> Arch:
        """The highest-scoring choice of each layer; ties go to the lower choice index."""
        return tuple(max(range(len(row)), key=lambda c: (row[c], -c)) for row in self.scores)

    def top_k(self, k: int) -> tuple[Arch, ...]:
        """The ``k`` composite architectures with the highest total score, best first, exactly.

        Equal totals are ordered by the architecture itself (lexicographically lower first), so
        ``top_k(1) == (best(),)``. Returns fewer than ``k`` when the space is smaller.

        Best-first enumeration: each layer's choices are sorted by (score descending, index);
        a candidate's successors move one layer one step down its order, which never raises the
        total nor lowers the architecture in the tie order, so a heap yields the exact order.
        """
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        return tuple(itertools.islice(self.iter_ranked(), k))

    def iter_ranked(self) -> Iterator[Arch]:
        """Every composite architecture, best total score first (lazily; same order as top_k)."""
        order = [sorted(range(len(row)), key=lambda c: (-row[c], c)) for row in self.scores]

        def key(pos: tuple[int, ...]) -> tuple[float, Arch]:
            arch = tuple(order[i][p] for i, p in enumerate(pos))
            return (-sum(self.scores[i][c] for i, c in enumerate(arch)), arch)

        start = (0,) * len(order)
        heap = [(key(start), start)]
        seen = {start}
        while heap:
            (_, arch), pos = heapq.heappop(heap)
            yield arch
            for i in range(len(pos)):
                if pos[i] + 1 < len(order[i]):
                    nxt = pos[:i] + (pos[i] + 1,) + pos[i + 1 :]
                    if nxt not in seen:
                        seen.add(nxt)
                        heapq.heappush(heap, (key(nxt), nxt))

    # ---- JSON ------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (floats are written exactly by ``json``)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "n_choices": list(self.n_choices),
            "scores": [list(row) for row in self.scores],
            "batches": self.batches,
            "evaluations": self.evaluations,
        }

    @classmethod
    def from_json(cls, obj: Any) -> Scoreboard:
        """Inverse of :meth:`to_json`; raises ``ValueError`` on anything else.

        >>> import json
        >>> b = Scoreboard.empty((3,)).add([(2,), (1,)], [1.0, 0.0])
        >>> Scoreboard.from_json(json.loads(json.dumps(b.to_json()))) == b
        True
        """
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise ValueError(f"not a scoreboard JSON object (expected format {FORMAT!r})")
        if obj.get("version") != VERSION:
            raise ValueError(f"unsupported scoreboard version {obj.get('version')!r} (this code reads {VERSION})")
        try:
            return cls(obj["n_choices"], obj["scores"], int(obj["batches"]), int(obj["evaluations"]))
        except (KeyError, TypeError) as e:
            raise ValueError(f"malformed scoreboard JSON: {e}") from None
