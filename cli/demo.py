"""``autopanoptic demo``: the whole panoptic pipeline; ``--toy``: the search core alone.

``autopanoptic demo`` generates the synthetic dataset, trains the ``tiny`` supernet with strict
fairness, runs path-priority search, retrains the winner, evaluates it on the held-out evaluation
split, and prints PQ / SQ / RQ and the path of the report
(:func:`autopanoptic.engine.pipeline.demo`). Its default config is ``tiny-truth``: the ``tiny``
preset on the data and retraining recipe of the ``tiny`` ground-truth table, so that the report can
say where the searched network (and its random control) falls among the table's random
architectures (docs/benchmarks/ground-truth.md); ``--config tiny`` is the faster demo on 96 images,
where that comparison does not apply.

``autopanoptic demo --toy`` is the few-second demonstration of the search core alone
(:func:`autopanoptic.search.demo.search_demo`): path-priority, evolution and random search on a
synthetic fitness landscape over the paper's 56-layer space. It needs no torch.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from autopanoptic_cli.pipeline import config_for, remember_config, workers_for, workers_option


def _fresh_folder(out: Path | None) -> Path:
    if out is None:
        if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:  # each rank would name its own folder
            raise click.UsageError("under torchrun give --out: every rank must name the same run folder "
                                   "(the default, runs/demo-<timestamp>, is each process's own clock)")
        out = Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
        while out.exists():  # two demos in the same second never share a folder
            out = out.with_name(out.name + "-1")
    return out


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: runs/demo-<timestamp>/). The panoptic demo resumes from an existing one.")
@click.option("--toy", is_flag=True,
              help="Only the search core, on a synthetic fitness landscape (a few seconds, no network).")
@click.option("--config", "config", default="tiny-truth", show_default=True,
              help="Preset or YAML config (tiny-truth: tiny on the ground-truth table's data and recipe; "
                   "default for an existing --out: the one it was started with).")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override one config value, e.g. --set retrain.steps=100 (repeatable).")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda or auto.")
@click.option("--threads", type=click.IntRange(min=0), default=1, show_default=True,
              help="PyTorch CPU threads (0 = PyTorch's default).")
@workers_option()
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the toy landscape and policies (--toy).")
@click.option("--interaction", type=click.FloatRange(min=0), default=0.5, show_default=True,
              help="Strength of the toy landscape's neighbour interactions (--toy).")
@click.option("--dry-run", is_flag=True, help="Check config and data and print the plan, write nothing.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
def demo(out, toy, config, overrides, device, threads, workers, seed, interaction, dry_run, progress) -> None:
    """Run the whole Auto-Panoptic pipeline on synthetic data it generates (on every CPU core by
    default, up to 12 for tiny: --workers), or (--toy) the search core alone."""
    if not toy:
        from autopanoptic.config import load_config
        from autopanoptic.engine import pipeline
        from autopanoptic.engine.workers import launch

        pipeline.set_threads(threads)
        source = config_for(config, out)
        cfg = load_config(source, list(overrides))
        dev = pipeline.resolve_device(device)
        out = _fresh_folder(out)
        if dry_run:
            from autopanoptic.engine.plan import describe_plan

            click.echo(describe_plan(cfg, out, dev, ["train-supernet", "search", "retrain", "evaluate"]))
            return
        remember_config(source, out)
        launch(workers_for(workers, dev, cfg), _full, (cfg, out, str(dev), progress), device=dev, threads=threads)
    else:
        _toy(out, seed, interaction, progress)


def _full(cfg, out: Path, device: str, progress: bool) -> None:
    """The panoptic demo in this process: alone, or as one rank of the workers' process group."""
    from autopanoptic.engine import controls, distributed, pipeline
    from autopanoptic.engine.evaluate import summary_table
    from autopanoptic.engine.runs import RunDir

    w, dev = distributed.init_from_env(device)
    run = RunDir(out)
    if w.is_main:  # rank 0 holds the run folder's lock
        run.acquire()
    try:
        metrics = pipeline.demo(cfg, run, device=dev, progress=progress and w.is_main)
    finally:
        run.release()
    if not w.is_main:
        return
    scored = {"pq": "the supernet's PQ", "loss": "the supernet's loss",
              "naswot": "NASWOT, no supernet"}.get(cfg.search.fitness, cfg.search.fitness)
    click.echo(f"Auto-Panoptic demo ({cfg.model.preset} space, {cfg.search.policy} search on {scored}, {dev}), "
               f"evaluation split of {metrics['n_images']} images:")
    click.echo(summary_table(metrics))
    if "untrained" in metrics:
        click.echo(f"(the same architecture untrained: PQ {100 * metrics['untrained']['All']['pq']:.1f})")
    if controls.summary_line(metrics):
        click.echo(controls.summary_line(metrics))
    from autopanoptic.engine.truth import terminal_line

    truth = terminal_line(cfg, metrics["All"]["pq"], [c["All"]["pq"] for c in metrics.get("controls", [])])
    if truth:
        click.echo(truth)
    t = metrics["timings"]
    click.echo(f"time: {t['total'] / 60:.1f} min wall clock, {t['cpu_total'] / 60:.1f} min of CPU time "
               f"({t['workers']} worker{'s' * (t['workers'] > 1)})")
    click.echo(f"report: {out / 'report.md'}")


def _toy(out: Path | None, seed: int, interaction: float, progress: bool) -> None:
    from autopanoptic.search.demo import format_table, search_demo

    if out is not None and out.exists() and any(out.iterdir()):
        raise click.BadParameter(f"{out} is not empty; choose a new folder", param_hint="--out")
    out = _fresh_folder(out)
    rows = search_demo(out, seed=seed, interaction=interaction, progress=progress)
    click.echo("Search core on a synthetic landscape over the paper's 56-layer space")
    click.echo("(fitness = true landscape value of the chosen architecture; regret = optimum - fitness)")
    click.echo(format_table(rows))
    click.echo(f"journals and summary.json in: {out}")
