"""``autopanoptic demo``: for now, a few-second demonstration of the search core.

It generates its own data (a synthetic fitness landscape over the paper's 56-layer space) and
runs path-priority, evolution and random search at the paper's budgets. The search part lives in
:func:`autopanoptic.search.demo.search_demo`; this command only parses options and prints.
"""

from __future__ import annotations

import time
from pathlib import Path

import click


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: runs/demo-<timestamp>/).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of landscape and policies.")
@click.option("--interaction", type=click.FloatRange(min=0), default=0.5, show_default=True,
              help="Strength of the landscape's neighbour interactions.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
def demo(out: Path | None, seed: int, interaction: float, progress: bool) -> None:
    """Compare path-priority, evolution and random search on a synthetic landscape."""
    from autopanoptic.search.demo import format_table, search_demo

    if out is None:
        out = Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
        while out.exists():  # two demos in the same second never share a folder
            out = out.with_name(out.name + "-1")
    elif out.exists() and any(out.iterdir()):
        raise click.BadParameter(f"{out} is not empty; choose a new folder", param_hint="--out")
    rows = search_demo(out, seed=seed, interaction=interaction, progress=progress)
    click.echo("Search core on a synthetic landscape over the paper's 56-layer space")
    click.echo("(fitness = true landscape value of the chosen architecture; regret = optimum - fitness)")
    click.echo(format_table(rows))
    click.echo(f"journals and summary.json in: {out}")
