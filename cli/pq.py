"""``autopanoptic pq``: panoptic quality of predictions, as the COCO panoptic API computes it."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("pq")
@click.argument("gt_json", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("pred_json", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--gt-folder", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Ground-truth PNG folder (default: GT_JSON without .json).")
@click.option("--pred-folder", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Prediction PNG folder (default: PRED_JSON without .json).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the results (All/Things/Stuff and per class) to this JSON file.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Processes (default: CPU count).")
@click.option("--per-class", is_flag=True, help="Also print PQ/SQ/RQ and TP/FP/FN per category.")
@click.option("--progress/--no-progress", default=False, show_default=True)
def pq(gt_json: Path, pred_json: Path, gt_folder: Path | None, pred_folder: Path | None, json_out: Path | None,
       workers: int | None, per_class: bool, progress: bool) -> None:
    """Evaluate PRED_JSON against GT_JSON (COCO panoptic format) and print the PQ table."""
    from autopanoptic.data import format_pq_table, pq_compute
    from autopanoptic.io import atomic_write_json

    res = pq_compute(gt_json, pred_json, gt_folder, pred_folder, workers=workers, progress=progress)
    click.echo(format_pq_table(res))
    if per_class:
        click.echo(f"\n{'category':>10s} | {'PQ':>5s}  {'SQ':>5s}  {'RQ':>5s} {'TP':>6s} {'FP':>6s} {'FN':>6s}")
        for cid, r in res["per_class"].items():
            click.echo(f"{cid:>10d} | {100 * r['pq']:5.1f}  {100 * r['sq']:5.1f}  {100 * r['rq']:5.1f} "
                       f"{r['tp']:6d} {r['fp']:6d} {r['fn']:6d}")
    if json_out is not None:
        out = {k: v for k, v in res.items() if k != "per_class"}
        out["per_class"] = {str(k): v for k, v in res["per_class"].items()}
        atomic_write_json(json_out, out)
        click.echo(f"results written to {json_out}")
