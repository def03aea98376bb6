"""The training-free estimators and the 900-step supernet's per-op scores on several ground-truth tables
at once (tables of the same space, data, recipe and seeds: their architectures are one larger sample).

Descriptive: ranking.md's tests each read one table; this pools the 64-architecture table and the 32
fresh ones after both were read. Prints a markdown table (Kendall's tau against the tables' mean PQ,
95% bootstrap interval over architectures, and each estimator minus NASWOT, paired)::

    .venv/bin/python benchmarks/ranking_pooled.py \\
        benchmarks/ground_truth/tiny.json:benchmarks/ground_truth/ranking-estimates.json \\
        benchmarks/ground_truth/tiny-fresh.json:benchmarks/ground_truth/ranking-estimates-fresh.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from ground_truth import draw_archs  # noqa: E402
from ranking import per_op_scorer  # noqa: E402

from autopanoptic.engine.truth import GroundTruth, same_settings  # noqa: E402
from autopanoptic.search import stats  # noqa: E402

SINGLE = ("params", "macs", "naswot")


def not_poolable(first: GroundTruth, other: GroundTruth) -> str | None:
    """Why ``other``'s architectures are not one sample with ``first``'s (None if they are): the same
    preset, sampling space, data and recipe (settings added since the older table hold their defaults)."""
    if (other.preset, other.exclude_ops) != (first.preset, first.exclude_ops):
        return "another preset or sampling space"
    for section, a, b in (("data", first.data, other.data), ("retrain", first.recipe, other.recipe)):
        why = same_settings(a, b, section)
        if why is not None:
            return why
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pairs", nargs="+", help="TABLE:CACHE, a ground-truth table and its estimates (ranking.py's cache)")
    ap.add_argument("--pool-from", type=int, default=0, help="which pair's cache holds the supernet's pool")
    ap.add_argument("--supernet", default="holdout-900", help="the supernet whose pool gives the per-op scores")
    ap.add_argument("--pool-offset", type=int, default=100000, help="as ranking.py's")
    args = ap.parse_args()
    pairs = [p.split(":", 1) for p in args.pairs]
    space, _ = draw_archs(0, 0)  # the space only (it does not depend on the seed)
    pool = json.loads(Path(pairs[args.pool_from][1]).read_text())[f"{args.supernet}:pool-pq"]
    per_op = per_op_scorer(space, pool, args.pool_offset)
    truth: list[float] = []
    est: dict[str, list[float]] = {k: [] for k in (*SINGLE, "per-op")}
    first = None
    for table, cache in pairs:
        gt, data = GroundTruth.load(Path(table)).settled(), json.loads(Path(cache).read_text())
        first = first or gt
        why = not_poolable(first, gt)
        if why is not None:
            why = why.replace(" in the run", " in it").replace(" in the table", " in the first")
            raise SystemExit(f"{table} cannot be pooled with {pairs[0][0]}: {why}")
        values = gt.table("pq")
        n_seeds = max(len(v) for v in values)
        for i, v in enumerate(values):
            if len(v) < n_seeds or any(data.get(k, {}).get(str(i)) is None for k in SINGLE):
                continue
            truth.append(100 * float(np.mean(v)))
            for k in SINGLE:
                est[k].append(data[k][str(i)])
            est["per-op"].append(per_op(gt.archs[i]))
    y = np.array(truth)
    est["naswot+per-op"] = list(np.add(stats.average_ranks(est["naswot"]), stats.average_ranks(est["per-op"])))
    print(f"{len(y)} architectures from {len(pairs)} tables; mean PQ {y.mean():.1f}, sd {y.std(ddof=1):.2f}\n")
    print("| estimator | Kendall tau [95%] | minus NASWOT, paired [95%] | p (not better) |\n|---|---|---|---|")
    for k, x in est.items():
        tau = stats.kendall_tau(x, y)
        lo, hi = stats.bootstrap_ci(stats.kendall_tau, x, y, n_boot=4000, seed=0)
        row = f"| {k} | {tau:+.3f} [{lo:+.2f}, {hi:+.2f}] |"
        if k == "naswot":
            row += " - | - |"
        else:
            d, dlo, dhi, p = stats.paired_difference(stats.kendall_tau, x, est["naswot"], y, n_boot=4000, seed=0)
            row += f" {d:+.3f} [{dlo:+.2f}, {dhi:+.2f}] | {p:.3f} |"
        print(row)


if __name__ == "__main__":
    main()
