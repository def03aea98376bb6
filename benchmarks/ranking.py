"""Estimators of architecture quality against the ground truth of the ``tiny`` space.

For every architecture of the ground-truth table (``benchmarks/ground_truth.py``) that has all its
seeds, each estimator gives a score; this script reports Kendall's tau and Spearman's rho of each
score against the ground-truth mean PQ, with 95% bootstrap intervals, into
``docs/benchmarks/ranking.md``. Estimators (all library calls):

- training-free: parameters and MACs at 64 px (:func:`autopanoptic.nn.count`), and the NASWOT score
  of the untrained network (:func:`autopanoptic.nn.proxies.naswot_scores`, 8 training images, seed 0):
  ``naswot`` on the dense part of the network (the search's ``search.fitness: naswot``), ``naswot-mask``
  with the mask head's units too (``search.naswot_mask_head: true``); ``zico``, the ZiCo score
  (:func:`autopanoptic.nn.proxies.zico_scores`: the same 8 images as 2 batches of 4 with their targets);
- low fidelity: the architecture trained from scratch for ``--short-steps`` steps (seed 0) with the
  table's recipe otherwise, PQ on the table's evaluation images
  (:func:`autopanoptic.engine.scratch.train_and_score`);
- supernets trained on the table's training images with the demo's recipe (``tiny`` preset, strict
  fairness), in variants: ``demo`` (300 steps, the search-validation images inside supernet
  training: today's default), ``holdout`` (300 steps, ``train.holdout_val=true``) and longer
  trainings (``--supernet-steps``); for each, the search fitness (BN recalibration on 16 images,
  PQ on the 100 search-validation images; :func:`autopanoptic.engine.search.path_fitness`), the
  validation loss (:func:`autopanoptic.engine.search.path_loss`, lower is better) and per-op rank
  scoring (the fitness of ``--pool`` random paths ranked; each op scored by the mean rank of the
  paths using it; an architecture by the sum of its ops' scores: an additive model that averages
  the per-path noise over the paths that share an op).

Every measurement is cached in ``benchmarks/ground_truth/ranking-estimates.json`` (``--cache``; kept in
the repository, so that the page can be regenerated on another machine) as it is made, so the script
resumes. Run (about an hour of one core; reads the table, trains supernets into ``<work>``)::

    nice -n 10 .venv/bin/python benchmarks/ranking.py
    nice -n 10 .venv/bin/python benchmarks/ranking.py --only naswot holdout:pq     # just these estimators
    .venv/bin/python benchmarks/ranking.py --report-only --truth-seeds 4-7 --out /tmp/fresh.md  # another truth
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import attrs  # noqa: E402
import numpy as np  # noqa: E402

from ground_truth import EXCLUDE_OPS, PRESET, TABLE, TRUTH_DATA, TRUTH_RECIPE, draw_archs, open_truth_data  # noqa: E402
from _machine import write_page  # noqa: E402

from autopanoptic.io import atomic_write_json  # noqa: E402


class Cache:
    """``{estimator: {arch_index: value}}`` in a JSON file, written after every value."""

    def __init__(self, path: Path):
        self.path = path
        self.data = json.loads(path.read_text()) if path.exists() else {}

    def get(self, name: str, i: int):
        return self.data.get(name, {}).get(str(i))

    def put(self, name: str, i: int, value: float, seconds: float) -> None:
        self.data.setdefault(name, {})[str(i)] = value
        self.data.setdefault("_seconds", {}).setdefault(name, 0.0)
        self.data["_seconds"][name] += seconds
        atomic_write_json(self.path, self.data)


def pool_archs(space, keys, pool_offset: int) -> list:
    """The random paths a supernet's pool scored, in the order of ``keys`` (cache key ``pool_offset + k``
    is path k, drawn from the restricted space with seed ``[99, k]``), in the full-space encoding."""
    from autopanoptic.engine.restrict import OpRestriction

    r = OpRestriction.build(space, EXCLUDE_OPS)
    return [r.to_full(r.sub.sample(np.random.default_rng([99, int(k) - pool_offset]))) for k in keys]


def per_op_scorer(space, pool: dict, pool_offset: int):
    """Per-op rank scoring from a supernet's pool ``{key: fitness}``: each choice's mean rank among the
    pool's paths, centred (``stats.op_marginals``; a choice no path used scores 0); an architecture
    scores the sum over its choices. Returns ``arch -> score``."""
    from autopanoptic.search import stats

    keys = sorted(pool, key=int)
    scores = [[0.0 if np.isnan(x) else x for x in row] for row in stats.op_marginals(
        pool_archs(space, keys, pool_offset), stats.average_ranks([pool[k] for k in keys]), space.n_choices)]
    return lambda arch: float(sum(scores[layer][c] for layer, c in enumerate(arch)))


def supernet_cost(run_dir: Path) -> str:
    """A supernet's training cost from its run log: its steps and their median images/s (wall time
    would measure whatever else the machine ran, and a resumed training has several)."""
    from autopanoptic.engine.logs import read_log

    log = run_dir / "metrics.jsonl"
    ips = [r["images_per_s"] for r in (read_log(log) if log.exists() else [])
           if r.get("kind") == "step" and r.get("stage") == "supernet" and r.get("images_per_s")]
    return f"supernet {len(ips)} steps at {np.median(ips):.0f} images/s" if ips else "supernet"


PICK_K = 16  # the pick column: best of this many random table architectures


def supernet_config(work: Path, steps: int, holdout: bool):
    from autopanoptic.config import load_config

    d = TRUTH_DATA
    return load_config("tiny", [
        f"data.root={work / 'data'}", f"data.eval_fraction={d.eval_fraction}", f"data.val_fraction={d.val_fraction}",
        f"data.split_seed={d.split_seed}", f"train.steps={steps}", f"train.holdout_val={str(holdout).lower()}",
        "search.calib_batches=4", "search.calib_batch_size=4",
    ])


def measure(args) -> dict:
    import torch

    from autopanoptic.engine import pipeline
    from autopanoptic.engine.datasets import load_batch
    from autopanoptic.engine.runs import RunDir
    from autopanoptic.engine.scratch import train_and_score
    from autopanoptic.engine.search import calibration_batches, path_fitness, path_loss
    from autopanoptic.engine.truth import GroundTruth
    from autopanoptic.nn import count, make_config
    from autopanoptic.nn.proxies import naswot_scores, zico_scores

    torch.set_num_threads(1)
    gt = GroundTruth.load(args.table)
    ds, splits = open_truth_data(args.work)
    cats = ds.categories
    cache = Cache(args.cache)
    wanted = set(args.only or ())
    archs = {i: a for i, a in enumerate(gt.archs)}
    table_idx = list(archs)

    def each(name, fn, indices=None):
        if wanted and name not in wanted:
            return
        for i in (indices if indices is not None else table_idx):
            if cache.get(name, i) is None:
                t = time.perf_counter()
                v = fn(i, archs[i])
                cache.put(name, i, float(v), time.perf_counter() - t)
        print(f"{name}: done", flush=True)

    each("params", lambda i, a: count(PRESET, a, 64, num_thing_classes=cats.num_things,
                                      num_stuff_classes=cats.num_stuff)[0])
    each("macs", lambda i, a: count(PRESET, a, 64, num_thing_classes=cats.num_things,
                                    num_stuff_classes=cats.num_stuff)[1])
    images = load_batch(ds, list(splits.train[:8]))[0]

    config = make_config(PRESET, cats.num_things, cats.num_stuff)

    def naswot(mask_head):  # the search's own call (seed 0, the first 8 training images)
        return lambda i, a: naswot_scores(config, [a], [images], seed=0, images=len(images), mask_head=mask_head)[0]

    each("naswot", naswot(False))
    each("naswot-mask", naswot(True))
    # ZiCo: the same 8 training images, as 2 batches of 4 with their targets (the training loss's gradients)
    zbatches = [load_batch(ds, list(splits.train[:4])), load_batch(ds, list(splits.train[4:8]))]
    each("zico", lambda i, a: zico_scores(config, [a], zbatches, seed=0)[0])
    # supernets first (cheap per architecture): their main estimators for every supernet, then the
    # costlier extras (300 more images, few-shot children); the low-fidelity trainings last
    for phase, steps in [("main", s) for s in args.supernet_steps] + [("extra", args.supernet_steps[0])]:
        first = steps == args.supernet_steps[0]
        for holdout in ((False, True) if first else (True,)):
            name = ("holdout" if holdout else "demo") + ("" if steps == 300 else f"-{steps}")
            if wanted and not any(w.startswith(name + ":") or w.startswith(name + "+") for w in wanted):
                continue  # no estimator of this supernet is asked for: do not train it
            cfg = supernet_config(args.work, steps, holdout)
            with RunDir(args.work / "supernets" / name) as run:
                data = pipeline.prepare_data(cfg, run, progress=False)
                for part in ("train", "val", "eval"):
                    assert getattr(data.splits, part) == getattr(splits, part), f"{part} split differs from the table's"
                pipeline.train_supernet(cfg, run, data, progress=False)
                sup = pipeline.load_supernet(cfg, run, data)
            calib = calibration_batches(ds, data.splits.calib, 4, 4, "cpu")
            r = pipeline.restriction_for(cfg, sup.search_space)
            pool = {args.pool_offset + k: r.to_full(r.sub.sample(np.random.default_rng([99, k])))
                    for k in range(args.pool)}
            for k, a in pool.items():
                archs.setdefault(k, a)
            if phase == "main":
                each(f"{name}:pq", lambda i, a: path_fitness(sup, a, ds, splits.val, calib))
                each(f"{name}:loss", lambda i, a: -path_loss(sup, a, ds, splits.val, calib))
                each(f"{name}:pool-pq", lambda i, a: path_fitness(sup, a, ds, splits.val, calib), list(pool))
                sup = None
                continue
            if first:  # more validation images: 300 generated images no training ever saw
                extra, extra_idx = extra_val(args.work)
                each(f"{name}:pq-val300", lambda i, a: path_fitness(sup, a, extra, extra_idx, calib))
            if first and holdout and args.fewshot_steps and (
                    not wanted or f"{name}+fewshot{args.fewshot_steps}:pq" in wanted):
                from autopanoptic.engine.fewshot import most_influential_layer, train_children

                pool_fit = [cache.get(f"{name}:pool-pq", k) for k in pool]
                layer = most_influential_layer(r.sub.n_choices, [r.to_sub(a) for a in pool.values()], pool_fit)
                fs = f"{name}+fewshot{args.fewshot_steps}"
                children = train_children(sup, r, layer, ds, pipeline.supernet_pool(cfg, splits), cfg.train,
                                          steps=args.fewshot_steps, checkpoint_dir=args.work / "supernets" / fs)
                cache.data.setdefault("_fewshot_layer", {})[fs] = sup.search_space.layers[layer].name
                each(f"{fs}:pq", lambda i, a: path_fitness(children[a[layer]], a, ds, splits.val, calib))
                children = None
            sup = None  # free the supernet before the next one
    short = attrs.evolve(TRUTH_RECIPE, steps=args.short_steps)
    each(f"scratch-{args.short_steps}", lambda i, a: train_and_score(
        PRESET, a, ds, splits.train, ds, splits.eval, short, seed=0).pq, [i for i in table_idx if gt.runs[i]])
    return cache.data


def extra_val(work: Path):
    """300 more images of the table's generator (indices 600-899: never in any split of the table)."""
    from autopanoptic.data import write_synthetic
    from autopanoptic.engine.datasets import open_dataset
    from autopanoptic.engine.pipeline import synthetic_marker

    d = attrs.evolve(TRUTH_DATA, synthetic_images=900)
    root = work / "data-900"
    marker = root / "synthetic.json"
    if not marker.exists() or json.loads(marker.read_text()) != synthetic_marker(d):
        write_synthetic(root, 900, size=d.synthetic_size, seed=d.synthetic_seed, kind=d.kind, style=d.synthetic_style)
        atomic_write_json(marker, synthetic_marker(d))
    return open_dataset(root, "images", "panoptic.json", "panoptic", d.kind), list(range(600, 900))


def report(args, data: dict) -> str:
    from _machine import cpu_name

    from autopanoptic.engine.truth import GroundTruth
    from autopanoptic.search import stats

    gt = GroundTruth.load(args.table)
    if args.truth_seeds:  # a chosen block of seeds (e.g. trainings no estimator was compared with before)
        lo, _, hi = args.truth_seeds.partition("-")
        block = range(int(lo), int(hi or lo) + 1)
        gt = gt.with_seeds(block)
        complete = sum(len(rs) == len(block) for rs in gt.runs)
        if complete < len(gt.runs):  # a block is read whole, once (docs/benchmarks/ranking.md's plan): no early look
            raise SystemExit(f"--truth-seeds {args.truth_seeds}: {complete} of {len(gt.runs)} architectures have all "
                             "of these seeds; run again when the table has them")
    else:
        gt = gt.settled()  # the same seeds for every architecture while the table grows
    values = gt.table(args.truth_key)
    n_seeds = max(len(v) for v in values)
    idx = [i for i, v in enumerate(values) if len(v) == n_seeds]
    truth = np.array([np.mean(values[i]) for i in idx])
    rel = gt.reliability(args.truth_key, idx)

    space, _ = draw_archs(0, json.loads(args.table.read_text())["arch_seed"])
    rows = []
    kept: dict[str, tuple[str, dict]] = {}  # estimator -> (label, values), for the paired comparisons

    def add(name, label, values, cost):
        kept[name] = (label, values)
        have = [k for k, i in enumerate(idx) if values.get(str(i)) is not None]
        if len(have) < 4:
            rows.append((label, len(have), None, None, None, None, None, cost))
            return
        x = [values[str(idx[k])] for k in have]
        y = truth[have]
        tau, rho = stats.kendall_tau(x, y), stats.spearman_rho(x, y)
        tci = stats.bootstrap_ci(stats.kendall_tau, x, y, n_boot=4000, seed=0)
        rci = stats.bootstrap_ci(stats.spearman_rho, x, y, n_boot=4000, seed=0)
        pick = stats.best_of_k_percentile(x, y, min(PICK_K, len(have)), seed=0)
        rows.append((label, len(have), tau, tci, rho, rci, pick, cost))

    sec = data.get("_seconds", {})

    def cost(name):
        vals = data.get(name, {})
        if not vals:
            return "-"
        x = sec.get(name, 0) / len(vals)
        return f"{x:.1f} s / arch" if x >= 0.1 else f"{x:.2g} s / arch" if x >= 0.001 else "< 0.001 s / arch"

    add("params", "parameters (more is better)", data.get("params", {}), cost("params"))
    add("macs", "MACs at 64 px", data.get("macs", {}), cost("macs"))
    add("naswot", "NASWOT (untrained network, 8 images)", data.get("naswot", {}), cost("naswot"))
    if data.get("zico"):
        add("zico", "ZiCo (untrained network, 2 batches of 4 images)", data["zico"], cost("zico"))
    if data.get("naswot-mask"):
        add("naswot-mask", "NASWOT with the mask head (untrained network, 8 images)", data["naswot-mask"],
            cost("naswot-mask"))
    for key in sorted(k for k in data if k.startswith("scratch-")):
        add(key, f"trained from scratch for {key.split('-')[1]} steps (1 seed)", data[key], cost(key))
    # supernets with a fitness on the table's architectures, then those with only a pool of random paths
    # (a table whose cache holds just the pool still gets the per-op rows and test 5's sum)
    names = [k[:-3] for k in data if k.endswith(":pq") and not k.endswith("pool-pq") and "fewshot" not in k]
    pooled = [k[: -len(":pool-pq")] for k in data if k.endswith(":pool-pq") and "fewshot" not in k]
    names += [n for n in pooled if n not in names]
    for name in names:
        if f"{name}:pq" in data:
            tcost = supernet_cost(args.work / "supernets" / name)
            add(f"{name}:pq", f"supernet `{name}`: search fitness (PQ, 100 val images)", data[f"{name}:pq"],
                f"{tcost} + {cost(name + ':pq')}")
            if data.get(f"{name}:loss"):
                add(f"{name}:loss", f"supernet `{name}`: validation loss (lower is better)", data[f"{name}:loss"],
                    cost(name + ":loss"))
        pq_, loss_ = data.get(f"{name}:pq", {}), data.get(f"{name}:loss", {})
        both = [k for k in pq_ if k in loss_]
        if both:
            rp = stats.average_ranks([pq_[k] for k in both])
            rl = stats.average_ranks([loss_[k] for k in both])
            add(f"{name}:pq+loss", f"supernet `{name}`: PQ rank + loss rank", {k: float(a + b) for k, a, b in
                                                                                 zip(both, rp, rl)}, "-")
        if data.get(f"{name}:pq-val300"):
            add(f"{name}:pq-val300", f"supernet `{name}`: search fitness on 300 more images", data[f"{name}:pq-val300"],
                cost(name + ":pq-val300"))
        pool = data.get(f"{name}:pool-pq", {})
        if len(pool) >= 8:
            score = per_op_scorer(space, pool, args.pool_offset)
            vals = {str(i): score(gt.archs[i]) for i in idx}
            add(f"{name}:per-op", f"supernet `{name}`: per-op rank scoring over {len(pool)} random paths", vals,
                f"{len(pool)} fitness evaluations")
    for fs in [k[:-3] for k in data if k.endswith(":pq") and "fewshot" in k]:
        layer = data.get("_fewshot_layer", {}).get(fs, "?")
        steps = fs.rsplit("fewshot", 1)[1]  # wall time would count pauses and load: say what was trained
        add(f"{fs}:pq", f"few-shot `{fs}`: children split on `{layer}`, search fitness", data[f"{fs}:pq"],
            f"one child per op of `{layer}`, {steps} steps each from the supernet + {cost(fs + ':pq')}")
    if "naswot" in kept and "holdout-900:per-op" in kept:  # test 5 of ranking.md: the two ranks summed
        a, b = kept["naswot"][1], kept["holdout-900:per-op"][1]
        both = [str(i) for i in idx if a.get(str(i)) is not None and b.get(str(i)) is not None]
        if both:
            ra = stats.average_ranks([a[k] for k in both])
            rb = stats.average_ranks([b[k] for k in both])
            add("naswot+per-op-900", "NASWOT rank + supernet `holdout-900` per-op rank",
                {k: float(x + y) for k, x, y in zip(both, ra, rb)}, "-")
    bias = (paired_section(kept, idx, truth, "naswot", "the current default")
            + paired_section(kept, idx, truth, "holdout:pq", "the former default")
            + op_bias_section(args, data, gt, idx, truth, space))
    perfect_pick = stats.best_of_k_percentile(truth, truth, min(PICK_K, len(idx)), seed=0)[0]
    L = ["# Estimators against the ground truth", "",
         "Kendall's tau and Spearman's rho between each estimator and the ground-truth mean PQ "
         "([ground-truth.md](ground-truth.md)) of the architectures that have all their seeds, with 95% bootstrap "
         "intervals (architectures resampled). Made by `benchmarks/ranking.py` from "
         f"`{args.table.name}`; machine: {cpu_name()}, one torch thread.", "",
         f"Ground truth: `{args.truth_key}` of {len(idx)} architectures with all {n_seeds} seeds"
         + (f" (seeds {args.truth_seeds} only, `--truth-seeds`) " if args.truth_seeds else " ") +
         f"(mean PQ {100 * truth.mean():.1f}, sd {100 * truth.std(ddof=1):.2f} across architectures). "
         f"These means are reliable at {rel.icc:.2f} (ICC(1,{n_seeds})): an estimator that knew every "
         f"architecture's true quality would be expected to reach a Kendall tau of only "
         f"**{stats.tau_ceiling(rel.icc):.2f}** against them (`autopanoptic.search.stats.tau_ceiling`). "
         "Read every tau below against that ceiling.", "",
         f"The pick column plays a search on the table: draw {PICK_K} of its architectures at random, keep the one the "
         "estimator scores highest, and read that architecture's percentile in the truth "
         "(`autopanoptic.search.stats.best_of_k_percentile`: the mean over 4000 draws, and the range of 95% of single "
         f"picks). A blind estimator averages 50; a perfect one {100 * perfect_pick:.0f} here.", "",
         f"| estimator | n | Kendall tau [95%] | Spearman rho [95%] | its pick of {PICK_K}: truth percentile, mean "
         "[95% of picks] | cost |", "|---|---|---|---|---|---|"]
    for label, n, tau, tci, rho, rci, pick, c in rows:
        if tau is None:
            L.append(f"| {label} | {n} | - | - | - | {c} |")
        else:
            L.append(f"| {label} | {n} | {tau:+.2f} [{tci[0]:+.2f}, {tci[1]:+.2f}] | {rho:+.2f} [{rci[0]:+.2f}, "
                     f"{rci[1]:+.2f}] | {100 * pick[0]:.0f} [{100 * pick[1]:.0f}, {100 * pick[2]:.0f}] | {c} |")
    L += ["", "Supernets: the `tiny` preset trained with strict fairness on the table's 400 training images "
          "(batch 2, lr 0.06, cosine, 10 warm-up steps: the demo's recipe); `demo` keeps the 100 "
          "search-validation images inside its training (the default until 2026-11-30), `holdout` leaves them out "
          "(`train.holdout_val=true`, the `tiny` default since, for searches on the supernet's PQ); a number after the name is the number of steps (default 300). The "
          "fitness recalibrates BatchNorm on 16 training images outside the validation split.", ""]
    return "\n".join(L + bias) + "\n"


def paired_section(kept: dict, idx: list[int], truth, base: str, which: str) -> list[str]:
    """Each estimator's tau minus that of a default search fitness (``base``, ``which`` default it is:
    the current or a former one), paired on the same architectures."""
    from autopanoptic.search import stats

    if base not in kept:
        return []
    base_label, base_vals = kept[base]
    L = [f"## Better than {which} search fitness?", "",
         f"Each estimator's Kendall tau minus that of {base_label} on the same architectures, with a 95% "
         "bootstrap interval over architectures resampled *in pairs* (`autopanoptic.search.stats.paired_difference`: "
         "the noise both share, the truth's included, cancels) and the one-sided bootstrap p of \"not better\". "
         "The same for the pick of a best-of-16 search (truth percentile points; 400 resamples of 200 draws). "
         "This, not two overlapping intervals above, is the test for changing a default (issue 13). Many "
         "estimators are compared at once: at p 0.05 one in twenty comparisons comes out by chance.", "",
         "| estimator | n | tau - tau of the default [95%] | p (not better) | pick - pick of the default [95%] | "
         "p (not better) |", "|---|---|---|---|---|---|"]

    def pick(e, t):
        return 100 * stats.best_of_k_percentile(e, t, min(PICK_K, len(t)), n_draws=200, seed=1)[0]

    for name, (label, vals) in kept.items():
        if name == base:
            continue
        have = [k for k, i in enumerate(idx) if vals.get(str(i)) is not None and base_vals.get(str(i)) is not None]
        if len(have) < 8:
            continue
        a = [vals[str(idx[k])] for k in have]
        b = [base_vals[str(idx[k])] for k in have]
        d, lo, hi, p = stats.paired_difference(stats.kendall_tau, a, b, truth[have], n_boot=4000, seed=0)
        pd, plo, phi, pp = stats.paired_difference(pick, a, b, truth[have], n_boot=400, seed=0)
        L.append(f"| {label} | {len(have)} | {d:+.2f} [{lo:+.2f}, {hi:+.2f}] | {stats.format_p(p)} | {pd:+.0f} [{plo:+.0f}, "
                 f"{phi:+.0f}] | {stats.format_p(pp)} |")
    return L + [""]


def op_bias_section(args, data, gt, idx, truth, space) -> list[str]:
    """Per-op marginal effects the supernets imply (over their random pool) against the truth's."""
    from autopanoptic.search import stats

    if len(idx) < 8:
        return ["## Per-op effects: supernet against truth", "", "Not yet: fewer than 8 architectures with all seeds.", ""]
    true_eff = stats.op_effects([gt.archs[i] for i in idx], 100 * truth, space.n_choices, n_boot=2000)
    L = ["## Per-op effects: supernet against truth", "",
         "For each layer and op, the marginal effect (mean over the architectures using the op minus the mean "
         "of all; `autopanoptic.search.stats.op_effects`) of the supernet's fitness over its random pool "
         "(ranks, so that every supernet is on one scale) and of the ground truth (PQ points). "
         "Spearman's rho between the two effect lists says whether the supernet prefers the ops that train "
         "well; the ops listed are those it prefers significantly while the truth's effect is negative (or the "
         "other way round): the bias to explain.", "",
         "| supernet | ops compared | rho of effects | preferred by the supernet, worse in truth | the other way round |",
         "|---|---|---|---|---|"]
    for name in [k[: -len(":pool-pq")] for k in data if k.endswith(":pool-pq")]:  # the main table's order
        pool = data[f"{name}:pool-pq"]
        keys = sorted(pool, key=int)
        archs = pool_archs(space, keys, args.pool_offset)
        ranks = stats.average_ranks([pool[k] for k in keys])
        sup_eff = stats.op_effects(archs, ranks, space.n_choices, n_boot=2000)
        xs, ys, fav, unfav = [], [], [], []
        for layer, srow, trow in zip(space.layers, sup_eff, true_eff):
            for op, se, te in zip(layer.ops, srow, trow):
                if se["n"] == 0 or te["n"] == 0:
                    continue
                xs.append(se["effect"])
                ys.append(te["effect"])
                if se["lo"] > 0 and te["effect"] < 0:
                    fav.append(f"{layer.name}:{op}")
                if se["hi"] < 0 and te["effect"] > 0:
                    unfav.append(f"{layer.name}:{op}")
        L.append(f"| `{name}` | {len(xs)} | {stats.spearman_rho(xs, ys):+.2f} | {', '.join(fav) or '-'} | "
                 f"{', '.join(unfav) or '-'} |")
    return L + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", type=Path, default=TABLE)
    ap.add_argument("--work", type=Path, default=Path("/tmp/ground-truth"))
    ap.add_argument("--supernet-steps", type=int, nargs="+", default=[300, 900])
    ap.add_argument("--pool", type=int, default=96, help="random paths for per-op rank scoring")
    ap.add_argument("--pool-offset", type=int, default=100000, help="cache keys of the pool paths")
    ap.add_argument("--short-steps", type=int, default=150)
    ap.add_argument("--fewshot-steps", type=int, default=100, help="steps of each few-shot child (0: none)")
    ap.add_argument("--truth-key", default="pq",
                    help="the truth's metric: pq (the table's 200 evaluation images) or large.pq (1000 more)")
    ap.add_argument("--cache", type=Path, default=REPO / "benchmarks" / "ground_truth" / "ranking-estimates.json",
                    help="the estimates measured so far (resumes from it)")
    ap.add_argument("--only", nargs="+", metavar="ESTIMATOR",
                    help="measure only these estimators (e.g. naswot holdout:pq); the others keep what the cache has")
    ap.add_argument("--truth-seeds", metavar="A-B",
                    help="hold the estimators against the mean of the table's seeds A..B only (default: the seeds "
                         "every architecture has, from 0)")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "ranking.md")
    args = ap.parse_args()
    data = json.loads(args.cache.read_text()) if args.report_only else measure(args)
    text = report(args, data)
    print(text)
    write_page(args.out, text)


if __name__ == "__main__":
    main()
