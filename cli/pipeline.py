"""``train-supernet``, ``search``, ``retrain``, ``evaluate``: the stages of a run, one run folder each.

Each command reads a config (a preset name or a YAML file, ``--set section.key=value`` overrides;
without ``--config``, a run goes on with the config it was started with: :func:`config_for`), takes
the run folder's lock, and calls :mod:`autopanoptic.engine.pipeline`. ``--dry-run`` checks
the config and the data and prints the plan without writing anything. ``--workers N`` runs the stage
on ``N`` local processes (default: one per CPU core on CPU; :mod:`autopanoptic.engine.workers`);
under ``torchrun`` the stage joins torchrun's process group instead.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import click


def run_options(f):
    """Options shared by every stage command."""
    options = [
        click.option("--config", "config", default="tiny", show_default=True,
                     help="A preset (tiny, tiny-truth, paper-coco, paper-ade20k) or a YAML config file "
                          "(default: the one the run in --out was started with, else tiny)."),
        click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                     help="Override one config value, e.g. --set train.lr=0.01 (repeatable)."),
        click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/tiny"),
                     show_default=True, help="Run folder (created; stages of one run share it)."),
        click.option("--device", default="auto", show_default=True,
                     help="cpu, cuda or auto (cuda if available)."),
        click.option("--threads", type=click.IntRange(min=0), default=1, show_default=True,
                     help="PyTorch CPU threads (0 = PyTorch's default). 1 is fastest for the tiny preset, "
                          "and robust on a shared machine; see docs/engine.md."),
        workers_option(),
        click.option("--dry-run", is_flag=True, help="Check config and data, print the plan, write nothing."),
        click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars."),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def workers_option():
    """``--workers N`` (also ``AUTOPANOPTIC_WORKERS``): local worker processes; 0 = the default."""
    return click.option("--workers", type=click.IntRange(min=0), default=0, envvar="AUTOPANOPTIC_WORKERS",
                        show_default=True,
                        help="Worker processes on this machine (0 = one per CPU core on CPU, at most as many as "
                             "supernet training keeps busy; 1 on CUDA); see docs/distributed.md.")


def workers_for(workers: int, device, cfg=None, busy: int | None = None) -> int:
    """The number of worker processes ``--workers`` asks for on ``device``; 0 (the default): one per
    CPU core (one on CUDA), at most as many as the work keeps busy: the run's supernet training
    (``cfg``; :func:`autopanoptic.engine.workers.useful_workers`), or ``busy`` processes."""
    from autopanoptic.engine.workers import default_workers, useful_workers

    if workers:
        return workers
    n = default_workers(device)
    cap = useful_workers(cfg) if cfg is not None else busy
    return n if cap is None else min(n, max(1, cap))


_BODIES: dict = {}  # stage command name -> its body (looked up by name in the worker processes)


BASE_CONFIG = "base_config.txt"  # <run>/: the --config a run was started with (one line)


def config_for(config: str, out: Path | None) -> str:
    """The config a command on the run folder ``out`` starts from: ``--config`` when the user gave
    it; otherwise the one the run was started with (``<out>/base_config.txt``, written by
    :func:`remember_config`: a run made with ``--config tiny-truth``, e.g. by the demo, goes on with
    it), else the option's default. ``--set`` overrides are not remembered: each command gives its own."""
    ctx = click.get_current_context(silent=True)
    given = ctx is None or ctx.get_parameter_source("config") is not click.core.ParameterSource.DEFAULT
    record = Path(out) / BASE_CONFIG if out is not None else None
    if not given and record is not None and record.is_file():
        return record.read_text(encoding="utf-8").strip()
    return config


def remember_config(config: str, out: Path) -> None:
    """Record ``config`` (a preset name, or a YAML file as an absolute path) as the one the run in
    ``out`` was started with, unless it already has one (under ``torchrun``: rank 0 alone writes it)."""
    from autopanoptic.config import PRESETS
    from autopanoptic.io import atomic_write_text

    record = Path(out) / BASE_CONFIG
    if record.exists() or int(os.environ.get("RANK", "0") or 0) != 0:  # under torchrun rank 0 writes it
        return
    Path(out).mkdir(parents=True, exist_ok=True)
    atomic_write_text(record, (config if config in PRESETS else str(Path(config).resolve())) + "\n")


def _setup(config: str, overrides, device: str, out: Path | None = None):
    """The config's source (see :func:`config_for`), the config, and the device."""
    from autopanoptic.config import load_config
    from autopanoptic.engine.pipeline import resolve_device

    source = config_for(config, out)
    return source, load_config(source, list(overrides)), resolve_device(device)


def _dry_run(cfg, out: Path, device, stages: list[str]) -> None:
    from autopanoptic.engine.plan import describe_plan

    click.echo(describe_plan(cfg, out, device, stages))


def _needs_supernet(cfg, out: Path, kwargs) -> None:
    """Refuse, before anything is written or launched, a stage that reads a supernet the run lacks
    (a search with a training-free fitness reads none)."""
    from autopanoptic.engine.pipeline import supernet_checkpoint, supernet_readers

    if "search" in supernet_readers(cfg):
        supernet_checkpoint(out)


def _stage(stages: list[str], precheck=None):
    """A stage command: its body ``f(cfg, run, device, progress, **options)`` runs on the workers;
    ``precheck(cfg, out, options)`` runs first, in this process, so that a command that cannot work
    fails in one line before it writes anything or starts a worker."""
    def deco(f):
        _BODIES[stages[0]] = f

        @functools.wraps(f)
        def wrapper(config, overrides, out, device, threads, workers, dry_run, progress, **kwargs):
            from autopanoptic.engine import workers as W
            from autopanoptic.engine.pipeline import set_threads

            set_threads(threads)
            source, cfg, dev = _setup(config, overrides, device, out)
            if dry_run:
                _dry_run(cfg, out, dev, stages)
                return
            if precheck is not None:
                precheck(cfg, out, kwargs)
            remember_config(source, out)
            W.launch(workers_for(workers, dev, cfg), run_stage, (stages[0], cfg, out, str(dev), progress, kwargs),
                     device=dev, threads=threads)

        return wrapper

    return deco


def run_stage(name: str, cfg, out: Path, device: str, progress: bool, kwargs) -> None:
    """Run the stage command ``name`` in this process (alone, or as one rank of a process group)."""
    from autopanoptic.engine import distributed
    from autopanoptic.engine.runs import RunDir

    if name not in _BODIES:  # a worker process: stage bodies of other modules register on import
        import autopanoptic_cli.main  # noqa: F401
    f = _BODIES[name]
    w, dev = distributed.init_from_env(device)
    if not w.active:
        with RunDir(out) as run:
            f(cfg, run, dev, progress, **kwargs)
        return
    _distributed_stage(f, cfg, out, dev, w, progress and w.is_main, kwargs)


def _distributed_stage(f, cfg, out: Path, device, w, progress: bool, kwargs) -> None:
    """One stage under ``torchrun``: rank 0 holds the run folder's lock and prepares the data first;
    every rank runs the stage (the library shards the work, and only rank 0 writes the run folder)."""
    import torch.distributed as dist

    from autopanoptic.engine import distributed, pipeline
    from autopanoptic.engine.runs import RunDir

    run = RunDir(out)
    try:
        if w.is_main:
            run.acquire()
        with distributed.main_first():
            pipeline.prepare_data(cfg, run, progress=progress)
        f(cfg, run, device, progress, **kwargs)
        dist.barrier()  # every rank done before any tears the group down (a rank aborted once in teardown)
    finally:
        run.release()
        if dist.is_initialized():
            dist.destroy_process_group()


@click.command("train-supernet")
@run_options
@_stage(["train-supernet"])
def train_supernet(cfg, run, device, progress):
    """Train the supernet with strict fairness (resumes from the run folder's checkpoint)."""
    from autopanoptic.engine import pipeline
    from autopanoptic.engine.distributed import world

    _, res = pipeline.train_supernet(cfg, run, device=device, progress=progress)
    if not world().is_main:
        return
    last = res.losses[-1]["loss"] if res.losses else float("nan")
    click.echo(f"supernet: {res.steps} steps (resumed from {res.resumed_from}); last loss {last:.3f}")
    click.echo(f"checkpoint: {run.root / 'supernet' / 'checkpoint.pt'}")


@click.command("search")
@run_options
@_stage(["search"], precheck=_needs_supernet)
def search(cfg, run, device, progress):
    """Search the space by search.fitness: the trained supernet's, or a training-free score such as
    NASWOT (the tiny presets' default, no supernet needed). Resumes from the run folder's journal."""
    from autopanoptic.engine import pipeline

    from autopanoptic.engine.distributed import world

    out = pipeline.search(cfg, run, device=device, progress=progress)
    if not world().is_main:
        return
    from autopanoptic.engine.search import fitness_words

    click.echo(f"search ({cfg.search.policy}): {len(out.history)} evaluations in {out.seconds:.0f} s; "
               f"chosen architecture: {fitness_words(cfg.search.fitness, out.chosen_fitness)}")
    click.echo(f"architecture: {run.root / 'arch.json'}")
    front = run.root / "search" / "pareto.json"
    if len(cfg.search.objectives) > 1 and front.exists():
        import json

        n = len(json.loads(front.read_text())["front"])
        click.echo(f"Pareto front of {', '.join(cfg.search.objectives)}: {n} points ({front}); retrain one with --pick K")


@click.command("retrain")
@run_options
@click.option("--arch", "arch_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Architecture JSON (default: the run folder's arch.json).")
@click.option("--pick", type=click.IntRange(min=1), default=None,
              help="Retrain point K of the search's Pareto front (search/pareto.json; 1 = the cheapest).")
@_stage(["retrain"])
def retrain(cfg, run, device, progress, arch_path, pick):
    """Retrain the chosen architecture (or --arch, or --pick K of the front) as a standalone network."""
    from autopanoptic.engine import controls, pipeline
    from autopanoptic.engine.distributed import world

    _, res = pipeline.retrain(cfg, run, arch_path=arch_path, pick=pick, device=device, progress=progress)
    if not world().is_main:
        return
    last = res.losses[-1]["loss"] if res.losses else float("nan")
    click.echo(f"retrain: {res.steps} steps (resumed from {res.resumed_from}); last loss {last:.3f}")
    n = len(controls.read_plan(run.root))
    if n:
        click.echo(f"random controls: {n}, retrained with the same recipe in {run.root / 'retrain' / 'controls'}")


@click.command("evaluate")
@run_options
@_stage(["evaluate"])
def evaluate(cfg, run, device, progress):
    """Evaluate the retrained network on the evaluation split; export predictions; write the report.

    Under torchrun every rank evaluates its share; rank 0 writes the files and prints the tables."""
    from autopanoptic.engine import pipeline
    from autopanoptic.engine.distributed import world
    from autopanoptic.engine.evaluate import summary_table
    from autopanoptic.engine.report import write_report

    metrics = pipeline.evaluate_run(cfg, run, device=device, progress=progress)
    if not world().is_main:
        return
    report = write_report(run, cfg)
    click.echo(summary_table(metrics))
    from autopanoptic.data.metrics import format_metrics_table

    click.echo(format_metrics_table({"bbox": metrics["box_ap"], "segm": metrics["mask_ap"]}, metrics["semantic"]))
    from autopanoptic.engine.controls import summary_line

    if summary_line(metrics):
        click.echo(summary_line(metrics))
    click.echo(f"metrics: {run.root / 'eval' / 'metrics.json'}")
    click.echo(f"report: {report}")
