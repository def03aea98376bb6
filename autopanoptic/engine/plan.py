"""``--dry-run``: check a config and its data, and describe what a command would do (writes nothing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autopanoptic.config import Config
from autopanoptic.engine.datasets import make_splits, open_dataset
from autopanoptic.engine.restrict import OpRestriction
from autopanoptic.errors import ConfigError

__all__ = ["describe_plan"]


def describe_plan(cfg: Config, out: Path, device: Any, stages: list[str]) -> str:
    """A human-readable plan; raises the same errors the real run would for bad config or data.

    >>> from autopanoptic.config import load_config
    >>> print(describe_plan(load_config("tiny"), Path("runs/x"), "cpu", ["train-supernet"]).splitlines()[0])
    plan for runs/x on cpu (nothing is written: --dry-run)
    """
    from autopanoptic.data import CategoryMap, synthetic_categories
    from autopanoptic.engine.pipeline import supernet_readers
    from autopanoptic.nn.supernet import make_config

    d = cfg.data
    lines = [f"plan for {out} on {device} (nothing is written: --dry-run)"]
    if d.root is None:
        cats = CategoryMap.from_json(synthetic_categories(d.kind, d.synthetic_style))
        n_train_source, n_eval = d.synthetic_images, None
        lines.append(f"data: generate {d.synthetic_images} synthetic {d.synthetic_size}px images into {out / 'data'}")
    else:
        ds = open_dataset(d.root, d.images, d.json, d.pngs, d.kind)
        cats, n_train_source, n_eval = ds.categories, len(ds), None
        lines.append(f"data: {len(ds)} images in {d.root} ({d.kind})")
        if d.eval_root is not None:
            ev = open_dataset(d.eval_root, d.eval_images, d.eval_json, d.eval_pngs, d.kind)
            n_eval = len(ev)
            lines.append(f"evaluation data: {len(ev)} images in {d.eval_root}")
    splits = make_splits(n_train_source, d, n_eval_source=n_eval,
                         calib_images=max(1, cfg.search.calib_batches * cfg.search.calib_batch_size))
    lines.append(f"splits: train {len(splits.train)} (search validation {len(splits.val)}, "
                 f"BN calibration {len(splits.calib)}), evaluation {len(splits.eval)}")
    lines.append(f"categories: {cats.num_things} things, {cats.num_stuff} stuff")
    try:
        mc = make_config(cfg.model.preset, cats.num_things, cats.num_stuff,
                         **{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.model.overrides})
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model.preset / model.overrides: {str(e).splitlines()[0]}") from None
    space = mc.search_space()
    r = OpRestriction.build(space, cfg.model.exclude_ops)
    lines.append(f"model: preset {cfg.model.preset}, widths {list(mc.widths)}, {len(space)} searchable layers, "
                 f"{space.size:.3g} architectures")
    if r.excluded:
        lines.append(f"sampling: ops {list(r.excluded)} excluded by model.exclude_ops; strict fairness over the "
                     f"remaining ops (cycle length {r.sub.cycle_length})")
    t = cfg.train
    m = r.sub.cycle_length
    if "train-supernet" in stages and len(stages) > 1 and not supernet_readers(cfg):
        lines.append("train-supernet: skipped: no stage reads its weights (the search's fitness is training-free, "
                     "the retraining starts from scratch)")
    elif "train-supernet" in stages:
        lines.append(f"train-supernet: {t.steps} steps x {m} architectures x {t.batch_size} images "
                     f"({t.steps * m * t.batch_size} image passes), lr {t.lr} ({t.schedule}, warm-up {t.warmup_steps}), "
                     f"checkpoint every {t.checkpoint_every} steps")
    s = cfg.search
    if "search" in stages:
        if s.policy == "path-priority":
            n = s.cycles * (s.per_cycle or m)
            what = f"{s.cycles} cycles x {s.per_cycle or m} architectures = {n} evaluations"
        elif s.policy == "evolution":
            what = f"population {s.population} x {s.generations} generations"
        else:
            what = f"{s.evaluations} evaluations"
        budget = ""
        if s.max_params or s.max_macs:
            budget = f"; budget params <= {s.max_params}, MACs <= {s.max_macs} at {s.cost_image_size} px"
        if s.latency_table:
            from autopanoptic.nn.latency import LatencyTable

            key = LatencyTable.load(s.latency_table).key  # a missing or foreign file fails the dry run too
            budget += f"; latency table of {key.describe()}"
        if s.max_latency_ms:
            budget += f"; predicted latency <= {s.max_latency_ms} ms"
        if len(s.objectives) > 1:
            budget += f"; Pareto set of {', '.join(s.objectives)} in search/pareto.json"
            if s.front_points and s.policy in ("path-priority", "guided"):
                budget += f", plus up to {s.front_points} composites along the {s.policy} front against {s.objectives[1]}"
        if s.fitness == "naswot":
            from autopanoptic.nn.proxies import NASWOT_IMAGES

            each = (f"each the NASWOT score of the freshly initialised network on {NASWOT_IMAGES} calibration "
                    f"images{' (mask head included)' if s.naswot_mask_head else ''} (no supernet weights)")
        else:
            scored = "PQ" if s.fitness == "pq" else "the supernet's loss"
            each = (f"each {scored} on {len(splits.val)} validation images after BN recalibration on "
                    f"{s.calib_batches} x {s.calib_batch_size} images")
        lines.append(f"search: {s.policy}, {what}, {each}{budget}")
    rt = cfg.retrain
    if "retrain" in stages:
        lines.append(f"retrain: preset {rt.preset or cfg.model.preset}, {rt.steps} steps x {rt.batch_size} images, "
                     f"lr {rt.lr} ({rt.schedule}), {'from the supernet weights' if rt.init_from_supernet else 'fresh init'}"
                     + ("; random controls: one per worker that retrain.parallel=single leaves idle"
                        if rt.controls == "auto" and rt.parallel == "single" else
                        f"; plus {rt.controls} random control(s), same recipe" if rt.controls not in (0, "auto") else ""))
    if "evaluate" in stages:
        from autopanoptic.engine.truth import applicable_table

        gt, _, words = applicable_table(cfg)
        lines.append(f"evaluate: {len(splits.eval)} images; export COCO panoptic: {cfg.eval.export}")
        lines.append(f"report: {words}" if gt is not None else f"report: {words[0].lower()}{words[1:]}")
    return "\n".join(lines)
