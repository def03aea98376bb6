"""How well a latency table predicts end-to-end latency: random `tiny` networks, measured against
the table's prediction (issue 17 asks for a median relative error of at most 10%).

Builds a table on the device (``autopanoptic.engine.latency.build_table``: every op timed alone on
its inputs in its place, fixed cost calibrated on one network per choice index and ``--calibrate`` random ones), then times
``--networks`` other random standalone networks of the same sampling space end to end
(``check_table``) and compares, for two predictors: the table as built (with its fitted linear
correction) and the plain sum (scale 1, fixed cost the median offset). Also: how a latency budget
at the median prediction holds on measured latency, and the true accuracy / latency front of the
ground-truth table ``benchmarks/ground_truth/tiny.json`` (as far as it is filled).

Usage::

    .venv/bin/python benchmarks/latency.py                       # CPU, writes docs/benchmarks/latency.md
    .venv/bin/python benchmarks/latency.py --device cuda         # GPU: prints its rows (add them to the doc)
    .venv/bin/python benchmarks/latency.py --networks 4 --repeats 3 --no-write   # a quick look
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _machine import cpu_name, write_page  # noqa: E402  (benchmarks/ is the script folder, on sys.path)


def errors(pred, meas) -> tuple[float, float, float]:
    rel = [(p - m) / m for p, m in zip(pred, meas)]
    return float(np.median(np.abs(rel))), float(np.max(np.abs(rel))), float(np.median(rel))


def truth_front(table, cost_table) -> tuple[str, int]:
    """Markdown rows of the ground truth's architectures on the (PQ, predicted latency) front."""
    from autopanoptic.engine.truth import GroundTruth
    from autopanoptic.search.pareto import pareto_indices

    path = REPO / "benchmarks" / "ground_truth" / "tiny.json"
    if not path.exists():
        return "(no ground-truth table in this checkout)", 0
    truth = GroundTruth.load(path)
    archs, means = truth.means(min_seeds=1)
    if not archs:
        return "(the ground-truth table holds no trained architecture yet)", 0
    pts = [(float(m), table.predict(a)) for a, m in zip(archs, means)]
    front = sorted(pareto_indices(pts, ("max", "min")), key=lambda i: pts[i][1])
    rows = ["| PQ % (mean of seeds) | predicted ms | GMACs | architecture |", "|---|---|---|---|"]
    for i in front:
        rows.append(f"| {100 * pts[i][0]:.2f} | {pts[i][1]:.2f} | {cost_table.macs(archs[i]) / 1e9:.4f} | "
                    f"`{list(archs[i])}` |")
    return "\n".join(rows), len(archs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--networks", type=int, default=24)
    ap.add_argument("--calibrate", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=25)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"))
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    import attrs
    import torch

    from autopanoptic.config import load_config
    from autopanoptic.engine.latency import build_table, check_table, config_model
    from autopanoptic.engine.pipeline import resolve_device
    from autopanoptic.nn.counting import cost_table_for
    from autopanoptic.nn.latency import fit_correction

    cfg = load_config("tiny", args.overrides)
    device = resolve_device(args.device)
    load_before = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    t0 = time.perf_counter()
    table = build_table(cfg, device=device, image_size=args.image_size, threads=args.threads, warmup=args.warmup,
                        repeats=args.repeats, calibrate=args.calibrate, seed=0, progress=print)
    build_s = time.perf_counter() - t0
    res = check_table(cfg, table, device=device, networks=args.networks, seed=1, warmup=args.warmup,
                      repeats=args.repeats, progress=print)
    load_after = os.getloadavg()
    calib = table.calibration
    fixed, _ = fit_correction([table.ops_ms(a) for a, _ in calib], [m for _, m in calib], min_points=10**9)
    plain = attrs.evolve(table, fixed_ms=fixed, scale=1.0)
    variants = [("table as built (fixed cost + fitted scale)", [table.predict(a) for a in res.archs]),
                ("plain sum (fixed cost + scale 1)", [plain.predict(a) for a in res.archs])]
    dev_name = table.key.device
    h, w = table.key.image_size
    rows = ["| device | predictor | networks | median error | worst error | bias |", "|---|---|---|---|---|---|"]
    for name, pred in variants:
        med, worst, bias = errors(pred, res.measured_ms)
        rows.append(f"| {dev_name} | {name} | {len(res.archs)} | {100 * med:.1f}% | {100 * worst:.1f}% | "
                    f"{100 * bias:+.1f}% |")
    if device.type == "cpu":
        rows.append("| cuda | both | not measured | | | |")
    errors_table = "\n".join(rows)
    per = ["| predicted ms | measured ms | error |", "|---|---|---|"]
    per += [f"| {p:.2f} | {m:.2f} | {100 * (p - m) / m:+.1f}% |" for p, m in zip(res.predicted_ms, res.measured_ms)]
    budget = float(np.median(res.predicted_ms))
    # the margin a user would set from the table alone: its worst under-prediction of its own calibration networks
    margin = max(0.0, *(m / table.predict(a) - 1 for a, m in calib))

    def held(margin: float) -> str:
        inside = [m for p, m in zip(res.predicted_ms, res.measured_ms) if p * (1 + margin) <= budget]
        over = [m for m in inside if m > budget]
        worst_over = max([100 * (m - budget) / budget for m in over], default=0.0)
        return (f"{len(inside)} of the {len(res.archs)} networks are within it as the search sees it; measured, "
                f"{len(inside) - len(over)} of them are within it and {len(over)} exceed it"
                + (f", by at most {worst_over:.1f}%" if over else ""))

    budget_line = (f"A budget at the median prediction, {budget:.2f} ms. With `search.latency_margin: 0`: {held(0.0)}. "
                   f"With `search.latency_margin: {margin:.3f}` (the table's worst under-prediction of its own "
                   f"{len(calib)} calibration networks, none of them among these): {held(margin)}.")
    model = config_model(cfg)
    front, n_truth = truth_front(table, cost_table_for(model, cfg.search.cost_image_size))
    print(errors_table)
    print(budget_line)
    if args.no_write:
        return
    if device.type != "cpu":
        print("(GPU rows: add them to docs/benchmarks/latency.md by hand; the CPU document is not rewritten)")
        return
    lo, hi = table.bounds()
    scale_note = (f"fitted scale {table.scale:.3f}" if table.scale != 1.0 else
                  "scale 1: no correction fitted (the relative least-squares slope was not positive), so the two "
                  "rows below agree")
    machine = (f"{cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, "
               f"{args.threads} thread(s); load average (1, 5, 15 min) {', '.join(f'{x:.1f}' for x in load_before)} "
               f"before and {', '.join(f'{x:.1f}' for x in load_after)} after")
    loaded = max(load_before[0], load_after[0]) > 0.5 * (os.cpu_count() or 1)
    caveat = ("\n**The load average was high** (above): if other jobs ran meanwhile, single timings vary by tens of\n"
              "percent; the 1-minute average also lags by a minute, so a quiet run right after busy ones reads high too.\n"
              "Re-measure on a quiet machine with the command below.\n" if loaded else "")
    over_args = " ".join(f"--set {o}" for o in args.overrides)
    doc = REPO / "docs" / "benchmarks" / "latency.md"
    write_page(doc, f"""# Latency prediction against measured latency

`benchmarks/latency.py` builds a latency table of the `tiny` network (`autopanoptic latency build`:
every op of every searchable layer timed alone on the inputs it receives in its place, the fixed
cost calibrated on one network per choice index and {args.calibrate} random ones; [latency.md](../latency.md)), then times
{args.networks} *other* random standalone networks of the same sampling space (the `tiny` config's:
no deformable convs) end to end, in inference mode, batch 1, one {h}x{w} image, fusion included,
median of {args.repeats} forwards after {args.warmup} warm-up ones, and compares them with the prediction.
Target (issue 17): median relative error at most 10%.

Measured {started} on {machine}. The table took {build_s:.0f} s to build; its predictions span
{lo:.1f} to {hi:.1f} ms over the whole space (deformable convs included), fixed cost
{table.fixed_ms:.2f} ms, {scale_note}.
{caveat}
{errors_table}

{budget_line}

Every network:

{chr(10).join(per)}

The GPU rows are not measured (no GPU on the development machine). To fill them, on a machine with
CUDA:

    .venv/bin/python benchmarks/latency.py --device cuda {over_args}

## The true front of the ground truth

The {n_truth} architectures of `benchmarks/ground_truth/tiny.json` trained so far (the table is being
filled; mean PQ over their seeds) that no other one beats in both PQ and predicted latency (this
table, {h}x{w} px):

{front}

A 60-evaluation search scored against this table (the front it finds against the true front, as a
hypervolume ratio) needs a table of well over 60 trained architectures; with {n_truth} a 60-evaluation
search simply evaluates all of them. Re-run this script when the table has grown.

To re-measure:

    .venv/bin/python benchmarks/latency.py {over_args}
""")
    print(f"wrote {doc}")


if __name__ == "__main__":
    main()
