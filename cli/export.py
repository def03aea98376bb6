"""``autopanoptic export``: the run's retrained network as ONNX (checked with ONNX Runtime) or as
plain PyTorch files; see :mod:`autopanoptic.engine.export`."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("export")
@click.option("--config", "config", default="tiny", show_default=True,
              help="The run's config: a preset or a YAML file (the same as for its other stages; default: the one "
                   "the run was started with, else tiny).")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="The run's overrides, as for its other stages (repeatable).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/tiny"),
              show_default=True, help="Run folder with a retrained network; writes <out>/export/.")
@click.option("--format", "fmt", type=click.Choice(["onnx", "torch"]), default="onnx", show_default=True,
              help="onnx: model.onnx, checked against PyTorch; torch: state_dict.pt + arch.json + network.yaml.")
@click.option("--opset", type=click.IntRange(min=11), default=17, show_default=True, help="ONNX opset version.")
@click.option("--images", type=click.IntRange(min=1), default=4, show_default=True,
              help="Evaluation images the ONNX export is checked on.")
@click.option("--threads", type=click.IntRange(min=0), default=1, show_default=True,
              help="PyTorch CPU threads (0 = PyTorch's default).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
def export(config, overrides, out, fmt, opset, images, threads, progress):
    """Export the retrained network of a run folder for use without autopanoptic."""
    from autopanoptic.config import load_config
    from autopanoptic.engine.export import TOLERANCE, export_run
    from autopanoptic.engine.pipeline import set_threads
    from autopanoptic.engine.runs import RunDir

    from autopanoptic_cli.pipeline import config_for

    set_threads(threads)
    cfg = load_config(config_for(config, out), list(overrides))
    with RunDir(out) as run:
        result = export_run(cfg, run, format=fmt, opset=opset, images=images, progress=progress)
    if fmt == "torch":
        click.echo(f"exported: {result['folder']} (state_dict.pt, arch.json, network.yaml)")
        return
    c = result["check"]
    worst = max(c["max_abs_diff"].values())
    click.echo(f"exported: {result['path']} (opset {result['opset']}, 1 x 3 x {result['size'][0]} x {result['size'][1]})")
    click.echo(f"checked on {c['n_images']} evaluation images with ONNX Runtime: largest output difference "
               f"{worst:.2g} (tolerance {TOLERANCE}), PQ {100 * c['pq_onnx']:.2f} = PyTorch's {100 * c['pq_torch']:.2f}")
