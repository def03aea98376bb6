"""The demo on 1 and 2 worker processes, side by side in one run: wall time, CPU time, PQ.

Each run is ``autopanoptic demo --workers N --no-progress`` in a fresh folder (a subprocess, so
start-up, spawning the workers and the gloo group are included); runs alternate (1, 2, 1, 2, ...).
"Wall" is the command's wall-clock time; "CPU" is the CPU time of the command and all its
processes (``RUSAGE_CHILDREN``); PQ is the demo's PQ on its evaluation split. Medians over
``--repeats``. Targets (issue 14): with 2 workers on 2 cores CPU / wall >= 1.7 and wall <= 0.6 x
the 1-worker run. The load average before and after is reported: other work on the machine takes
cores away from the workers and lowers CPU / wall.

Usage::

    .venv/bin/python benchmarks/parallel.py                  # the demo (tiny-truth), writes docs/benchmarks/parallel.md
    .venv/bin/python benchmarks/parallel.py --repeats 1 --set train.steps=30 --set retrain.steps=100 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _machine import cpu_name, write_page  # noqa: E402  (benchmarks/ is the script folder, on sys.path)


def run_demo(workers: int, out: Path, overrides: list[str], config: str = "tiny-truth") -> dict[str, float]:
    """One ``autopanoptic demo`` run; its wall time, CPU time (all processes) and PQ."""
    exe = Path(sys.executable).parent / "autopanoptic"
    cmd = [str(exe), "demo", "--out", str(out), "--config", config, "--device", "cpu", "--workers", str(workers),
           "--no-progress"]
    for o in overrides:
        cmd += ["--set", o]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"demo --workers {workers} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    stages = {k: v for k, v in metrics["timings"].items() if k not in ("total", "cpu_total", "workers")}
    return {"wall": wall, "cpu": cpu, "pq": 100 * metrics["All"]["pq"], "stages": stages,
            "controls": [100 * c["All"]["pq"] for c in metrics.get("controls", [])]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--config", default="tiny-truth", help="the demo's config (its default: tiny-truth)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    load_before = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results: dict[int, list[dict]] = {n: [] for n in args.workers}
    with tempfile.TemporaryDirectory(prefix="parallel-bench-") as tmp:
        for r in range(args.repeats):
            for n in args.workers:
                res = run_demo(n, Path(tmp) / f"w{n}-{r}", args.overrides, args.config)
                results[n].append(res)
                print(f"workers {n} repeat {r}: wall {res['wall']:.0f} s, CPU {res['cpu']:.0f} s, "
                      f"PQ {res['pq']:.2f}", flush=True)
    load_after = os.getloadavg()

    base = statistics.median(x["wall"] for x in results[args.workers[0]])
    rows = ["| workers | wall (s) | CPU (s) | CPU / wall | wall / 1-worker wall | PQ (each repeat) | "
            "PQ of the random controls | stages: wall s (supernet, search, retrain, evaluate) |",
            "|---|---|---|---|---|---|---|---|"]
    for n, runs in results.items():
        wall = statistics.median(x["wall"] for x in runs)
        cpu = statistics.median(x["cpu"] for x in runs)
        st = runs[0]["stages"]
        stages = ", ".join(f"{st[k]:.0f}" if k in st else "-" for k in ("train_supernet", "search", "retrain", "evaluate"))
        pqs = ", ".join(f"{x['pq']:.2f}" for x in runs)
        ctrl = "; ".join(", ".join(f"{c:.2f}" for c in x["controls"]) or "none" for x in runs)
        rows.append(f"| {n} | {wall:.0f} | {cpu:.0f} | {cpu / wall:.2f} | {wall / base:.2f} | {pqs} | {ctrl} | {stages} |")
    table = "\n".join(rows)
    print(table)
    machine = (f"{cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}; load average "
               f"(1, 5, 15 min) {', '.join(f'{x:.1f}' for x in load_before)} before and "
               f"{', '.join(f'{x:.1f}' for x in load_after)} after")
    if args.no_write:
        return
    over = " ".join(f"--set {o}" for o in args.overrides)
    doc = REPO / "docs" / "benchmarks" / "parallel.md"
    write_page(doc, f"""# The demo on 1 and 2 worker processes

`benchmarks/parallel.py` runs `autopanoptic demo --workers N` (in a fresh folder each, start-up
included) for N = {', '.join(map(str, args.workers))}, alternating, {args.repeats} repeat(s) each,
medians; CPU is the CPU time of the command and all its processes. Targets (issue 14): with 2
workers on 2 cores, CPU / wall >= 1.7 and wall <= 0.6 x the 1-worker wall time.

Measured {started} on {machine}. Config: `{args.config}`{(' with ' + over) if over else ''}.

{table}

Supernet training (where the search's fitness needs one; "-" where it does not) deals each
strict-fair cycle's 12 passes to the workers (6 each); the search deals its candidates; retraining
runs each network on one worker (`retrain.parallel: single`, the `tiny` preset's: a batch of 2
sliced into 1 image per worker would change what BatchNorm sees): the chosen network on the first,
the random controls (`retrain.controls`: `tiny-truth` asks for 1 on any number of workers, `auto`
for one per idle worker) on the others, or after it where there is no other; evaluation deals its
batches. A supernet differs between 1 and 2 workers by float rounding only (the same step, summed
in another order; the detector's discrete choices -- top-k proposals, NMS -- turn rounding into
different choices over hundreds of steps), and so may the architecture the search picks; for a
given number of workers the run is deterministic. Without a supernet, the 1- and 2-worker runs are
the same run.

To re-measure (on a quiet machine the CPU / wall ratio is what the workers can use):

    .venv/bin/python benchmarks/parallel.py --config {args.config} {over}
""")
    print(f"wrote {doc}")


if __name__ == "__main__":
    main()
