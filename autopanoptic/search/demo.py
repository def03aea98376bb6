"""A few-second demonstration of the search core on a synthetic landscape (no data, no training).

:func:`search_demo` builds a :class:`~autopanoptic.search.toy.Landscape` over the paper's 56-layer
space and runs the paper's three policies at the paper's budgets (SPEC.md section 3): path-priority
(T = 5 cycles of E = 12, 60 evaluations), evolution (DetNAS/SPOS defaults, about 1000) and random
search (300). Each run journals into the output folder; a ``summary.json`` is written there too.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import attrs

from autopanoptic.io import atomic_write_json
from autopanoptic.search.policies import Evolution, PathPriority, RandomSearch
from autopanoptic.search.run import run
from autopanoptic.search.spaces import auto_panoptic
from autopanoptic.search.toy import Landscape

__all__ = ["DemoRow", "DEMO_POLICIES", "format_table", "search_demo"]

DEMO_POLICIES: tuple[tuple[str, Any], ...] = (
    ("path-priority T=5 E=12", PathPriority(cycles=5, models_per_cycle=12)),
    ("evolution (SPOS defaults)", Evolution()),
    ("random search", RandomSearch(budget=300, batch_size=50)),
)
"""(label, policy) pairs the demo runs, at the paper's budgets."""


@attrs.frozen
class DemoRow:
    """One line of the demo table."""

    policy: str
    evaluations: int
    fitness: float
    regret: float
    seconds: float
    journal: str


def search_demo(
    out_dir: str | os.PathLike[str], *, seed: int = 0, interaction: float = 0.5, progress: bool = False
) -> list[DemoRow]:
    """Run the demo searches into ``out_dir`` and return one row per policy.

    Args:
        out_dir: folder for the journals and ``summary.json`` (created).
        seed: seeds the landscape and every policy.
        interaction: strength of the landscape's neighbour interactions.
        progress: show tqdm bars.

    >>> import tempfile
    >>> rows = search_demo(tempfile.mkdtemp())
    >>> [r.policy for r in rows][0], all(r.regret >= 0 for r in rows)
    ('path-priority T=5 E=12', True)
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    space = auto_panoptic()
    land = Landscape.random(space, seed=seed, interaction=interaction)
    opt_arch, opt_value = land.optimum()
    rows = []
    for label, policy in DEMO_POLICIES:
        slug = label.split(" ")[0]
        journal = out / f"journal-{slug}.jsonl"
        start = time.perf_counter()
        result = run(policy, space, land, seed=seed, journal=journal, progress=progress)
        rows.append(
            DemoRow(
                policy=label,
                evaluations=result.n_evaluations,
                fitness=land.true_fitness(result.best),
                regret=land.regret(result.best),
                seconds=time.perf_counter() - start,
                journal=str(journal),
            )
        )
    atomic_write_json(
        out / "summary.json",
        {
            "space": space.name,
            "landscape": {"seed": seed, "interaction": interaction, "optimum": opt_value, "optimum_arch": list(opt_arch)},
            "rows": [attrs.asdict(r) for r in rows],
        },
    )
    return rows


def format_table(rows: list[DemoRow]) -> str:
    """The rows as a plain-text table."""
    head = f"{'policy':<28} {'evaluations':>11} {'fitness':>9} {'regret':>8} {'seconds':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.policy:<28} {r.evaluations:>11d} {r.fitness:>9.3f} {r.regret:>8.3f} {r.seconds:>8.2f}")
    return "\n".join(lines)
