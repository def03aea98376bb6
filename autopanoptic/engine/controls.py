"""Random controls: architectures drawn uniformly from the sampling space and retrained with the
chosen architecture's own recipe, so that a run shows the searched network beside random ones.

The paper's Table 3 compares the searched network with random architectures; a run on the user's
own data has no ground-truth table (:mod:`autopanoptic.engine.truth`) to compare with, so
``retrain.controls`` retrains such controls beside it: ``auto`` gives every worker that
``retrain.parallel: single`` leaves idle one control (the control costs no wall time then), an
integer asks for that many (trained after the chosen network on a worker that has no other work).

Layout: ``<run>/retrain/controls.json`` (how many, and their architectures), and per control
``<run>/retrain/controls/<i>/`` with ``arch.json``, ``checkpoint.pt`` and ``losses.json`` like
``<run>/retrain/``. Control ``i`` is drawn with the seed ``(search.seed, retrain.seed, i)``: a
function of the config alone, so resuming, or running the stage on another number of workers,
retrains the same controls.

Example::

    autopanoptic demo --set retrain.controls=2 --out runs/demo   # report: searched vs 2 random controls
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from autopanoptic.engine.restrict import OpRestriction
from autopanoptic.errors import CheckpointError
from autopanoptic.io import atomic_write_json
from autopanoptic.search.space import Arch

__all__ = ["count", "draw", "folder", "owner", "read_plan", "report_lines", "summary_line", "write_plan"]

_STREAM = 0xC0  # keeps the controls' draws apart from any other use of the same seeds


def count(setting: int | str, world_size: int, parallel: str) -> int:
    """How many controls ``retrain.controls`` asks for on ``world_size`` workers (``auto``: one per
    worker that ``parallel: single`` leaves idle)."""
    if setting == "auto":
        return world_size - 1 if parallel == "single" else 0
    return int(setting)


def draw(restriction: OpRestriction, n: int, search_seed: int, retrain_seed: int) -> list[Arch]:
    """The ``n`` control architectures (full-space encoding), uniform over the sampling space."""
    return [restriction.to_full(restriction.sub.sample(np.random.default_rng((_STREAM, search_seed, retrain_seed, i))))
            for i in range(n)]


def owner(job: int, world_size: int, alone: bool) -> int | None:
    """The rank that trains job ``job`` (0 = the chosen network, ``i + 1`` = control ``i``) when each
    job runs on one worker (``alone``); None when every worker takes part in every job."""
    return job % world_size if alone else None


def folder(root: Path, i: int) -> Path:
    """The folder of control ``i`` of the run at ``root``."""
    return Path(root) / "retrain" / "controls" / str(i)


def write_plan(root: Path, space, archs: list[Arch]) -> None:
    """Record the controls of this retraining (the evaluation reads which ones belong to it)."""
    atomic_write_json(Path(root) / "retrain" / "controls.json",
                      {"controls": [{"index": i, "flat": list(a), "ops": space.arch_to_named(a)}
                                    for i, a in enumerate(archs)]})


def read_plan(root: Path) -> list[Arch]:
    """The controls the last retraining of the run planned (none when it had none)."""
    path = Path(root) / "retrain" / "controls.json"
    if not path.exists():
        return []
    try:
        return [tuple(int(c) for c in e["flat"]) for e in json.loads(path.read_text())["controls"]]
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: not a controls file of autopanoptic ({e}); delete it and retrain") from None


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _margin(metrics: dict[str, Any]) -> float:
    """The chosen network's PQ minus its controls' mean PQ (fractions)."""
    return metrics["All"]["pq"] - float(np.mean([c["All"]["pq"] for c in metrics["controls"]]))


def summary_line(metrics: dict[str, Any]) -> str | None:
    """One line for the terminal: the controls' PQ and the chosen network's margin over their mean."""
    ctrl = metrics.get("controls") or []
    if not ctrl:
        return None
    diff = _margin(metrics)
    return (f"random controls (same retraining): PQ {', '.join(_pct(c['All']['pq']) for c in ctrl)}; chosen minus "
            f"their mean {100 * diff:+.1f} (one training each: see the report)")


def report_lines(metrics: dict[str, Any]) -> list[str]:
    """The report's comparison of the chosen network with its random controls (none without controls)."""
    ctrl = metrics.get("controls") or []
    if not ctrl:
        return []

    def row(name: str, m: dict[str, Any]) -> str:
        size = (f"{m['params'] / 1e6:.2f} | {m['macs'] / 1e9:.3f}" if m.get("params") is not None else "- | -")
        return f"| {name} | {_pct(m['All']['pq'])} | {_pct(m['All']['sq'])} | {_pct(m['All']['rq'])} | {size} |"

    diff = _margin(metrics)
    better = sum(metrics["All"]["pq"] > c["All"]["pq"] for c in ctrl)
    lines = ["\n### Against random controls\n",
             f"The same retraining ({metrics['retrain_steps']} steps, same recipe and seed) of {len(ctrl)} "
             "architecture(s) drawn uniformly from the sampling space (`retrain.controls`; "
             "`retrain/controls/`):\n",
             "| network | PQ | SQ | RQ | M parameters | GMACs |", "|---|---|---|---|---|---|",
             row("chosen", metrics)]
    lines += [row(f"random control {c['index'] + 1}", c) for c in ctrl]
    lines.append(f"\nChosen minus the controls' mean: **{100 * diff:+.1f} PQ**; the chosen network beats {better} of "
                 f"{len(ctrl)}. Each network was trained once: on the `tiny` ground-truth table one training's seed "
                 "alone moves PQ by about 1.2 (sd), so a gap of a few PQ between two single trainings can be seed "
                 "noise (docs/benchmarks/ground-truth.md). Controls show the direction; a verdict needs several "
                 "searches and seeds (docs/benchmarks/search-vs-random.md).")
    return lines
