"""``autopanoptic check-ranking``: does the run's search fitness (a trained supernet's, or a training-free
score such as NASWOT) rank architectures like training does?"""

from __future__ import annotations

import math

import click

from autopanoptic_cli.pipeline import _needs_supernet, _stage, run_options


def _precheck(cfg, out, options) -> None:
    """A trained supernet (unless the fitness is training-free), and with ``--truth table`` a table the
    run's data match (else one line)."""
    _needs_supernet(cfg, out, options)
    if options["truth"] == "table":
        from autopanoptic.engine.ranking import table_for_check

        table_for_check(cfg)


@click.command("check-ranking")
@run_options
@click.option("--archs", type=click.IntRange(min=4), default=12, show_default=True,
              help="Architectures trained from scratch (spread over the search fitness's range).")
@click.option("--steps", type=click.IntRange(min=1), default=300, show_default=True,
              help="Training steps of each (the retrain recipe, from scratch, shortened).")
@click.option("--pool", type=click.IntRange(min=4), default=48, show_default=True,
              help="Random architectures whose search fitness is measured to pick --archs from.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the pool.")
@click.option("--truth", type=click.Choice(["auto", "table", "quick"]), default="auto", show_default=True,
              help="What the fitness is held against: quick trainings from scratch (quick), or the ground-truth "
                   "table's means when the run's data, preset and space are the table's (table: e.g. the "
                   "tiny-truth preset; no training needed); auto = table where it applies, else quick.")
@_stage(["check-ranking"], precheck=_precheck)
def check_ranking(cfg, run, device, progress, archs, steps, pool, seed, truth):
    """Report Kendall's tau between the search's fitness (search.fitness: the trained supernet's, or
    NASWOT, which needs none) and how architectures train: a few trained briefly from scratch
    (resumable), or the ground-truth table where the run matches it; the verdict says whether to trust
    a search."""
    from autopanoptic.engine.distributed import world
    from autopanoptic.engine.ranking import RankingCheck, check_ranking as check, check_ranking_on_table, stronger_baselines
    from autopanoptic.engine.report import write_report
    from autopanoptic.engine.truth import applicable_table
    from autopanoptic.errors import ConfigError
    from autopanoptic.search.stats import expected_tau, format_p

    try:
        settings = RankingCheck(archs=archs, steps=steps, pool=pool, seed=seed)
    except ValueError as e:
        raise ConfigError(f"check-ranking: {e}") from None
    if truth == "auto":
        truth = "table" if applicable_table(cfg, sections=("data",))[0] is not None else "quick"
    about = None
    if truth == "table":
        res, about = check_ranking_on_table(cfg, run, settings, device=device, progress=progress)
    else:
        res = check(cfg, run, settings, device=device, progress=progress)
    if not world().is_main:
        return
    write_report(run, cfg)
    if about is not None:
        click.echo(f"against the ground truth `{about['table']}`: {about['archs']} architectures x {about['seeds']} "
                   f"trainings each (its means are reliable at {about['reliability_icc']:.2f}: even a perfect "
                   f"estimator would reach a tau of about {about['tau_ceiling']:.2f})")
    click.echo(f"{len(res.archs)} architectures; Spearman {res.rho:.2f}; one-sided permutation p {format_p(res.p_value)}")
    base = ", ".join(f"{name} alone {tau:.2f}" for name, tau in res.baselines)
    click.echo(f"training-free baselines against the same truth: {base}" if base else "")
    click.echo(res.verdict)
    true_tau = expected_tau(res.tau, about["reliability_icc"]) if about is not None else float("nan")
    if not math.isnan(true_tau):  # the tau read against the true quality (nan: no reliable table)
        click.echo(f"against the architectures' true quality (a truth without the table's seed noise) that tau "
                   f"{res.tau:.2f} would be about {true_tau:.2f} (autopanoptic.search.stats.expected_tau)")
    better = stronger_baselines(res.tau, dict(res.baselines), cfg.search.fitness)
    if better:
        click.echo(better)
    click.echo(f"details: {run.root / 'check-ranking' / 'result.json'}")
