"""The search loop: the only place in the search core with side effects.

:func:`run` drives a policy: ``ask`` a batch, evaluate the architectures not evaluated before (one
call of ``evaluate`` per batch, or one per architecture with ``batch=False``), ``tell`` the fitnesses,
until ``done``. With ``journal=path`` every evaluation is appended to a JSON-lines file as it
happens (flushed and fsynced); running again with the same journal replays the recorded fitnesses
instead of calling ``evaluate`` and continues, so an interrupted search ends with exactly the result
an uninterrupted one would have given.

Journal format (version 2): the first line is a header
``{"format": "autopanoptic-search-journal", "version": 2, "space": ..., "space_fingerprint": ...,
"policy": {...settings...}, "seed": ..., "crc32": "..."}``; every further line is one evaluation
``{"n": 0, "arch": [...], "fitness": 0.43, "crc32": "5f0e3a1c"}`` with ``n`` counting from 0. Every
line ends with ``, "crc32": "<8 hex digits>"}``: the CRC-32 of the line's exact UTF-8 text before that
suffix, so any changed byte of a line (CRC-32 detects every error burst of up to 32 bits) is reported
as damage. Version-1 journals (no checksums) are still read and resumed; the lines appended to them
carry checksums, and once one does, every later line must.

>>> from autopanoptic.search.spaces import nas_bench_macro
>>> from autopanoptic.search.policies import RandomSearch
>>> result = run(RandomSearch(budget=5), nas_bench_macro(), lambda archs: [float(sum(a)) for a in archs],
...              seed=0, progress=False)
>>> result.n_evaluations, result.best_fitness == max(f for _, f in result.history)
(5, True)

A function of one architecture is run with ``batch=False``:

>>> run(RandomSearch(budget=5), nas_bench_macro(), lambda arch: float(sum(arch)), seed=0,
...     progress=False, batch=False).n_evaluations
5
"""

from __future__ import annotations

import json
import math
import os
import re
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from autopanoptic.errors import JournalError
from autopanoptic.io import atomic_write_text
from autopanoptic.search.objective import fitnesses_of
from autopanoptic.search.policies.base import Policy, check_seed
from autopanoptic.search.space import Arch, SearchSpace

__all__ = ["JOURNAL_FORMAT", "JOURNAL_VERSION", "SearchResult", "evaluate_listed", "journal_header", "read_journal", "run",
           "seal_line", "verify_line"]

JOURNAL_FORMAT = "autopanoptic-search-journal"
JOURNAL_VERSION = 2
_READS_VERSIONS = (1, 2)  # version 1: the same records without checksums

_CRC_SUFFIX = re.compile(r', "crc32": "([0-9a-f]{8})"\}\Z')

Evaluate = Callable[[list[Arch]], Sequence[float]]
EvaluateOne = Callable[[Arch], float]


@attrs.frozen
class SearchResult:
    """What a search ended with.

    Attributes:
        best: the policy's chosen architecture (``policy.best(state)``).
        best_fitness: its fitness if it was evaluated during the search, else ``None`` (path-priority's
            composite may never have been evaluated).
        history: every distinct evaluation ``(arch, fitness)`` in order.
        n_evaluations: ``len(history)``: distinct architectures evaluated.
        state: the policy's final state (e.g. for ``PathPriority.top_k(state, k)``).
    """

    best: Arch | None
    best_fitness: float | None
    history: tuple[tuple[Arch, float], ...]
    n_evaluations: int
    state: Any


def journal_header(policy: Policy, space: SearchSpace, seed: int) -> dict[str, Any]:
    """The header line identifying a run: format, space, policy settings and seed."""
    return {
        "format": JOURNAL_FORMAT,
        "version": JOURNAL_VERSION,
        "space": space.name,
        "space_fingerprint": space.fingerprint(),
        "policy": policy.to_json(),
        "seed": int(seed),
    }


def read_journal(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[tuple[Arch, float]]]:
    """Read a journal: its header and its evaluations in order.

    Raises :class:`~autopanoptic.errors.JournalError` naming the file and line on any corruption.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise JournalError(f"{path}: no such journal") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise JournalError(f"{path}: not a search journal (not UTF-8 text); move it away or choose another path") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    elif lines:
        raise JournalError(
            f"{path}: last line {len(lines)} is incomplete (interrupted write?); delete that line to resume"
        )
    if not lines:
        raise JournalError(f"{path}: empty journal")
    try:
        header = json.loads(lines[0])
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("format") != JOURNAL_FORMAT:
        raise JournalError(f"{path}: not a search journal (bad header line); move it away or choose another path")
    checked = verify_line(path, 1, lines[0])
    if header.get("version") not in _READS_VERSIONS:
        raise JournalError(f"{path}: journal version {header.get('version')!r}, this code reads {JOURNAL_VERSION}")
    if header["version"] >= 2 and not checked:
        raise JournalError(f"{path}: line 1 has no checksum (damaged?); the journal is corrupt")
    entries: list[tuple[Arch, float]] = []
    for lineno, line in enumerate(lines[1:], start=2):
        has_crc = verify_line(path, lineno, line)
        if checked and not has_crc:
            raise JournalError(f"{path}: line {lineno} has no checksum but earlier lines do (damaged?); "
                               "the journal is corrupt")
        checked = checked or has_crc
        try:
            obj = json.loads(line, object_pairs_hook=_no_duplicates)
            if set(obj) != ({"n", "arch", "fitness", "crc32"} if has_crc else {"n", "arch", "fitness"}):
                raise ValueError
            n, arch, fit = obj["n"], obj["arch"], obj["fitness"]
            if n != len(entries) or not isinstance(arch, list) or not all(type(c) is int for c in arch):
                raise ValueError
            fit = float(fit)
            if not math.isfinite(fit):
                raise ValueError
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise JournalError(f"{path}: line {lineno} is not a valid evaluation record; the journal is corrupt") from None
        entries.append((tuple(arch), fit))
    return header, entries


def seal_line(record: dict[str, Any]) -> str:
    """``record`` as one JSON line (without the newline) ending in its checksum."""
    body = json.dumps(record)[:-1]
    return f'{body}, "crc32": "{zlib.crc32(body.encode("utf-8")):08x}"}}'


def verify_line(path: Path, lineno: int, line: str) -> bool:
    """Whether ``line`` carries a checksum; :class:`JournalError` if it carries a wrong one."""
    m = _CRC_SUFFIX.search(line)
    if m is None:
        return False
    if zlib.crc32(line[: m.start()].encode("utf-8")) != int(m.group(1), 16):
        raise JournalError(f"{path}: line {lineno} is damaged (checksum mismatch); the journal is corrupt: "
                           "restore a backup or delete the journal to search again")
    return True


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key")
    return out


class _Journal:
    """Appends evaluation records, each flushed and fsynced."""

    def __init__(self, path: Path, start: int):
        self.path = path
        self.n = start
        self._f = open(path, "a", encoding="utf-8")

    def append(self, arch: Arch, fitness: float) -> None:
        self._f.write(seal_line({"n": self.n, "arch": list(arch), "fitness": fitness}) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())
        self.n += 1

    def close(self) -> None:
        self._f.close()


def _open_journal(path: Path, header: dict[str, Any]) -> list[tuple[Arch, float]]:
    """Existing evaluations of a matching journal, or [] after creating a new one."""
    if not path.exists() or path.stat().st_size == 0:
        atomic_write_text(path, seal_line(header) + "\n")
        return []
    found, entries = read_journal(path)
    for key in ("space_fingerprint", "policy", "seed"):
        if found.get(key) != header[key]:
            raise JournalError(
                f"{path}: journal belongs to another run ({key} {found.get(key)!r} != {header[key]!r}); "
                "use a new journal path or the original settings"
            )
    return entries


def run(
    policy: Policy,
    space: SearchSpace,
    evaluate: Evaluate | EvaluateOne,
    *,
    seed: int,
    journal: str | os.PathLike[str] | None = None,
    progress: bool = True,
    batch: bool = True,
) -> SearchResult:
    """Run ``policy`` on ``space`` until it is done.

    Args:
        policy: any object with the policy interface (``init / ask / tell / done / best``).
        space: the search space.
        evaluate: ``evaluate(archs) -> fitnesses`` for a whole batch (higher is better, finite), or
            with ``batch=False`` ``evaluate(arch) -> fitness`` for one architecture. Architectures
            evaluated before in this run are answered from a cache, never re-evaluated.
        seed: a non-negative int; the same seed gives the same proposals in any process.
        journal: optional JSON-lines file; created if missing, resumed if it matches this run.
        progress: show a tqdm bar (ETA, distinct evaluations, best fitness so far).
        batch: ``True`` (default): ``evaluate`` takes a list of architectures and returns one number
            each. ``False``: it takes one architecture and returns one number; each result is
            journaled before the next call. See :mod:`autopanoptic.search.objective`.

    Raises:
        JournalError: the journal is corrupt or belongs to another space / policy / seed (it is
            left untouched).
        FitnessError: ``evaluate`` returned something other than what its form requires (a wrong
            count, a non-number, a non-finite number); the one-line message says what it must return.
    """
    from tqdm.auto import tqdm

    seed = check_seed(seed)
    if not isinstance(batch, bool):
        raise TypeError(f"batch must be True (evaluate takes a list) or False (one architecture), got {batch!r}")
    state = policy.init(space, seed)
    replay: list[tuple[Arch, float]] = []
    writer: _Journal | None = None
    if journal is not None:
        path = Path(journal)
        replay = _open_journal(path, journal_header(policy, space, seed))
        writer = _Journal(path, len(replay))
    cache: dict[Arch, float] = {}
    history: list[tuple[Arch, float]] = []
    best_seen: float | None = None
    total = getattr(policy, "max_proposals", None)
    bar = tqdm(total=total(space) if total else None, disable=not progress, unit="arch", desc=type(policy).__name__)
    try:
        while not policy.done(state):
            archs, state = policy.ask(state)
            archs = tuple(space.validate(a) for a in archs)
            new: list[Arch] = []
            for a in archs:
                if a not in cache and a not in new:
                    new.append(a)
            to_eval: list[Arch] = []
            for a in new:
                i = len(history)
                if i < len(replay):
                    if replay[i][0] != a:
                        raise JournalError(
                            f"{journal}: evaluation {i} in the journal is {list(replay[i][0])} but this run "
                            f"proposes {list(a)}; the journal belongs to another run or code version"
                        )
                    cache[a] = replay[i][1]
                    history.append(replay[i])
                else:
                    to_eval.append(a)
                    history.append((a, math.nan))  # placeholder, filled below
            if to_eval:
                start = len(history) - len(to_eval)
                for k, (a, f) in enumerate(zip(to_eval, fitnesses_of(evaluate, to_eval, batch=batch))):
                    cache[a] = f
                    history[start + k] = (a, f)
                    if writer is not None:
                        writer.append(a, f)
            fitnesses = [cache[a] for a in archs]
            state = policy.tell(state, archs, fitnesses)
            if fitnesses:
                top = max(fitnesses)
                best_seen = top if best_seen is None else max(best_seen, top)
            bar.update(len(archs))
            bar.set_postfix(evals=len(history), best=f"{best_seen:.4g}" if best_seen is not None else "-")
    finally:  # a batch whose evaluation failed was never journaled: a resume evaluates it again
        bar.close()
        if writer is not None:
            writer.close()
    if len(history) < len(replay):
        raise JournalError(
            f"{journal}: the journal holds {len(replay)} evaluations but this run needs only {len(history)}; "
            "it belongs to another run"
        )
    best = policy.best(state)
    return SearchResult(
        best=best,
        best_fitness=cache.get(best) if best is not None else None,
        history=tuple(history),
        n_evaluations=len(history),
        state=state,
    )


def evaluate_listed(
    policy: Policy,
    space: SearchSpace,
    archs: Sequence[Arch],
    evaluate: Evaluate,
    *,
    seed: int,
    known: Sequence[tuple[Arch, float]] = (),
    journal: str | os.PathLike[str] | None = None,
) -> tuple[tuple[Arch, float], ...]:
    """``(arch, fitness)`` of each of ``archs`` after a search (e.g. ``policy.front(state, costs)``):
    taken from ``known`` (the search's history) or from ``journal``, the rest evaluated in one call
    of ``evaluate`` and appended to ``journal`` (a journal of its own, same format and header as the
    search's: ``policy``, ``space`` and ``seed`` must match). Lookups are by architecture, so a
    rerun evaluates only what an interrupted one had not journaled.

    >>> from autopanoptic.search.spaces import nas_bench_macro
    >>> from autopanoptic.search.policies import RandomSearch
    >>> evaluate_listed(RandomSearch(budget=1), nas_bench_macro(), [(0,) * 8, (1,) * 8],
    ...                 lambda archs: [float(sum(a)) for a in archs], seed=0, known=[((0,) * 8, 5.0)])
    (((0, 0, 0, 0, 0, 0, 0, 0), 5.0), ((1, 1, 1, 1, 1, 1, 1, 1), 8.0))
    """
    archs = [space.validate(a) for a in archs]
    cache = dict(known)
    writer: _Journal | None = None
    if journal is not None:
        replay = _open_journal(Path(journal), journal_header(policy, space, check_seed(seed)))
        cache.update({a: f for a, f in replay if a not in cache})
        writer = _Journal(Path(journal), len(replay))
    try:
        todo = list(dict.fromkeys(a for a in archs if a not in cache))
        if todo:
            for a, f in zip(todo, fitnesses_of(evaluate, todo, batch=True)):
                cache[a] = f
                if writer is not None:
                    writer.append(a, f)
    finally:
        if writer is not None:
            writer.close()
    return tuple((a, cache[a]) for a in archs)
