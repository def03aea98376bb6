"""``autopanoptic check-ranking``: does the run's trained supernet rank architectures like training does?"""

from __future__ import annotations

import click

from autopanoptic_cli.pipeline import _stage, run_options


@click.command("check-ranking")
@run_options
@click.option("--archs", type=click.IntRange(min=4), default=12, show_default=True,
              help="Architectures trained from scratch (spread over the supernet's fitness range).")
@click.option("--steps", type=click.IntRange(min=1), default=300, show_default=True,
              help="Training steps of each (the retrain recipe, from scratch, shortened).")
@click.option("--pool", type=click.IntRange(min=4), default=48, show_default=True,
              help="Random architectures whose supernet fitness is measured to pick --archs from.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the pool.")
@_stage(["check-ranking"])
def check_ranking(cfg, run, device, progress, archs, steps, pool, seed):
    """Train a few architectures briefly from scratch and report Kendall's tau between the supernet's
    fitness and what they reach (resumable; the verdict says whether to trust a search)."""
    from autopanoptic.engine.distributed import world
    from autopanoptic.engine.ranking import RankingCheck, check_ranking as check
    from autopanoptic.engine.report import write_report
    from autopanoptic.errors import ConfigError

    try:
        settings = RankingCheck(archs=archs, steps=steps, pool=pool, seed=seed)
    except ValueError as e:
        raise ConfigError(f"check-ranking: {e}") from None
    res = check(cfg, run, settings, device=device, progress=progress)
    if not world().is_main:
        return
    write_report(run, cfg)
    click.echo(f"{len(res.archs)} architectures; Spearman {res.rho:.2f}; one-sided permutation p {res.p_value:.3f}")
    base = ", ".join(f"{name} alone {tau:.2f}" for name, tau in res.baselines)
    click.echo(f"training-free baselines against the same truth: {base}" if base else "")
    click.echo(res.verdict)
    click.echo(f"details: {run.root / 'check-ranking' / 'result.json'}")
