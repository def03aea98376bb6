"""Search policies on NAS-Bench-Macro: regret and rank of the chosen architecture vs. budget.

For every budget (distinct evaluations) and policy setting, run the policy with 100 seeds on the
NAS-Bench-Macro CIFAR-10 table (fitness = mean test accuracy of the three training seeds, no noise
beyond what the table holds) and record for the architecture the policy *chooses*:

- regret: best accuracy in the table (93.127) minus the chosen architecture's accuracy (points);
- rank: the number of distinct networks (of 3969) with a strictly higher accuracy (0 = best).

Path-priority's choice is the scoreboard's composite (it may never have been evaluated); evolution
and random search choose the best architecture they evaluated. Evaluations are counted as distinct
architectures (the run loop never evaluates one twice), so path-priority, whose strict-fair rounds
repeat architectures, spends fewer distinct evaluations than it proposes; the table reports the
measured mean.

Usage::

    nice -n 10 .venv/bin/python benchmarks/search_nasbench.py            # 100 seeds, writes docs
    .venv/bin/python benchmarks/search_nasbench.py --seeds 5 --no-write  # a quick look
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _machine import code_version, cpu_name  # noqa: E402  (benchmarks/ is the script folder, on sys.path)

from autopanoptic.io import atomic_write_text  # noqa: E402
from autopanoptic.search import Evolution, PathPriority, RandomSearch, run  # noqa: E402
from autopanoptic.search.toy import load_nas_bench_macro  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "nas-bench-macro" / "nas-bench-macro_cifar10.json"
BUDGETS = (24, 60, 100, 300, 1000)


def settings_for(budget: int) -> list[tuple[str, object]]:
    """(label, policy) pairs whose budget is ``budget`` proposals / evaluations."""
    out: list[tuple[str, object]] = []
    if budget == 60:
        out.append(("path-priority T=5 E=12 (paper)", PathPriority(cycles=5, models_per_cycle=12)))
    else:
        out.append((f"path-priority T={budget // 12} E=12", PathPriority(cycles=budget // 12, models_per_cycle=12)))
    out.append((f"path-priority T={budget // 3} E=3", PathPriority(cycles=budget // 3, models_per_cycle=3)))
    out.append(("evolution pop 50 (paper defaults)", Evolution(budget=budget)))
    gens = math.ceil(budget / 20)
    out.append(
        (
            "evolution pop 20, top-k 4 (SPOS x0.4)",
            Evolution(population=20, generations=gens, top_k=4, mutations=8, crossovers=8, budget=budget),
        )
    )
    out.append(
        (
            "evolution pop 20, top-k 10",
            Evolution(population=20, generations=gens, top_k=10, mutations=8, crossovers=8, budget=budget),
        )
    )
    out.append(("random search", RandomSearch(budget=budget, batch_size=budget)))
    return out


def machine() -> str:
    cpu = cpu_name()
    return f"{cpu}, {os.cpu_count()} logical cores, Python {platform.python_version()}, {platform.system()}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS))
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "search.md")
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    args = ap.parse_args(argv)

    from tqdm import tqdm

    bench = load_nas_bench_macro(args.data)
    rows = []
    jobs = [(b, label, policy) for b in args.budgets for label, policy in settings_for(b)]
    start_all = time.perf_counter()
    for budget, label, policy in tqdm(jobs, desc="settings", unit="setting"):
        regrets, ranks, evals, times = [], [], [], []
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            result = run(policy, bench.space, bench, seed=seed, progress=False)
            times.append(time.perf_counter() - t0)
            regrets.append(bench.regret(result.best))
            ranks.append(bench.rank(result.best))
            evals.append(result.n_evaluations)
        rows.append(
            {
                "budget": budget,
                "policy": label,
                "evals": statistics.mean(evals),
                "regret": statistics.mean(regrets),
                "regret_se": statistics.stdev(regrets) / math.sqrt(len(regrets)) if len(regrets) > 1 else float("nan"),
                "rank": statistics.median(ranks),
                "top1": sum(r == 0 for r in ranks) / len(ranks),
                "ms": 1000 * statistics.median(times),
            }
        )
    elapsed = time.perf_counter() - start_all

    head = "| budget | policy | distinct evals (mean) | mean regret (pts) ± s.e. | median rank | found best | ms / run (median) |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['budget']} | {r['policy']} | {r['evals']:.1f} | {r['regret']:.3f} ± {r['regret_se']:.3f} | "
            f"{r['rank']:g} | {100 * r['top1']:.0f}% | {r['ms']:.1f} |"
        )
    table = "\n".join(lines)
    print(table)
    print(f"\n{args.seeds} seeds per setting; {elapsed:.0f} s in total on {machine()}")
    if args.no_write:
        return 0
    commit = code_version()
    doc = f"""# Search policies on NAS-Bench-Macro

Written by `benchmarks/search_nasbench.py` (commit {commit}); rerun it to refresh this page:
`nice -n 10 .venv/bin/python benchmarks/search_nasbench.py`.

**What is measured.** Each policy runs on the NAS-Bench-Macro CIFAR-10 table (8 layers x 3 choices,
6561 architectures, 3969 distinct networks) with fitness = the table's mean test accuracy, for
seeds 0..{args.seeds - 1}. For the architecture the policy *chooses* we report the regret (best accuracy
93.127 minus its accuracy, in points, mean over seeds with its standard error), its rank among the
3969 distinct networks (number of networks with a strictly higher accuracy; 0 = best; median over
seeds) and how often it is the best network. Path-priority chooses the scoreboard's composite
architecture (not necessarily evaluated); evolution and random search choose the best one they
evaluated. "Distinct evals" counts distinct architectures evaluated: the run loop caches repeats,
and path-priority's strict-fair rounds (cycle length 3 here) repeat architectures, so it spends
fewer distinct evaluations than its budget of proposals `T x E`. Budgets that are not multiples of
E use `T = floor(budget / E)`. Evolution settings: paper defaults (population 50, top-k 10,
20 mutations with p = 0.1, 20 crossovers), or population 20 with every count scaled by 0.4
(top-k 4, 8 mutations, 8 crossovers), or population 20 with top-k 10; all are cut at the budget
(at budget 24 the population-50 setting is still in its random first generation). As a check of
the machinery, random search's mean regret agrees with its exact expectation (best of n distinct
uniform draws from the 6561 keys: 0.476 / 0.327 / 0.260 / 0.146 at n = 24 / 60 / 100 / 300).

**Machine.** {machine()}. Total time {elapsed:.0f} s; "ms / run" is the median wall time of one
search (table look-ups, no training).

{table}

**Reading it.** Seed-to-seed noise of the table itself is about 0.15 points, so differences
below that are not meaningful for a real search. Path-priority scores every layer on its own, i.e.
it assumes that layers contribute independently; NAS-Bench-Macro's identity choices interact
strongly (an identity after the first layer of a stage removes that layer), so here its regret
levels off well above zero as the budget grows, while evolution, which keeps whole architectures,
reaches the best network by a few hundred evaluations. At the paper's 60 evaluations, its setting
(T = 5, E = 12) is no better than random search (here somewhat worse). This is a property of the benchmark
as much as of the policy; the paper's claim is about the much larger panoptic space with a supernet. See `docs/explanation/search.md` for the rules
(tie handling, fairness, scoring).
"""
    atomic_write_text(args.out, doc)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
