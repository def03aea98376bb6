"""Table 3 and Table 5 in miniature, judged on the ground truth: does the searched network beat random ones?

For each of ``--supernet-seeds`` supernets (the ``tiny`` preset, trained with strict fairness on the
ground-truth table's training images) and each of ``--search-seeds`` searches on it (per policy of
``--policies``), the chosen architecture is trained **with the ground-truth recipe** (from scratch,
``--truth-seeds`` seeds: :func:`autopanoptic.engine.scratch.train_and_score`, exactly as the table's
units) and compared with the table's distribution of random architectures.

Reported per policy (``docs/benchmarks/search-vs-random.md``): the searched architecture's percentile
among the table's architecture means, searched minus random mean (paired per search: each search is
compared with the table's mean at the time of the report; mean with a bootstrap interval), how many
searches beat the random mean, and a one-sided Wilcoxon signed-rank p-value
(:mod:`autopanoptic.search.stats`). Every finished search is appended to
``benchmarks/ground_truth/searches-tiny.json`` (seeds, settings, architecture in the full-space
encoding, fitness, each training seed's PQ), so anyone can recompute the statistics; the script
resumes from it (and from the run folders in ``--work``).

The search's settings are the pipeline's (``tiny`` preset) with the table's data, plus ``--set``
overrides, e.g. the estimator study's best fitness::

    nice -n 10 .venv/bin/python benchmarks/search_vs_random.py --set train.holdout_val=true --set train.steps=900

On 2 cores, two processes (``--shard 0/2`` and ``--shard 1/2``) each take every other supernet seed
(every other search seed when there is one supernet seed); results are appended under a file lock.
A training-free fitness does not depend on the supernet (``search.fitness=naswot`` scores fresh
networks seeded by ``search.seed``): give it one supernet seed and ten search seeds::

    nice -n 10 .venv/bin/python benchmarks/search_vs_random.py --set search.fitness=naswot --supernet-seeds 1 --search-seeds 10

Cost per search: the supernet (shared by the searches on it), the search, and ``--truth-seeds``
trainings of about 100 s each on an idle core.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import sys
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from _machine import code_version, cpu_name, write_page  # noqa: E402
from ground_truth import (LARGE_EVAL, PRESET, TABLE, TRUTH_DATA, TRUTH_RECIPE, generated, locked,  # noqa: E402
                          open_truth_data, run_record, score_large)

from autopanoptic.io import atomic_write_json  # noqa: E402

RESULTS = REPO / "benchmarks" / "ground_truth" / "searches-tiny.json"


def search_config(work: Path, overrides, supernet_seed: int, search_seed: int, policy: str):
    from autopanoptic.config import load_config

    d = TRUTH_DATA
    # search.fitness=pq first: the stored searches' settings name only what differs from the supernet's PQ,
    # the `tiny` default when they began (it is naswot since 2026-12-01); an override still wins
    return load_config("tiny", [
        f"data.root={work / 'data'}", f"data.eval_fraction={d.eval_fraction}", f"data.val_fraction={d.val_fraction}",
        f"data.split_seed={d.split_seed}", "search.fitness=pq", *overrides, f"train.seed={supernet_seed}",
        f"search.seed={search_seed}", f"search.policy={policy}",
    ])


def settings_words(overrides) -> str:
    """The overrides of a set of searches as the pages name them (``defaults`` when there are none)."""
    return " ".join(overrides) or "defaults"


def supernet_overrides(overrides) -> list[str]:
    """The overrides that change the supernet (not those of the search, retraining or evaluation):
    searches that differ only in those share a supernet."""
    return [o for o in overrides if not o.split("=", 1)[0].startswith(("search.", "retrain.", "eval."))]


def tag_of(overrides) -> str:
    return f"{zlib.crc32(chr(10).join(overrides).encode()):08x}"  # stable across processes (str hashes are salted)


def trained_supernet(work: Path, overrides, supernet_seed: int, cfg) -> Path:
    """The folder of the supernet of ``supernet_seed`` with ``overrides`` (trained, or resumed, here;
    shared by every search with those settings, also by ``front_vs_truth.py``)."""
    from autopanoptic.engine import pipeline
    from autopanoptic.engine.runs import RunDir, RunLockedError

    sup_dir = work / "searches" / f"supernet{supernet_seed}-{tag_of(supernet_overrides(overrides))}"
    while True:
        try:
            with RunDir(sup_dir) as run:
                data = pipeline.prepare_data(cfg, run, progress=False)
                pipeline.train_supernet(cfg, run, data, progress=False)
            return sup_dir
        except RunLockedError:  # another process checks (or trains) the same supernet: wait for it
            time.sleep(10)


def search_on(sup_dir: Path, name: str, cfg):
    """Search the supernet of ``sup_dir`` with ``cfg`` in its sub-folder ``name`` (resumes from its
    journal): the search's outcome, the folder, and the seconds the search took."""
    from autopanoptic.engine import pipeline
    from autopanoptic.engine.runs import RunDir

    folder = sup_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "supernet"
    if not link.exists():
        link.symlink_to(sup_dir / "supernet", target_is_directory=True)
    with RunDir(folder) as run:
        data = pipeline.prepare_data(cfg, run, progress=False)
        t = time.perf_counter()
        out = pipeline.search(cfg, run, data, progress=False)
    return out, folder, time.perf_counter() - t


def truth_run(work: Path, arch, seed: int, checkpoint: Path) -> dict:
    """One run of ``arch`` with the ground-truth recipe, as the table's units (scored on the table's
    evaluation split and on the large evaluation set): the run's JSON record."""
    from autopanoptic.engine.scratch import train_and_score

    ds, splits, large = truth_data(work)
    score = train_and_score(PRESET, tuple(arch), ds, splits.train, ds, splits.eval, TRUTH_RECIPE, seed=seed,
                            checkpoint_path=checkpoint,
                            then=lambda net: score_large(net, large, checkpoint.with_name(checkpoint.stem + "-weights.pt")))
    checkpoint.unlink(missing_ok=True)
    return run_record(score, seed, code_version())


@functools.lru_cache(maxsize=None)
def truth_data(work: Path):
    """The table's dataset, its splits and the large evaluation set (opened once per process)."""
    return (*open_truth_data(work), generated(work / "data-large", LARGE_EVAL))


def run_searches(args) -> None:
    import torch

    torch.set_num_threads(1)
    k_shard, n_shard = (int(x) for x in args.shard.split("/"))
    truth_data(args.work)  # generates the table's data into --work (the searches read it there) if this machine lacks it
    for s in range(args.supernet_seeds):
        for policy in args.policies:
            for k in range(args.search_seeds):
                if (s if args.supernet_seeds > 1 else k) % n_shard != k_shard:
                    continue
                key = {"supernet_seed": s, "search_seed": k, "policy": policy, "overrides": list(args.overrides)}
                done = json.loads(args.results.read_text())["searches"] if args.results.exists() else []
                if any({x: e[x] for x in key} == key and len(e["runs"]) >= args.truth_seeds for e in done):
                    continue
                cfg = search_config(args.work, args.overrides, s, k, policy)
                sup_dir = trained_supernet(args.work, args.overrides, s, cfg)
                out, folder, search_s = search_on(sup_dir, f"search-{policy}-{k}-{tag_of(args.overrides)}", cfg)
                arch = out.best
                runs = []
                for seed in range(args.truth_seeds):
                    runs.append(truth_run(args.work, arch, seed, folder / f"truth-seed{seed}.pt"))
                entry = {**key, "arch": list(arch), "fitness": out.chosen_fitness, "evaluations": len(out.history),
                         "search_seconds": search_s, "runs": runs, "commit": code_version(), "machine": platform.machine(),
                         "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
                with locked(args.results):
                    obj = json.loads(args.results.read_text()) if args.results.exists() else {
                        "format": 1, "table": TABLE.name, "recipe_note": "truth = the table's recipe and data",
                        "searches": []}
                    obj["searches"] = [e for e in obj["searches"] if {x: e[x] for x in key} != key] + [entry]
                    atomic_write_json(args.results, obj)
                print(f"supernet {s} {policy} search {k}: PQ "
                      f"{100 * np.mean([r['pq'] for r in runs]):.1f} ({len(out.history)} evaluations)", flush=True)


def truth_pq(entry: dict) -> float:
    """A search's truth: the mean PQ (a fraction) of its chosen architecture's training seeds."""
    return float(np.mean([r["pq"] for r in entry["runs"]]))


# The replication fixed on the page before its searches ran (docs/benchmarks/search-vs-random.md):
# (policy, overrides) -> the first search seed that belongs to it (the earlier ones made the looks before).
REPLICATION = {
    ("path-priority", ("train.holdout_val=true",)): 4,
    ("path-priority", ("train.holdout_val=true", "search.fitness=naswot")): 20,
}


# The test of the best evaluated candidate (55a00b8), beside NASWOT's path-priority replication searches.
BEST_EVALUATED = {
    ("path-priority", ("train.holdout_val=true", "search.fitness=naswot")): 20,
    ("random", ("train.holdout_val=true", "search.fitness=naswot", "search.evaluations=60")): 0,
}


def replication_section(groups: dict, target_row, plan: dict | None = None,
                        title: str = "Replication: its searches only") -> list[str]:
    """The replication's own rows: only its searches (search seed at or above the plan's first), the
    targets row of each setting and the difference of the second setting's truth over the first's."""
    from autopanoptic.search import stats

    plan = REPLICATION if plan is None else plan
    new = {k: [e for e in groups.get(k, []) if e["search_seed"] >= first] for k, first in plan.items()}
    if not any(new.values()):
        return []
    L = [f"## {title}", "",
         "| policy | settings | searches | median percentile | searched - random (PQ) [95%] | beat the random mean | "
         "Wilcoxon p (one-sided) |", "|---|---|---|---|---|---|---|"]
    L += [target_row(k[0], k[1], es) for k, es in new.items() if es]
    (ref, a), (other, b) = list(new.items())[:2]
    if a and b:
        d, lo, hi, p = stats.difference_of_means([100 * truth_pq(e) for e in b], [100 * truth_pq(e) for e in a],
                                                 n_boot=4000, n_perm=4000)
        L += ["", f"{other[0]} {settings_words(other[1])} ({len(b)}) minus {ref[0]} {settings_words(ref[1])} "
                  f"({len(a)}): {d:+.1f} PQ [{lo:+.1f}, {hi:+.1f}], one-sided permutation p {stats.format_p(p)}."]
    return L + [""]


def report(args) -> str:
    from autopanoptic.engine.truth import GroundTruth
    from autopanoptic.search import stats

    gt = GroundTruth.load(args.table).settled()  # the same seeds for every architecture while the table grows
    n_seeds = max(len(r) for r in gt.runs)
    _, means = gt.means(min_seeds=n_seeds)
    searches = json.loads(args.results.read_text())["searches"] if args.results.exists() else []
    L = ["# Searched against random architectures, on the ground truth", "",
         "Each search's chosen architecture is trained with the ground-truth recipe (from scratch, "
         f"{args.truth_seeds} seeds) and compared with the table's {len(means)} random architectures (all "
         f"{n_seeds} seeds; mean PQ {100 * means.mean():.1f}). Made by `benchmarks/search_vs_random.py`; "
         f"per-search data in `benchmarks/ground_truth/{args.results.name}`.", "",
         "| policy | settings | searches | median percentile | searched - random (PQ) [95%] | beat the random mean | "
         "Wilcoxon p (one-sided) |", "|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, tuple[str, ...]], list[dict]] = {}
    for e in searches:
        groups.setdefault((e["policy"], tuple(e["overrides"])), []).append(e)

    def target_row(policy: str, ov: tuple[str, ...], es: list[dict]) -> str:
        pq = np.array([truth_pq(e) for e in es])
        diff = 100 * (pq - means.mean())
        pct = [100 * gt.percentile(v, min_seeds=n_seeds) for v in pq]
        lo, hi = stats.bootstrap_mean_ci(diff, n_boot=4000) if len(diff) > 1 else (float("nan"),) * 2
        _, p = stats.wilcoxon_signed_rank(diff)
        return (f"| {policy} | {settings_words(ov)} | {len(es)} | {np.median(pct):.0f} | "
                f"{diff.mean():+.1f} [{lo:+.1f}, {hi:+.1f}] | {int((diff > 0).sum())} of {len(es)} | {stats.format_p(p)} |")

    for (policy, ov), es in sorted(groups.items()):
        L.append(target_row(policy, ov, es))
    if not searches:
        L.append("| - | - | 0 | - | - | - | - |")
    L += ["", "Targets (issue 13): the searched architecture beats the random mean in at least 8 of 10 searches, "
          "p < 0.05, median percentile in the top quarter (75 or more).", ""]
    keys = sorted(groups)
    if len(keys) > 1:
        ref = min(keys, key=lambda k: (len(k[1]), k[0] != "path-priority", k))  # the fewest overrides: the default
        name = lambda k: f"{k[0]} {settings_words(k[1])}"  # noqa: E731
        L += ["## Against the reference searches", "",
              f"Mean truth PQ of the architectures each setting's searches chose minus that of the reference "
              f"({name(ref)}: the fewest overrides), with a bootstrap interval (each sample resampled separately: "
              "the searches are independent) and the one-sided permutation p of \"not greater\" "
              "(`autopanoptic.search.stats.difference_of_means`).", "",
              "| searches | reference | difference (PQ) [95%] | p (not greater) |", "|---|---|---|---|"]
        truth = {k: [100 * truth_pq(e) for e in groups[k]] for k in keys}
        for k in keys:
            if k != ref:
                d, lo, hi, p = stats.difference_of_means(truth[k], truth[ref], n_boot=4000, n_perm=4000)
                L.append(f"| {name(k)} | {name(ref)} | {d:+.1f} [{lo:+.1f}, {hi:+.1f}] | {stats.format_p(p)} |")
        L.append("")
    L += replication_section(groups, target_row)
    L += replication_section(groups, target_row, BEST_EVALUATED,
                             "NASWOT: the best evaluated candidate (random search) against path-priority's composite")
    if searches:
        L += ["## Each search", "",
              "Truth PQ of the chosen architecture: each training seed, and the mean's percentile among the table's "
              "architecture means. Search time on one core of " f"{cpu_name()} (niced, beside other work).", "",
              "| policy | settings | supernet seed | search seed | fitness | evaluations | search s | truth PQ (seeds) | "
              "mean | percentile |", "|---|---|---|---|---|---|---|---|---|---|"]
        for e in sorted(searches, key=lambda e: (e["policy"], e["overrides"], e["supernet_seed"], e["search_seed"])):
            pq = [100 * r["pq"] for r in e["runs"]]
            L.append(f"| {e['policy']} | {settings_words(e['overrides'])} | {e['supernet_seed']} | "
                     f"{e['search_seed']} | {e['fitness']:.4g} | {e['evaluations']} | {e['search_seconds']:.0f} | "
                     f"{', '.join(f'{v:.1f}' for v in pq)} | {np.mean(pq):.1f} | "
                     f"{100 * gt.percentile(np.mean(pq) / 100, min_seeds=n_seeds):.0f} |")
        L.append("")
    return "\n".join(L) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", type=Path, default=TABLE)
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--work", type=Path, default=Path("/tmp/ground-truth"))
    ap.add_argument("--supernet-seeds", type=int, default=5)
    ap.add_argument("--search-seeds", type=int, default=2)
    ap.add_argument("--truth-seeds", type=int, default=3)
    ap.add_argument("--policies", nargs="+", default=["path-priority"])
    ap.add_argument("--shard", default="0/1", help="K/N: this process takes supernet seeds K, K+N, ... (each "
                    "supernet is trained by one process), or search seeds K, K+N, ... with one supernet seed")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="config overrides of the search")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "search-vs-random.md")
    args = ap.parse_args()
    if not args.report_only:
        run_searches(args)
        # no report after measuring: a pre-registered set of searches (the replication) is read once,
        # by --report-only, when all of it is in; a shard finishing early must not show it
        print(f"searches done; {Path(sys.argv[0]).name} --report-only writes {args.out.name}", flush=True)
        return
    text = report(args)
    print(text)
    write_page(args.out, text)


if __name__ == "__main__":
    main()
