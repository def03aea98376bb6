"""``check-ranking``: does the search's fitness rank architectures the way training them does?

A one-shot search is only worth running on a fitness that orders architectures like their
stand-alone accuracy: a trained supernet's (``search.fitness: pq`` and the like) or a training-free
score (``naswot``, the ``tiny`` presets' default, which needs no supernet). :func:`check_ranking`
measures that on a run folder (with a trained supernet where the fitness reads one):

1. draw a pool of ``pool`` architectures uniformly from the sampling space (seeded) and measure
   each one's fitness exactly as the search does (:func:`autopanoptic.engine.search.candidate_fitness`
   of ``search.fitness``: for ``pq``, BN recalibration, then PQ on the search-validation split);
2. pick ``archs`` of them spread evenly over the fitness range (sorted by fitness, evenly spaced
   positions), so the check sees good and bad paths alike;
3. train each picked architecture briefly **from scratch** (``steps`` steps of the ``retrain``
   recipe, fresh weights; :func:`autopanoptic.engine.scratch.train_and_score`) on the training
   images *outside* the search-validation split, and score it on that split (held out for these
   networks; the evaluation split is never touched);
4. Kendall's tau between fitness and that quick truth, a bootstrap interval, a one-sided
   permutation p-value, and one verdict line.

When the run's data, preset and sampling space are those of a ground-truth table
(:mod:`autopanoptic.engine.truth`; the ``tiny-truth`` preset's, the demo's), no quick truth is
needed: :func:`check_ranking_on_table` scores the table's architectures with the search's fitness
and holds them against the table's means (several seeds of the full recipe each), and says how far
the table's own noise caps tau (:func:`autopanoptic.search.stats.tau_ceiling`).

Every finished architecture is appended to ``<run>/check-ranking/journal.jsonl`` (its first line
holds the settings and the supernet's fingerprint), so an interrupted check resumes; the result
goes to ``<run>/check-ranking/result.json`` and a scatter plot to
``<run>/plots/check_ranking.png`` (shown in ``report.md``). Under ``torchrun`` the pool's fitnesses
and the trainings are dealt to the ranks; rank 0 alone writes.

Example::

    from autopanoptic.engine.ranking import RankingCheck, check_ranking
    res = check_ranking(cfg, run, RankingCheck(archs=12, steps=300))
    print(res.verdict)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from autopanoptic.errors import CheckpointError, ConfigError
from autopanoptic.io import atomic_write_json
from autopanoptic.search import stats

__all__ = ["RankingCheck", "RankingResult", "assess", "check_ranking", "check_ranking_on_table", "pick_spread",
           "plot_ranking", "scorer", "stronger_baselines", "verdict"]


def _at_least(n: int):
    def check(instance: Any, attribute: attrs.Attribute, value: int) -> None:
        if value < n:
            raise ValueError(f"{attribute.name} must be at least {n}, got {value}")

    return check


@attrs.frozen
class RankingCheck:
    """Settings of a ranking check (all recorded in the journal; a resume must use the same)."""

    archs: int = attrs.field(default=12, converter=int, validator=_at_least(4))
    steps: int = attrs.field(default=300, converter=int, validator=_at_least(1))
    pool: int = attrs.field(default=48, converter=int, validator=_at_least(4))
    seed: int = attrs.field(default=0, converter=int)
    n_boot: int = attrs.field(default=2000, converter=int, validator=_at_least(100))
    n_perm: int = attrs.field(default=2000, converter=int, validator=_at_least(100))

    def __attrs_post_init__(self) -> None:
        if self.pool < self.archs:
            raise ValueError(f"pool ({self.pool}) must be at least archs ({self.archs})")


@attrs.frozen
class RankingResult:
    """What a check measured: per architecture its fitness and quick-truth PQ, and the statistics."""

    archs: tuple[tuple[int, ...], ...]
    fitness: tuple[float, ...]
    truth: tuple[float, ...]
    tau: float
    tau_ci: tuple[float, float]
    rho: float
    p_value: float  # one-sided: tau at least this large by chance
    verdict: str
    baselines: tuple[tuple[str, float], ...] = ()  # (name, tau against the same quick truth)

    def to_json(self) -> dict[str, Any]:
        return {"n": len(self.archs), "tau": self.tau, "tau_ci": list(self.tau_ci), "rho": self.rho,
                "p_value": self.p_value, "verdict": self.verdict, "baselines": dict(self.baselines),
                "architectures": [{"arch": list(a), "fitness": f, "truth_pq": t}
                                  for a, f, t in zip(self.archs, self.fitness, self.truth)]}


def pick_spread(values: Sequence[float], k: int) -> list[int]:
    """Indices of ``k`` of ``values`` spread evenly over their sorted order (lowest and highest
    included; ties broken by index).

    >>> pick_spread([0.5, 0.1, 0.9, 0.3, 0.7], 3)
    [1, 0, 2]
    """
    if not 1 <= k <= len(values):
        raise ValueError(f"cannot pick {k} of {len(values)} values")
    order = sorted(range(len(values)), key=lambda i: (values[i], i))
    if k == 1:
        return [order[len(order) // 2]]
    pos = [round(j * (len(order) - 1) / (k - 1)) for j in range(k)]
    return [order[p] for p in pos]


def scorer(fitness: str = "pq") -> str:
    """What scores the candidates of a search with ``search.fitness = fitness``, for a sentence.

    >>> scorer("pq"), scorer("naswot")
    ('the supernet', "NASWOT (the search's training-free fitness)")
    """
    from autopanoptic.engine.search import training_free

    return "NASWOT (the search's training-free fitness)" if training_free(fitness) else "the supernet"


def verdict(tau: float, lo: float, hi: float, fitness: str = "pq") -> str:
    """One line that says whether a search with this fitness (``search.fitness``; by default the
    supernet's PQ) can be trusted.

    >>> verdict(0.55, 0.2, 0.8)
    'the supernet ranks these architectures: tau 0.55 [0.20, 0.80]'
    >>> verdict(0.1, -0.2, 0.4, "naswot").split(":")[0]
    "not distinguishable from random ranking by NASWOT (the search's training-free fitness)"
    """
    span = f"tau {tau:.2f} [{lo:.2f}, {hi:.2f}]"
    from autopanoptic.engine.search import training_free

    who, free = scorer(fitness), training_free(fitness)
    if np.isnan(tau):
        return (f"no ranking could be measured ({span}): every architecture got the same score; "
                + ("check more architectures (--archs)" if free else
                   "train the supernet or the quick networks longer (--steps)"))
    if lo > 0:
        return f"{who} ranks these architectures: {span}"
    retry = ("try search.fitness=pq on a trained supernet (check it the same way), or check more architectures "
             "(--archs) with longer quick training (--steps)" if free else None)
    if hi < 0:
        return (f"{who} ranks these architectures the wrong way round: {span}; do not trust a search on it: "
                + (retry or "check what its fitness rewards (validation images inside its training?) and try another "
                   "training length"))
    return (f"not distinguishable from random ranking{' by ' + who if free else ''}: {span}; do not trust a search "
            "on it: " + (retry or "try another supernet training length (longer is not always better), score on "
                         "more validation images, or check more architectures (--archs) with longer quick training "
                         "(--steps)"))


def stronger_baselines(tau: float, baselines: dict[str, float], fitness: str = "pq") -> str | None:
    """A sentence naming the training-free ``baselines`` (name: tau against the same truth) that rank
    a check's architectures better than the search's fitness did (``tau``; point estimates), or None.

    >>> stronger_baselines(0.2, {"NASWOT": 0.45, "MACs": -0.1})
    'ranked better by a training-free baseline: NASWOT tau 0.45 against 0.20 (point estimates; search.fitness=naswot searches with it)'
    """
    if np.isnan(tau):
        return None
    better = [(k, t) for k, t in baselines.items() if not np.isnan(t) and t > tau]
    if not better:
        return None
    hint = "; search.fitness=naswot searches with it" if fitness != "naswot" and "NASWOT" in dict(better) else ""
    return ("ranked better by a training-free baseline: " + ", ".join(f"{k} tau {t:.2f}" for k, t in better)
            + f" against {tau:.2f} (point estimates{hint})")


def assess(archs: Sequence[Sequence[int]], fitness: Sequence[float], truth: Sequence[float],
           settings: RankingCheck = RankingCheck(),
           baselines: dict[str, Sequence[float]] | None = None, kind: str = "pq") -> RankingResult:
    """The statistics and the verdict of a check, from each architecture's fitness and quick truth;
    ``baselines`` (e.g. parameters, MACs per architecture) get their own tau against the same truth;
    ``kind`` is the ``search.fitness`` that scored them (the verdict names what ranks: :func:`verdict`).

    >>> r = assess([(0,), (1,), (2,), (3,), (4,), (5,)], [1, 2, 3, 4, 5, 6], [10, 20, 30, 40, 50, 60])
    >>> r.verdict.startswith("the supernet ranks"), r.tau
    (True, 1.0)
    """
    fit, tru = [float(f) for f in fitness], [float(t) for t in truth]
    tau = stats.kendall_tau(fit, tru)
    lo, hi = stats.bootstrap_ci(stats.kendall_tau, fit, tru, n_boot=settings.n_boot, seed=settings.seed)
    p = stats.permutation_p(stats.kendall_tau, fit, tru, n_perm=settings.n_perm, seed=settings.seed,
                            alternative="greater")
    return RankingResult(
        archs=tuple(tuple(int(c) for c in a) for a in archs), fitness=tuple(fit), truth=tuple(tru), tau=tau,
        tau_ci=(lo, hi), rho=stats.spearman_rho(fit, tru), p_value=p, verdict=verdict(tau, lo, hi, kind),
        baselines=tuple((k, stats.kendall_tau([float(x) for x in v], tru)) for k, v in (baselines or {}).items()),
    )


def _fitness_is_the_naswot_baseline(cfg, settings: RankingCheck) -> bool:
    """Whether the search's fitness already is the NASWOT baseline's score (the same call, seed and
    images), so that the check need not score every architecture twice."""
    s = cfg.search
    return s.fitness == "naswot" and not s.naswot_mask_head and s.seed == settings.seed


def _journal_header(cfg, settings: RankingCheck, supernet_fp: dict[str, Any]) -> dict[str, Any]:
    from autopanoptic.config import config_to_dict

    d = config_to_dict(cfg)
    keys = ("calib_batches", "calib_batch_size") + (("fitness",) if cfg.search.fitness != "pq" else ())
    return {"kind": "check-ranking", "settings": attrs.asdict(settings), "supernet": supernet_fp,
            "retrain": d["retrain"], "search": {k: d["search"][k] for k in keys}}  # journals before `fitness`: pq


def _read_journal(path: Path, header: dict[str, Any], *, repair: bool) -> dict[int, dict[str, Any]]:
    """The finished entries of a journal (every line carries a CRC-32, as the search journal's:
    :func:`autopanoptic.search.run.seal_line`). A damaged line is an error and the file is left as it
    is; only a torn last line (a killed run: no newline, not a whole record) is dropped, and with
    ``repair`` the file is rewritten without it, so that new entries start on a line of their own."""
    from autopanoptic.errors import JournalError
    from autopanoptic.search.run import verify_line

    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    torn = lines.pop() if lines else ""  # "" when the file ends in a newline
    if torn:
        try:
            whole = verify_line(path, len(lines) + 1, torn) and json.loads(torn) is not None
        except (JournalError, ValueError):
            whole = False
        if whole:  # only the newline was lost
            lines.append(torn)
    try:
        first = json.loads(lines[0]) if lines and verify_line(path, 1, lines[0]) else None
    except (JournalError, ValueError):
        first = None
    if isinstance(first, dict):
        first.pop("crc32", None)
    if first != header:
        raise CheckpointError(
            f"{path}: written by a check with other settings or another supernet, or damaged; pass the same "
            "options, or delete the folder to start over"
        )
    done: dict[int, dict[str, Any]] = {}
    for n, line in enumerate(lines[1:], start=2):
        try:
            if not verify_line(path, n, line):
                raise ValueError
            entry = json.loads(line)
            entry.pop("crc32")
            done[int(entry["i"])] = entry
        except (JournalError, ValueError, KeyError, TypeError):
            raise CheckpointError(f"{path}: line {n} is damaged; delete the folder to start over") from None
    if repair and text != "".join(x + "\n" for x in lines):
        from autopanoptic.io import atomic_write_text

        atomic_write_text(path, "".join(x + "\n" for x in lines))
    return done


def _append(path: Path, obj: dict[str, Any]) -> None:
    import os

    from autopanoptic.search.run import seal_line

    with open(path, "a", encoding="utf-8") as f:
        f.write(seal_line(obj) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _on_every_rank(n: int, score) -> list[float]:
    """``score(i)`` for i in range(n), dealt to the ranks and gathered: every rank gets all n."""
    from autopanoptic.engine import distributed

    world = distributed.world()
    mine = {i: score(i) for i in distributed.shard(range(n), world)}
    for part in (distributed.all_gather_objects(mine) if world.active else []):
        mine.update(part)
    return [mine[i] for i in range(n)]


def table_for_check(cfg) -> tuple[Any, Path]:
    """The ground-truth table ``check-ranking --truth table`` holds the run ``cfg`` against, and its
    file; a :class:`ConfigError` saying why where none applies (the run's data, preset or space differ)."""
    from autopanoptic.engine.truth import applicable_table

    gt, path, why = applicable_table(cfg, sections=("data",))
    if gt is None or path is None:
        raise ConfigError(f"check-ranking --truth table: {why}")
    return gt, path


def check_ranking_on_table(cfg, run, settings: RankingCheck = RankingCheck(), data=None, *, device="cpu",
                           progress: bool = True) -> tuple[RankingResult, dict[str, Any]]:
    """The check against a ground-truth table instead of quick trainings: every architecture of the
    table (with the seeds all of them have) is scored with the search's fitness, as the search
    scores candidates, and held against the table's mean PQ. Needs a run whose data, preset and
    sampling space match the table (``eval.ground_truth``; a :class:`ConfigError` says what differs).
    Returns the result and a description of the truth (table, architectures, seeds, reliability,
    the tau ceiling); both are written to ``<run>/check-ranking/result.json``."""
    from autopanoptic.engine import distributed, pipeline
    from autopanoptic.engine.search import calibration_batches, candidate_fitness
    from autopanoptic.nn import count
    from autopanoptic.nn.proxies import naswot_scores

    gt, path = table_for_check(cfg)
    k = max(len(r) for r in gt.runs)
    archs, truth = gt.means(min_seeds=k)
    if len(archs) < 4:
        raise ConfigError(f"check-ranking --truth table: {path} has {len(archs)} architectures with {k} seeds; "
                          "it needs at least 4")
    world = distributed.world()
    data = data or pipeline.prepare_data(cfg, run, progress=progress)
    splits = data.splits
    supernet = pipeline.search_model(cfg, run, data, device=device)
    resize = pipeline._resize(cfg)
    calib = calibration_batches(data.train, splits.calib, cfg.search.calib_batches, cfg.search.calib_batch_size,
                                device, resize=resize)
    bar = None
    if progress and world.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(archs), desc="check-ranking (table)", unit="arch")

    def score(i: int) -> float:
        f = candidate_fitness(cfg.search.fitness, supernet, archs[i], data.train, splits.val, calib, device=device,
                              resize=resize, amp=cfg.eval.amp, seed=cfg.search.seed,
                              naswot_mask_head=cfg.search.naswot_mask_head)
        if bar is not None:
            bar.update(world.size)
        return f

    fitness = _on_every_rank(len(archs), score)
    if bar is not None:
        bar.close()
    costs = [count(supernet, a, cfg.search.cost_image_size) for a in archs]
    proxy = (list(fitness) if _fitness_is_the_naswot_baseline(cfg, settings) else
             _on_every_rank(len(archs), lambda i: naswot_scores(supernet.config, [archs[i]], calib,
                                                                seed=settings.seed)[0]))
    supernet = None  # its memory back before what follows (the scoring closures above are done with it)
    result = assess(archs, fitness, [float(t) for t in truth], settings,
                    baselines={"parameters": [c[0] for c in costs], "MACs": [c[1] for c in costs], "NASWOT": proxy},
                    kind=cfg.search.fitness)
    rel = gt.reliability(archs=[i for i, rs in enumerate(gt.runs) if len(rs) >= k])
    about = {"table": path.name, "archs": len(archs), "seeds": k, "reliability_icc": rel.icc,
             "fitness": cfg.search.fitness,
             "tau_ceiling": stats.tau_ceiling(rel.icc) if rel.icc > 0 else float("nan"),
             "scored_on": "search-validation split", "val_images": len(splits.val)}
    if world.is_main:
        (run.root / "check-ranking").mkdir(parents=True, exist_ok=True)
        atomic_write_json(run.root / "check-ranking" / "result.json",
                          {**result.to_json(), "settings": attrs.asdict(settings), "table_truth": about})
        plot_ranking(result, run.root / "plots" / "check_ranking.png",
                     truth_label=f"ground-truth mean of {k} trainings (PQ %)", kind=cfg.search.fitness)
    return result, about


def check_ranking(cfg, run, settings: RankingCheck = RankingCheck(), data=None, *, device="cpu",
                  progress: bool = True) -> RankingResult:
    """Run the check on the run folder ``run`` (see the module docstring)."""
    from autopanoptic.engine import distributed, pipeline
    from autopanoptic.engine.scratch import train_and_score
    from autopanoptic.engine.search import calibration_batches, candidate_fitness

    world = distributed.world()
    data = data or pipeline.prepare_data(cfg, run, progress=progress)
    splits = data.splits
    pool_train = sorted(set(splits.train) - set(splits.val))
    if len(pool_train) < 2:
        raise ConfigError("check-ranking trains on the training images outside the search-validation split; "
                          "there are fewer than 2: add images or lower data.val_fraction")
    supernet = pipeline.search_model(cfg, run, data, device=device)
    restriction = pipeline.restriction_for(cfg, supernet.search_space)
    supernet_fp: dict[str, Any] = {"none": "the fitness is training-free"}
    if "search" in pipeline.supernet_readers(cfg):  # the trained supernet's checkpoint, read once by search_model
        supernet_fp = {"step": supernet.provenance["step"], **supernet.provenance["fingerprint"]}
    folder = run.root / "check-ranking"
    journal = folder / "journal.jsonl"
    header = json.loads(json.dumps(_journal_header(cfg, settings, supernet_fp)))
    done = _read_journal(journal, header, repair=world.is_main)
    distributed.barrier()  # no rank reads the journal after rank 0 may have repaired it

    # 1-2: the pool's fitness, and the picked architectures
    pool = [restriction.to_full(restriction.sub.sample(np.random.default_rng([settings.seed, 17, i])))
            for i in range(settings.pool)]
    resize = pipeline._resize(cfg)  # the images as the search and the retraining see them
    calib = calibration_batches(data.train, splits.calib, cfg.search.calib_batches, cfg.search.calib_batch_size,
                                device, resize=resize)
    fitness = _on_every_rank(len(pool), lambda i: candidate_fitness(
        cfg.search.fitness, supernet, pool[i], data.train, splits.val, calib, device=device, resize=resize,
        amp=cfg.eval.amp, seed=cfg.search.seed, naswot_mask_head=cfg.search.naswot_mask_head))
    picked = pick_spread(fitness, settings.archs)
    from autopanoptic.nn import count

    costs = [count(supernet, pool[i], cfg.search.cost_image_size) for i in picked]
    from autopanoptic.nn.proxies import naswot_scores

    proxy = ([fitness[i] for i in picked] if _fitness_is_the_naswot_baseline(cfg, settings) else
             naswot_scores(supernet.config, [pool[i] for i in picked], calib, seed=settings.seed))
    supernet = None  # its memory back before what follows (the scoring closures above are done with it)

    # 3: quick truth, resumable; one architecture per rank at a time
    if world.is_main:
        folder.mkdir(parents=True, exist_ok=True)
        if not journal.exists():
            from autopanoptic.io import atomic_write_text

            from autopanoptic.search.run import seal_line

            atomic_write_text(journal, seal_line(header) + "\n")
    todo = [j for j in range(len(picked)) if j not in done]
    rc = cfg.retrain
    preset, overrides = pipeline.retrain_shape(cfg)
    recipe = attrs.evolve(rc, steps=settings.steps, init_from_supernet=False,
                          checkpoint_every=max(1, min(rc.checkpoint_every, settings.steps)))
    bar = None
    if progress and world.is_main and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(picked), initial=len(picked) - len(todo), desc="check-ranking", unit="arch")
    for start in range(0, len(todo), world.size):
        round_ = todo[start : start + world.size]
        out: dict[int, dict[str, Any]] = {}
        if world.rank < len(round_):
            j = round_[world.rank]
            i = picked[j]
            score = train_and_score(
                preset, pool[i], data.train, pool_train, data.train, splits.val, recipe,
                seed=rc.seed, overrides=overrides, device=device, flip=cfg.data.flip,
                eval_batch_size=cfg.eval.batch_size, alone=True, resize=resize,
                checkpoint_path=folder / f"arch{j:02d}-rank{world.rank}.pt",
            )
            out[j] = {"i": j, "pool_index": i, "arch": list(pool[i]), "fitness": fitness[i], "score": score.to_json()}
        distributed.wait_for_all()  # the trainings of a round differ in length (hours at paper scale)
        for part in (distributed.all_gather_objects(out) if world.active else []):
            out.update(part)
        for j in round_:
            done[j] = out[j]
            if world.is_main:
                _append(journal, out[j])
                for p in folder.glob(f"arch{j:02d}-rank*.pt"):
                    p.unlink(missing_ok=True)
        if bar is not None:
            bar.update(len(round_))
    if bar is not None:
        bar.close()

    # 4: statistics
    entries = [done[j] for j in range(len(picked))]
    for e, j in zip(entries, range(len(picked))):
        if e["arch"] != list(pool[picked[j]]):
            raise CheckpointError(f"{journal}: entry {j} is for another architecture; delete the folder to start over")
    result = assess([tuple(e["arch"]) for e in entries], [e["fitness"] for e in entries],
                    [e["score"]["pq"] for e in entries], settings,
                    baselines={"parameters": [c[0] for c in costs], "MACs": [c[1] for c in costs],
                               "NASWOT": proxy}, kind=cfg.search.fitness)
    if world.is_main:
        atomic_write_json(folder / "result.json", {**result.to_json(), "settings": attrs.asdict(settings),
                                                   "quick_truth": {"steps": settings.steps,
                                                                   "fitness": cfg.search.fitness,
                                                                   "train_images": len(pool_train),
                                                                   "scored_on": "search-validation split",
                                                                   "val_images": len(splits.val)}})
        plot_ranking(result, run.root / "plots" / "check_ranking.png", kind=cfg.search.fitness)
    return result


def plot_ranking(result: RankingResult, path: Path, truth_label: str = "trained from scratch (PQ %)",
                 kind: str = "pq") -> Path:
    """Scatter of the search's fitness (``search.fitness`` ``kind``) against the truth, with tau and its
    interval in the title."""
    from autopanoptic.engine.report import _plt, _save

    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    scale = 100 if kind == "pq" else 1
    ax.scatter([scale * f for f in result.fitness], [100 * t for t in result.truth], s=18)
    ax.set_xlabel({"pq": "supernet fitness (PQ % on the search-validation split)",
                   "loss": "fitness: minus the supernet's validation loss",
                   "naswot": "fitness: NASWOT score (no supernet weights)"}.get(kind, f"fitness ({kind})"))
    ax.set_ylabel(truth_label)
    lo, hi = result.tau_ci
    ax.set_title(f"Kendall tau {result.tau:.2f} [{lo:.2f}, {hi:.2f}], n = {len(result.archs)}", fontsize=9)
    return _save(fig, path)
