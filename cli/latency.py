"""``autopanoptic latency build / check``: measure a latency table on this device, and check its
predictions against end-to-end timings of random standalone networks (docs/latency.md)."""

from __future__ import annotations

from pathlib import Path

import click


def _model_options(f):
    options = [
        click.option("--config", "config", default="tiny", show_default=True, help="Preset or YAML config (the model)."),
        click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE", help="Override a config value."),
        click.option("--preset", default=None, help="Supernet preset (tiny, paper-search, paper-retrain): "
                                                    "shorthand for --set model.preset=NAME."),
        click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
                     help="The device to measure on."),
        click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True, help="Untimed calls first."),
        click.option("--repeats", type=click.IntRange(min=1), default=15, show_default=True,
                     help="Timed calls; the median is kept."),
        click.option("--progress/--no-progress", default=True, show_default=True, help="Say what is being timed."),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def _config(config: str, overrides, preset):
    from autopanoptic.config import load_config

    extra = [f"model.preset={preset}"] if preset else []
    return load_config(config, [*overrides, *extra])


def _say(progress: bool):
    return (lambda msg: click.echo(msg, err=True)) if progress else None


@click.group("latency")
def latency() -> None:
    """Measured inference latency: lookup tables and their check."""


@latency.command("build")
@_model_options
@click.option("--image-size", type=click.IntRange(min=8), nargs=2, default=None, metavar="H W",
              help="Input image height and width (default: the model preset's nominal size, square).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="PyTorch CPU threads.")
@click.option("--calibrate", type=click.IntRange(min=0), default=10, show_default=True,
              help="Random networks of the config's sampling space timed end to end to calibrate the fixed cost "
                   "(besides one network per choice index).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of those networks.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Table file (JSON).")
def build(config, overrides, preset, device, warmup, repeats, progress, image_size, threads, calibrate, seed, out):
    """Time every op of every searchable layer in its place in the network, and the fixed parts, on
    --device (inference mode, batch 1); write the table to --out."""
    from autopanoptic.engine.latency import build_table
    from autopanoptic.engine.pipeline import resolve_device

    cfg = _config(config, overrides, preset)
    table = build_table(cfg, device=resolve_device(device), image_size=image_size, threads=threads, warmup=warmup,
                        repeats=repeats, calibrate=calibrate, seed=seed, progress=_say(progress))
    table.save(out)
    lo, hi = table.bounds()
    click.echo(f"latency table for {table.key.describe()}")
    click.echo(f"fixed {table.fixed_ms:.2f} ms, scale {table.scale:.3f}; predicted {lo:.2f} to {hi:.2f} ms over the space")
    click.echo(f"table: {out}")


@latency.command("check")
@click.argument("table_file", type=click.Path(dir_okay=False, path_type=Path))
@_model_options
@click.option("--networks", type=click.IntRange(min=1), default=20, show_default=True,
              help="Random standalone networks of the config's sampling space to time end to end.")
@click.option("--seed", type=click.IntRange(min=0), default=1, show_default=True, help="Seed of those networks.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write every network's prediction and measurement to this JSON file.")
def check(table_file, config, overrides, preset, device, warmup, repeats, progress, networks, seed, json_out):
    """Compare TABLE_FILE's predictions with end-to-end timings of random standalone networks on
    --device (the device the table was measured on): median and worst relative error."""
    from autopanoptic.engine.latency import check_table
    from autopanoptic.engine.pipeline import resolve_device
    from autopanoptic.io import atomic_write_json
    from autopanoptic.nn.latency import LatencyTable

    cfg = _config(config, overrides, preset)
    table = LatencyTable.load(table_file)
    res = check_table(cfg, table, device=resolve_device(device), networks=networks, seed=seed, warmup=warmup,
                      repeats=repeats, progress=_say(progress))
    click.echo(f"{'predicted ms':>12} {'measured ms':>12} {'error':>7}")
    for p, m, e in zip(res.predicted_ms, res.measured_ms, res.relative_errors):
        click.echo(f"{p:12.2f} {m:12.2f} {100 * e:6.1f}%")
    click.echo(res.summary())
    if json_out is not None:
        atomic_write_json(json_out, {"table": str(table_file), "summary": res.summary(), "networks": [
            {"arch": list(a), "predicted_ms": p, "measured_ms": m}
            for a, p, m in zip(res.archs, res.predicted_ms, res.measured_ms)]})
