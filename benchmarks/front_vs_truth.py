"""The accuracy / latency front a 60-evaluation search finds, against the true front of the ground truth (issue 17).

For each of ``--supernet-seeds`` supernets (the ``tiny`` preset on the ground-truth table's data,
shared with ``search_vs_random.py``), one search with ``search.objectives: [fitness, latency]``
and the demo's budget (path-priority, 5 cycles of 12: 60 evaluations, plus up to
``search.front_points`` composites along its additive model's front). Every architecture of the
front it returns (``search/pareto.json``) is then trained **with the ground-truth recipe**
(``--truth-seeds`` seeds, as the table's units) and placed by its true PQ and its predicted latency
(a latency table built once on this machine into ``--work``, the one the search used).

Reported (``docs/benchmarks/front-vs-truth.md``): the hypervolume of the searched front's *true*
points against that of the table's true front (the best of its random architectures, every one
trained ``n`` times), both measured from the same reference point (the table's lowest mean PQ and
highest predicted latency), their ratio, and how many searched points no table architecture
dominates. The search sees 60 supernet evaluations; the table's front cost 64 x 3 full trainings.
Per-architecture runs are appended to ``benchmarks/ground_truth/front-tiny.json`` and resumed from it.

Usage::

    nice -n 10 .venv/bin/python benchmarks/front_vs_truth.py --set train.holdout_val=true
    .venv/bin/python benchmarks/front_vs_truth.py --report-only
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from _machine import cpu_name, write_page  # noqa: E402
from ground_truth import TABLE, TRUTH_DATA, locked  # noqa: E402
from search_vs_random import search_config, search_on, settings_words, trained_supernet, truth_run  # noqa: E402

from autopanoptic.io import atomic_write_json  # noqa: E402

RESULTS = REPO / "benchmarks" / "ground_truth" / "front-tiny.json"
SENSES = ("max", "min")  # PQ, latency


def latency_table(work: Path, cfg):
    """The CPU latency table of the ``tiny`` network at the table's image size (built once, kept in ``work``)."""
    from autopanoptic.engine.latency import build_table
    from autopanoptic.nn.latency import LatencyTable

    path = work / "latency-cpu.json"
    if not path.exists():
        size = TRUTH_DATA.synthetic_size
        build_table(cfg, device="cpu", image_size=(size, size), threads=1, progress=None).save(path)
    return path, LatencyTable.load(path)


def front_config(args, work: Path, table_path: Path, s: int):
    return search_config(work, [*args.overrides, "search.objectives=[fitness,latency]",
                                f"search.latency_table={table_path}"], s, 0, "path-priority")


def load_results(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {"format": 1, "table": TABLE.name, "fronts": []}


def run_fronts(args) -> None:
    import torch

    torch.set_num_threads(1)
    base = search_config(args.work, args.overrides, 0, 0, "path-priority")
    table_path, _ = latency_table(args.work, base)
    for s in range(args.supernet_seeds):
        key = {"supernet_seed": s, "overrides": list(args.overrides)}
        cfg = front_config(args, args.work, table_path, s)
        sup_dir = trained_supernet(args.work, args.overrides, s, search_config(args.work, args.overrides, s, 0,
                                                                                   "path-priority"))
        out, folder, search_s = search_on(sup_dir, "front-path-priority-0", cfg)
        rec = json.loads((folder / "search" / "pareto.json").read_text())
        points = [rec["candidates"][i] for i in rec["front"]]
        with locked(args.results):
            obj = load_results(args.results)
            entry = next((e for e in obj["fronts"] if {x: e[x] for x in key} == key), None)
            if entry is None:
                entry = {**key, "evaluations": len(out.history), "search_seconds": search_s,
                         "points": [{"arch": p["arch"], "fitness": p["fitness"], "latency_ms": p["latency"],
                                     "proposed": p.get("proposed", "search"), "runs": []} for p in points]}
                obj["fronts"].append(entry)
                atomic_write_json(args.results, obj)
        for j, p in enumerate(entry["points"]):
            for seed in range(args.truth_seeds):
                if any(r["seed"] == seed for r in p["runs"]):
                    continue
                run = truth_run(args.work, p["arch"], seed, folder / f"front{j}-seed{seed}.pt")
                with locked(args.results):
                    obj = load_results(args.results)
                    e = next(e for e in obj["fronts"] if {x: e[x] for x in key} == key)
                    e["points"][j]["runs"] = sorted([*e["points"][j]["runs"], run], key=lambda r: r["seed"])
                    atomic_write_json(args.results, obj)
                p["runs"].append(run)
                print(f"supernet {s} front point {j + 1}/{len(entry['points'])} seed {seed}: PQ "
                      f"{100 * run['pq']:.1f}", flush=True)


def true_points(table, archs, values) -> list[tuple[float, float]]:
    """(mean PQ, predicted ms) of each architecture."""
    return [(float(np.mean(v)), table.predict(a)) for a, v in zip(archs, values)]


def compare(table_pts: list[tuple[float, float]], found_pts: list[tuple[float, float]]) -> dict:
    """Hypervolumes of the table's front and of the found points from the table's worst corner, their
    ratio, and how many found points no table point dominates.

    >>> r = compare([(0.5, 10.0), (0.6, 20.0), (0.4, 30.0)], [(0.55, 12.0), (0.45, 25.0)])
    >>> round(r["hv_table"], 3), round(r["hv_found"], 3), r["undominated"]
    (3.0, 2.7, 1)
    """
    from autopanoptic.search.pareto import dominates, hypervolume_2d, pareto_indices

    ref = (min(p[0] for p in table_pts), max(p[1] for p in table_pts))
    hv_t = hypervolume_2d([table_pts[i] for i in pareto_indices(table_pts, SENSES)], ref, SENSES)
    hv_f = hypervolume_2d(found_pts, ref, SENSES) if found_pts else 0.0
    und = sum(not any(dominates(t, f, SENSES) for t in table_pts) for f in found_pts)
    return {"ref": ref, "hv_table": hv_t, "hv_found": hv_f, "ratio": hv_f / hv_t if hv_t > 0 else float("nan"),
            "undominated": und}


def report(args) -> str:
    from autopanoptic.engine.truth import GroundTruth
    from autopanoptic.nn.latency import LatencyTable
    from autopanoptic.search.pareto import pareto_indices

    gt = GroundTruth.load(args.table).settled()  # the same seeds for every architecture while the table grows
    path = args.work / "latency-cpu.json"
    L = ["# The searched accuracy / latency front against the ground truth", "",
         "Made by `benchmarks/front_vs_truth.py` (see its docstring for the method); per-point runs in "
         f"`benchmarks/ground_truth/{args.results.name}`. Machine: {cpu_name()}.", ""]
    if not path.exists():
        return "\n".join(L + ["Not measured yet: no latency table in the work folder. Run the script.", ""]) + "\n"
    table = LatencyTable.load(path)
    values = gt.table("pq")
    n = max(len(v) for v in values)
    keep = [i for i, v in enumerate(values) if len(v) == n]
    t_pts = true_points(table, [gt.archs[i] for i in keep], [values[i] for i in keep])
    front = sorted(pareto_indices(t_pts, SENSES), key=lambda i: t_pts[i][1])
    L += [f"The table's true front: {len(front)} of its {len(keep)} architectures with all {n} seeds "
          f"(PQ on its 200 evaluation images; latency predicted by a CPU table of this machine, 1 thread, "
          f"{table.key.image_size[0]} px).", "",
          "| PQ % | predicted ms | architecture |", "|---|---|---|",
          *[f"| {100 * t_pts[i][0]:.2f} | {t_pts[i][1]:.2f} | `{list(gt.archs[keep[i]])}` |" for i in front], ""]
    fronts = load_results(args.results)["fronts"]
    L += ["| supernet seed | settings | front points (trained / all) | searched HV / table HV | "
          "points no table architecture dominates |", "|---|---|---|---|---|"]
    ratios = []
    for e in fronts:
        done = [p for p in e["points"] if len(p["runs"]) >= args.truth_seeds]
        f_pts = [(float(np.mean([r["pq"] for r in p["runs"]])), table.predict(p["arch"])) for p in done]
        c = compare(t_pts, f_pts)
        if len(done) == len(e["points"]):
            ratios.append(c["ratio"])
        L.append(f"| {e['supernet_seed']} | {settings_words(e['overrides'])} | {len(done)} / "
                 f"{len(e['points'])} | {c['ratio']:.2f} | {c['undominated']} of {len(done)} |")
    if not fronts:
        L.append("| - | - | - | - | - |")
    L += ["", f"Complete fronts: {len(ratios)}" + (f"; hypervolume ratio median {np.median(ratios):.2f}, range "
                                                   f"{min(ratios):.2f}-{max(ratios):.2f}." if ratios else "."), "",
          "The hypervolume is the area of the (PQ, latency) plane the points dominate, from the table's worst "
          "corner (its lowest mean PQ, its highest predicted latency): a ratio of 1 means the 60-evaluation search "
          f"found, after training its front, as good a trade-off curve as {len(keep)} random architectures trained "
          f"{n} times each; above 1, a better one. A searched point cheaper than every table architecture is never "
          "dominated, whatever its PQ; one below the table's lowest PQ adds no area.", ""]
    return "\n".join(L) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", type=Path, default=TABLE)
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--work", type=Path, default=Path("/tmp/ground-truth"))
    ap.add_argument("--supernet-seeds", type=int, default=1)
    ap.add_argument("--truth-seeds", type=int, default=3)
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="config overrides of the search")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "front-vs-truth.md")
    args = ap.parse_args()
    if not args.report_only:
        run_fronts(args)
    text = report(args)
    print(text)
    write_page(args.out, text)


if __name__ == "__main__":
    main()
