"""``pretrain-supernet``, ``pretrain`` and ``data synth-classes``: backbone pretraining on an
ImageFolder dataset (see ``docs/pretraining.md``). Each command parses options and calls
:mod:`autopanoptic.engine.pretrain` / :mod:`autopanoptic.data.imagefolder`."""

from __future__ import annotations

import math
from pathlib import Path

import click


def _pretrain_options(f):
    """Options shared by both pretraining commands (``None`` = the PretrainConfig value)."""
    options = [
        click.argument("data_dir", type=click.Path(file_okay=False, path_type=Path)),
        click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
                     help="Output folder (checkpoint.pt, backbone.pt, summary.json; resumed if it exists)."),
        click.option("--config", "config", default="tiny", show_default=True,
                     help="Run config (preset or YAML) whose model fixes the backbone shape."),
        click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                     help="Override a run config value, e.g. --set model.preset=paper-search."),
        click.option("--pretrain-config", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="YAML with PretrainConfig fields (or a previous pretrain.yaml); options below override it."),
        click.option("--steps", type=click.IntRange(min=1), default=None, help="Optimizer steps [100]."),
        click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Images per batch [16]."),
        click.option("--image-size", type=click.IntRange(min=8), default=None, help="Square input side [64]."),
        click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Learning rate [0.1]."),
        click.option("--warmup-steps", type=click.IntRange(min=0), default=None, help="Linear warm-up steps [0]."),
        click.option("--schedule", type=click.Choice(["cosine", "step", "constant"]), default=None,
                     help="Learning-rate schedule [cosine]."),
        click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=None,
                     help="Images held out for the top-1 accuracy [0.1]."),
        click.option("--seed", type=int, default=None, help="Seed of the data order, flips and fair cycles [0]."),
        click.option("--device", default="auto", show_default=True, help="cpu, cuda or auto."),
        click.option("--threads", type=click.IntRange(min=0), default=1, show_default=True,
                     help="PyTorch CPU threads per worker (0 = PyTorch's default)."),
        click.option("--workers", type=click.IntRange(min=0), default=0, envvar="AUTOPANOPTIC_WORKERS",
                     show_default=True,
                     help="Worker processes on this machine (0 = one per CPU core on CPU, at most as many as a step "
                          "keeps busy; 1 on CUDA); several GPUs or nodes: torchrun (docs/distributed.md)."),
        click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars."),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def _pretrain_config(path, **values):
    from autopanoptic.engine.pretrain import PretrainConfig, load_pretrain_config

    base = load_pretrain_config(path) if path is not None else PretrainConfig()
    given = {k: v for k, v in values.items() if v is not None}
    return PretrainConfig.from_dict({**base.to_dict(), **given}, source="pretrain options") if given else base


def _echo_result(res, label: str) -> None:
    first = res.losses[0]["loss"] if res.losses else math.nan
    last = res.losses[-1]["loss"] if res.losses else math.nan
    click.echo(f"{label}: {res.steps} steps (resumed from {res.resumed_from}); loss {first:.3f} -> {last:.3f}; "
               f"held-out top-1 {100 * res.accuracy:.1f}%")
    click.echo(f"backbone: {res.backbone_path}")


def _launch(label: str, job: tuple, out: Path, pcfg, device: str, threads: int, workers: int, progress: bool,
            busy: int) -> None:
    """Run ``job`` (see :func:`_pretrain_job`) on ``workers`` local processes (0: one per core, at most
    ``busy``, what one step keeps busy), or as this ``torchrun`` rank."""
    from autopanoptic.engine.pipeline import resolve_device, set_threads
    from autopanoptic.engine.workers import launch
    from autopanoptic_cli.pipeline import workers_for

    set_threads(threads)
    dev = resolve_device(device)
    launch(workers_for(workers, dev, busy=busy), _pretrain_job, (label, job, out, pcfg, str(dev), progress),
           device=dev, threads=threads)


def _pretrain_job(label: str, job: tuple, out: Path, pcfg, device: str, progress: bool) -> None:
    """One process's part of a pretraining: alone, a local worker, or a ``torchrun`` rank. Rank 0 holds
    the folder's lock, writes it and prints; ``train`` shards each step (the passes of a strict-fair
    cycle for the supernet, the images of each batch for a standalone backbone)."""
    from autopanoptic.engine import distributed, pretrain
    from autopanoptic.engine.runs import RunDir

    w, dev = distributed.init_from_env(device)
    fn = pretrain.pretrain_supernet if label == "pretrain-supernet" else pretrain.pretrain_standalone
    data_dir, *rest = job
    run = RunDir(out)
    if w.is_main:
        run.acquire()
    try:
        res = fn(data_dir, run.root, *rest, pcfg, device=dev, progress=progress and w.is_main)
        distributed.wait_for_all()  # every rank done (rank 0 wrote the folder) before rank 0 lets it go
    finally:
        run.release()
    if w.is_main:
        _echo_result(res, label)


@click.command("pretrain-supernet")
@_pretrain_options
def pretrain_supernet(data_dir, out, config, overrides, pretrain_config, device, threads, workers, progress,
                      **values) -> None:
    """Pretrain the searchable backbone (+ a classifier) on DATA_DIR (one sub-folder of images per
    class) with strict fairness; its backbone.pt initialises train-supernet. Each step's strict-fair
    cycle is dealt to the workers (--workers, or torchrun)."""
    from autopanoptic.config import load_config
    from autopanoptic.engine import pretrain
    from autopanoptic.search.spaces import BACKBONE_OPS

    cfg = load_config(config, list(overrides))
    pcfg = _pretrain_config(pretrain_config, **values)
    shape = pretrain.backbone_shape(cfg, "model")
    # a step is one strict-fair cycle: one pass per backbone op (every layer offers every op)
    _launch("pretrain-supernet", (data_dir, shape), out, pcfg, device, threads, workers, progress,
            busy=len(BACKBONE_OPS))


@click.command("pretrain")
@_pretrain_options
@click.option("--arch", "arch_file", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The chosen architecture (arch.json of a run).")
@click.option("--width", type=click.Choice(["retrain", "model"]), default="retrain", show_default=True,
              help="Backbone width: the retrained network's (retrain.preset) or the supernet's (model.preset).")
def pretrain_standalone(data_dir, out, config, overrides, pretrain_config, device, threads, workers, progress,
                        arch_file, width, **values) -> None:
    """Pretrain the chosen architecture's backbone alone (at the retraining width) as a classifier on
    DATA_DIR; its backbone.pt initialises retrain. Each batch is sliced over the workers (--workers, or
    torchrun)."""
    from autopanoptic.config import load_config
    from autopanoptic.engine import pretrain

    cfg = load_config(config, list(overrides))
    pcfg = _pretrain_config(pretrain_config, **values)
    shape = pretrain.backbone_shape(cfg, width)
    choices = pretrain.read_backbone_choices(cfg, arch_file)
    _launch("pretrain", (data_dir, choices, shape), out, pcfg, device, threads, workers, progress,
            busy=pcfg.batch_size)


@click.command("synth-classes")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--classes", type=click.IntRange(min=2), default=4, show_default=True, help="Number of classes.")
@click.option("--per-class", type=click.IntRange(min=1), default=16, show_default=True, help="Images per class.")
@click.option("--size", type=click.IntRange(min=8), default=32, show_default=True, help="Image side in pixels.")
@click.option("--seed", type=int, default=0, show_default=True, help="Generator seed.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def synth_classes(out, classes, per_class, size, seed, progress) -> None:
    """Write a small generated image-classification dataset (ImageFolder layout) into OUT."""
    from autopanoptic.data.imagefolder import write_synthetic_classes

    root = write_synthetic_classes(out, classes, per_class, size=size, seed=seed, progress=progress)
    click.echo(f"wrote {classes * per_class} images in {classes} class folders to {root}")
