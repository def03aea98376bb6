"""``autopanoptic data ...``: synthetic datasets, splits, overlays and dataset checks.

Each command parses its options and calls :mod:`autopanoptic.data`.
"""

from __future__ import annotations

from pathlib import Path

import click

KIND = click.Choice(["coco", "ade20k"])


@click.group("data")
def data() -> None:
    """Panoptic datasets: make synthetic data, split, draw, check."""


@data.command("synth")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--images", "n_images", type=click.IntRange(min=1), default=200, show_default=True, help="Number of images.")
@click.option("--size", type=click.IntRange(min=16), default=128, show_default=True, help="Image side in pixels.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed (image i depends on seed and i only).")
@click.option("--kind", type=KIND, default="coco", show_default=True,
              help="coco: category ids with gaps, crowd regions; ade20k: category 0 real, string ids, no crowd.")
@click.option("--crowd-prob", type=click.FloatRange(0, 1), default=0.15, show_default=True, help="Chance of a crowd region per image.")
@click.option("--style", type=click.Choice(["basic", "hard"]), default="basic", show_default=True,
              help="basic: colour and texture tell the class; hard: only the shape does (7 shapes, thin bars, "
                   "sizes over a factor of 6, clutter).")
@click.option("--progress/--no-progress", default=True, show_default=True)
def synth(out: Path, n_images: int, size: int, seed: int, kind: str, crowd_prob: float, style: str,
          progress: bool) -> None:
    """Write a synthetic COCO-panoptic dataset to OUT (images/, panoptic/, panoptic.json)."""
    from autopanoptic.data import write_synthetic

    js = write_synthetic(out, n_images, size=size, seed=seed, kind=kind, crowd_prob=crowd_prob, style=style,
                         progress=progress)
    click.echo(f"wrote {n_images} images of {size}x{size} to {out} (annotations: {js})")


@data.command("split")
@click.argument("json_path", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--val", "n_val", type=float, required=True, help="Validation images: a count, or a fraction below 1.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--png-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="PNG folder (default: JSON path without .json).")
@click.option("--kind", type=KIND, default="coco", show_default=True)
def split(json_path: Path, out: Path, n_val: float, seed: int, png_dir: Path | None, kind: str) -> None:
    """Carve a validation split out of a dataset: OUT/train.json + train/, OUT/val.json + val/."""
    from autopanoptic.data import write_split

    val = int(n_val) if n_val >= 1 else n_val
    tr, va = write_split(json_path, out, val, seed=seed, png_dir=png_dir, kind=kind)
    click.echo(f"wrote {tr} and {va}")


@data.command("show")
@click.argument("json_path", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--image-id", default=None, help="Image id to draw (default: --index).")
@click.option("--index", type=int, default=0, show_default=True, help="Position of the annotation in the JSON.")
@click.option("--images", "image_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Image folder (without it, segments are drawn on black).")
@click.option("--png-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="PNG folder (default: JSON path without .json).")
@click.option("--categories", "categories_json", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSON with 'categories' for colours (e.g. the ground truth, when drawing predictions).")
def show(json_path: Path, out: Path, image_id: str | None, index: int, image_dir: Path | None,
         png_dir: Path | None, categories_json: Path | None) -> None:
    """Draw an annotation or a prediction of JSON_PATH over its image into the PNG file OUT."""
    from autopanoptic.data import show_annotation

    path = show_annotation(json_path, out, image_id=image_id, index=index, image_dir=image_dir,
                           png_dir=png_dir, categories_json=categories_json)
    click.echo(f"wrote {path}")


@data.command("check")
@click.argument("json_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--images", "image_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Image folder (default: images/ beside the JSON if it exists).")
@click.option("--png-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="PNG folder (default: JSON path without .json).")
@click.option("--kind", type=KIND, default="coco", show_default=True)
@click.option("--progress/--no-progress", default=True, show_default=True)
def check(json_path: Path, image_dir: Path | None, png_dir: Path | None, kind: str, progress: bool) -> None:
    """Dry run: list EVERY problem of a dataset (exit status 1 if there is any)."""
    from autopanoptic.data import check_dataset

    if image_dir is None and (json_path.parent / "images").is_dir():
        image_dir = json_path.parent / "images"
    problems = check_dataset(image_dir, json_path, png_dir, kind, progress=progress)
    for p in problems:
        click.echo(p)
    if problems:
        click.echo(f"{len(problems)} problem(s) in {json_path}", err=True)
        raise SystemExit(1)
    click.echo(f"{json_path}: no problems found" + ("" if image_dir else " (images not checked)"))
