"""The demo's own comparison, repeated over seeds: the searched network against its random control.

Each unit is ``autopanoptic demo --config C --workers 2 --set train.seed=K --set search.seed=K``
(plus the setting's ``--set`` overrides) in a fresh folder. With 2 workers ``retrain.controls``
(``auto`` on ``tiny``, ``1`` on ``tiny-truth``) retrains one random architecture beside the searched
one, with the same recipe; both are scored on the demo's evaluation split. This is Table 3 of the paper in the demo's
own regime: with ``--config tiny-truth`` (the demo's default since 2026-12-01) the table's data and
recipe, so each unit's two networks also get their percentile in the ground truth
(docs/benchmarks/ground-truth.md); with ``--config tiny`` (the demo's former default: 96 images,
retraining from the supernet's weights) no comparison applies. Units without a ``config`` field ran
before it existed, on ``tiny``.

Seeds: ``train.seed = search.seed = K`` (the control is drawn from ``(search.seed, retrain.seed)``, so
each K has its own supernet, search and control). A unit reuses the supernet of a finished unit with
the same K whose overrides differ only in those that leave the supernet alone (the search's,
retraining's or evaluation's, as in ``search_vs_random.py``; copied from its folder).

Reported per setting (``docs/benchmarks/demo-controls.md``): searched minus control, paired by K: the
mean with a bootstrap interval, how many K the searched network wins, and the one-sided Wilcoxon
signed-rank p (:mod:`autopanoptic.search.stats`). Every finished unit is appended to
``benchmarks/demo-controls.json`` (seed, settings, both architectures, both PQs, wall time, commit);
the script resumes from it. One unit takes about 5 (``tiny``) or 6 (``tiny-truth``) minutes of both
cores; one that reuses a supernet about 2 or 3.

Usage::

    nice -n 10 .venv/bin/python benchmarks/demo_controls.py --seeds 10
    nice -n 10 .venv/bin/python benchmarks/demo_controls.py --seeds 10 --set search.fitness=naswot
    nice -n 10 .venv/bin/python benchmarks/demo_controls.py --config tiny --seeds 10   # the former demo
    .venv/bin/python benchmarks/demo_controls.py --report-only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _machine import code_version, cpu_name, write_page  # noqa: E402
from search_vs_random import supernet_overrides  # noqa: E402  (units that differ only in these share a supernet)

from autopanoptic.io import atomic_write_json  # noqa: E402

RESULTS = REPO / "benchmarks" / "demo-controls.json"


FORMER = "tiny"  # the config of the units that ran before they recorded theirs


def words(overrides) -> str:
    return " ".join(overrides) or "defaults"


def config_of(unit: dict) -> str:
    return unit.get("config", FORMER)


def reusable(done: list[dict], keep: Path, config: str, overrides, seed: int) -> Path | None:
    """The folder of a finished unit whose supernet this unit can reuse, if any."""
    for u in done:
        folder = unit_folder(keep, config_of(u), u["overrides"], seed)
        if (u["seed"] == seed and config_of(u) == config
                and supernet_overrides(u["overrides"]) == supernet_overrides(overrides)
                and (folder / "supernet" / "checkpoint.pt").exists()):
            return folder
    return None


def unit_folder(keep: Path, config: str, overrides, seed: int) -> Path:
    name = f"{words(overrides).replace(' ', '_').replace('=', '-').replace('/', '_')}-{seed}"
    return keep / (name if config == FORMER else f"{config}-{name}")


def truth_percentiles(config: str, overrides, searched: float, control: float) -> tuple[float, float] | None:
    """Where the two PQs (one training each) fall among the ground truth's single trainings
    (fractions), when the unit's settings match the table; None when no comparison applies."""
    from autopanoptic.config import load_config
    from autopanoptic.engine.truth import applicable_table, share_below

    gt, _, _ = applicable_table(load_config(config, list(overrides)))
    if gt is None:
        return None
    single = gt.singles()
    return share_below(single, searched), share_below(single, control)


def run_unit(seed: int, config: str, overrides: list[str], folder: Path, base: Path | None, workers: int) -> dict:
    """One demo in ``folder`` (seeded from the supernet of ``base`` when given): its record."""
    if base is not None:
        for part in ("data", "supernet", "splits.json"):
            src = base / part
            if src.is_dir():
                shutil.copytree(src, folder / part)
            elif src.exists():
                folder.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, folder / part)
    exe = Path(sys.executable).parent / "autopanoptic"
    cmd = [str(exe), "demo", "--out", str(folder), "--config", config, "--device", "cpu", "--workers", str(workers),
           "--no-progress",
           "--set", f"train.seed={seed}", "--set", f"search.seed={seed}"]
    for o in overrides:
        cmd += ["--set", o]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0:
        raise SystemExit(f"demo (seed {seed}, {words(overrides)}) failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    m = json.loads((folder / "eval" / "metrics.json").read_text())
    if not m.get("controls"):
        raise SystemExit(f"demo (seed {seed}) retrained no control: run it with 2 workers (retrain.controls: auto)")
    c = m["controls"][0]
    return {"seed": seed, "config": config, "overrides": list(overrides), "searched_pq": m["All"]["pq"], "control_pq": c["All"]["pq"],
            "searched_arch": m["arch"], "control_arch": c["arch"], "searched_params": m.get("params"),
            "control_params": c.get("params"), "wall_s": time.perf_counter() - t0, "reused_supernet": base is not None,
            "commit": code_version(), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}


def measure(args) -> None:
    keep = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="demo-controls-"))
    for seed in range(args.seeds):
        done = json.loads(args.results.read_text())["units"] if args.results.exists() else []
        same = lambda u: (u["seed"] == seed and config_of(u) == args.config  # noqa: E731
                          and u["overrides"] == list(args.overrides))
        if any(same(u) for u in done):
            continue
        folder = unit_folder(keep, args.config, args.overrides, seed)
        shutil.rmtree(folder, ignore_errors=True)  # an interrupted unit starts over
        unit = run_unit(seed, args.config, args.overrides, folder,
                        reusable(done, keep, args.config, args.overrides, seed), args.workers)
        obj = json.loads(args.results.read_text()) if args.results.exists() else {"format": 1, "units": []}
        obj["units"] = [u for u in obj["units"] if not same(u)]
        obj["units"].append(unit)
        atomic_write_json(args.results, obj)
        print(f"{args.config} {words(args.overrides)} seed {seed}: done in {unit['wall_s']:.0f} s", flush=True)


def report(results: Path) -> str:
    from autopanoptic.search import stats

    units = json.loads(results.read_text())["units"] if results.exists() else []
    groups: dict[tuple[str, tuple[str, ...]], list[dict]] = {}
    for u in units:
        groups.setdefault((config_of(u), tuple(u["overrides"])), []).append(u)
    pct = {id(u): truth_percentiles(config_of(u), u["overrides"], u["searched_pq"], u["control_pq"]) for u in units}
    L = ["# The demo against its random control, over seeds", "",
         "Each row: `autopanoptic demo --config C` with 2 workers, `train.seed = search.seed = K` for each K, the "
         "setting's overrides; the searched network and the random control retrained beside it (`retrain.controls`: "
         "`auto` on `tiny`, `1` on `tiny-truth`: one control on 2 workers; same recipe), both scored on the demo's evaluation split (`tiny`: 24 images; `tiny-truth`, the "
         "demo's default since 2026-12-01: the ground-truth table's 200). Where the settings match the ground-truth "
         "table, the percentile columns say where each PQ (one training) falls among the table's single trainings "
         "([ground-truth.md](ground-truth.md)). Made by `benchmarks/demo_controls.py`; "
         f"per-unit data in `benchmarks/{results.name}`. Machine: {cpu_name()}.", "",
         "| config | settings | seeds | searched PQ (mean) | control PQ (mean) | searched - control [95%] | "
         "searched wins | Wilcoxon p (one-sided) | truth percentile, median: searched / control |",
         "|---|---|---|---|---|---|---|---|---|"]
    for (config, ov), us in sorted(groups.items()):
        s = np.array([100 * u["searched_pq"] for u in us])
        c = np.array([100 * u["control_pq"] for u in us])
        d = s - c
        lo, hi = stats.bootstrap_mean_ci(d, n_boot=4000) if len(d) > 1 else (float("nan"),) * 2
        _, p = stats.wilcoxon_signed_rank(d)
        ps = [pct[id(u)] for u in us if pct[id(u)] is not None]
        where = (f"{100 * np.median([x[0] for x in ps]):.0f} / {100 * np.median([x[1] for x in ps]):.0f}"
                 if ps else "does not apply")
        L.append(f"| `{config}` | {words(ov)} | {len(us)} | {s.mean():.1f} | {c.mean():.1f} | {d.mean():+.1f} "
                 f"[{lo:+.1f}, {hi:+.1f}] | {int((d > 0).sum())} of {len(us)} | {stats.format_p(p)} | {where} |")
    if not groups:
        L.append("| - | - | 0 | - | - | - | - | - | - |")
    L += ["", "## Each unit", "", "| config | settings | seed | searched PQ | control PQ | truth percentile: searched / "
          "control | wall s | commit |", "|---|---|---|---|---|---|---|---|"]
    for u in sorted(units, key=lambda u: (config_of(u), u["overrides"], u["seed"])):
        x = pct[id(u)]
        where = f"{100 * x[0]:.0f} / {100 * x[1]:.0f}" if x is not None else "-"
        L.append(f"| `{config_of(u)}` | {words(u['overrides'])} | {u['seed']} | {100 * u['searched_pq']:.1f} | "
                 f"{100 * u['control_pq']:.1f} | {where} | {u['wall_s']:.0f} | {u['commit']} |")
    return "\n".join(L) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--config", default="tiny-truth", help="the demo's config (its default: tiny-truth)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes per demo (2: one control)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--keep", default="/tmp/demo-controls", help="folder of the units' run folders")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "demo-controls.md")
    args = ap.parse_args()
    if not args.report_only:
        measure(args)
    text = report(args.results)
    print(text)
    write_page(args.out, text)


if __name__ == "__main__":
    main()
