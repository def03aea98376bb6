"""Architecture search on a trained supernet: binds a policy of :mod:`autopanoptic.search` to it.

The fitness of a candidate is its PQ (All, as a fraction) on the *search validation split*, carved
out of the training data (never the evaluation split); with ``search.fitness: loss`` it is minus the
supernet's mean loss on that split (:func:`path_loss`); with ``search.fitness: naswot`` it is the
training-free NASWOT score of the candidate's freshly initialised standalone network (a baseline that
uses no supernet weights: :func:`autopanoptic.nn.proxies.naswot_scores`). Before each candidate is scored, the BatchNorm
statistics of its path are recalibrated on a fixed calibration subset of the training data
(:func:`autopanoptic.nn.recalibrate_bn`). Every evaluation is journaled by the search core's
:func:`autopanoptic.search.run`, so an interrupted search resumes where it stopped.

The policy runs on the *sampling space* of :class:`~autopanoptic.engine.restrict.OpRestriction`
(ops excluded by ``model.exclude_ops`` were never trained, so they are never proposed either);
architectures are mapped to the full space before the supernet sees them and when saved.

Under ``torchrun`` the candidates of each batch the policy proposes are dealt round-robin to the
ranks and their fitnesses gathered (every rank runs the same deterministic policy, so all agree on
every proposal); rank 0 alone writes the journal. The other ranks replay a private copy of it, so a
resumed distributed search skips the same evaluations on every rank. See docs/distributed.md.

With several ``search.objectives`` and a policy with an additive model (path-priority, guided), the
search then measures the composites along that model's front against the first cost
(``policy.front``: up to ``search.front_points`` of them, from the policy's bet down to the cheapest
architecture), so that the Pareto set covers the whole trade-off, not only the region the policy
converged to. They are evaluated like the candidates (dealt to the ranks, logged) and journaled in a
journal of their own beside the search's (``journal-front.jsonl``), so a rerun measures none twice.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from autopanoptic.config import SearchConfig
from autopanoptic.engine import distributed
from autopanoptic.engine.datasets import load_batch
from autopanoptic.engine.evaluate import evaluate
from autopanoptic.engine.restrict import OpRestriction
from autopanoptic.errors import ConfigError
from autopanoptic.io import atomic_write_json
from autopanoptic.search.space import Arch

__all__ = ["CostBudget", "SearchOutcome", "budget_for", "front_journal", "pareto_record", "calibration_batches", "make_policy", "path_fitness", "path_loss",
           "search_supernet"]


@attrs.frozen
class CostBudget:
    """A constraint on an architecture of the sampling space: parameters and/or multiply-adds of
    its full-space counterpart, counted by ``count(arch) -> (params, macs)``, and / or its latency
    predicted by ``latency(arch) -> ms`` (e.g. :meth:`autopanoptic.nn.latency.LatencyTable.predict`)."""

    count: Any = attrs.field(eq=False, repr=False)
    to_full: Any = attrs.field(eq=False, repr=False)
    max_params: float | None = None
    max_macs: float | None = None
    latency: Any = attrs.field(default=None, eq=False, repr=False)
    max_latency_ms: float | None = None
    latency_margin: float = 0.0

    @property
    def name(self) -> str:
        """Stable name (recorded in the journal header)."""
        name = f"budget(params<={self.max_params}, macs<={self.max_macs})"
        if self.max_latency_ms is None:  # as before latency budgets existed: older journals still resume
            return name
        margin = f" x {1 + self.latency_margin:g}" if self.latency_margin else ""  # as before margins existed
        return f"{name[:-1]}, latency{margin}<={self.max_latency_ms} ms)"

    def __call__(self, arch: Arch) -> bool:
        full = self.to_full(arch)
        if self.max_latency_ms is not None and self.latency(full) * (1 + self.latency_margin) > self.max_latency_ms:
            return False
        if self.max_params is None and self.max_macs is None:
            return True
        params, macs = self.count(full)
        return (self.max_params is None or params <= self.max_params) and (self.max_macs is None or macs <= self.max_macs)


def budget_for(cfg: SearchConfig, to_full, count=None, latency=None) -> CostBudget | None:
    """The :class:`CostBudget` of ``cfg``'s ``max_params`` / ``max_macs`` / ``max_latency_ms``
    (``None`` when it sets none); ``count`` and ``latency`` are needed only for the budgets set."""
    if cfg.max_params is None and cfg.max_macs is None and cfg.max_latency_ms is None:
        return None
    if (cfg.max_params is not None or cfg.max_macs is not None) and count is None:
        raise ConfigError("search.max_params / search.max_macs need a cost counter")
    if cfg.max_latency_ms is not None and latency is None:
        raise ConfigError("search.max_latency_ms needs a latency table (search.latency_table)")
    return CostBudget(None if count is None else functools.lru_cache(maxsize=None)(count), to_full, cfg.max_params,
                      cfg.max_macs, latency, cfg.max_latency_ms, cfg.latency_margin)


def make_policy(cfg: SearchConfig, constraint=None):
    """The search policy named by ``cfg.policy`` with its settings.

    >>> type(make_policy(SearchConfig(policy="random", evaluations=7))).__name__
    'RandomSearch'
    """
    from autopanoptic.search import Evolution, GuidedSearch, PathPriority, RandomSearch

    if cfg.policy == "path-priority":
        return PathPriority(cycles=cfg.cycles, models_per_cycle=cfg.per_cycle, constraint=constraint)
    if cfg.policy == "evolution":
        pop = cfg.population
        top_k = max(1, min(10, pop // 5 or 1))
        mutations = min(20, max(0, (pop - top_k) * 2 // 5))
        crossovers = min(20, max(0, (pop - top_k) * 2 // 5))
        return Evolution(population=pop, generations=cfg.generations, top_k=top_k, mutations=mutations,
                         crossovers=crossovers, constraint=constraint)
    if cfg.policy == "random":
        return RandomSearch(budget=cfg.evaluations, constraint=constraint)
    if cfg.policy == "guided":
        return GuidedSearch(budget=cfg.evaluations, constraint=constraint)
    raise ConfigError(
        f"search.policy: unknown policy {cfg.policy!r}; use path-priority, evolution, random or guided"
    )


def pareto_record(history: Sequence[tuple[Arch, float]], objectives: Sequence[str], *, count=None, latency=None,
                  chosen: Arch | None = None, chosen_fitness: float | None = None,
                  front: Sequence[tuple[Arch, float]] = ()) -> dict[str, Any]:
    """The content of ``search/pareto.json``: every evaluated candidate's objectives (``fitness``,
    then any of ``latency`` in ms by ``latency(arch)``, ``macs`` / ``params`` by ``count(arch)``):
    the search's ``history``, then the composites of the policy's front (``front``) it does not hold,
    marked ``"proposed": "front"``,
    ``front``: the indices of the Pareto set of the candidates, numbered from 1 in that order
    (:func:`autopanoptic.search.pareto.front_order`: cheapest first in the first cost), and the chosen
    architecture with its point number on the front (``null`` if it is not on it).

    >>> rec = pareto_record([((0,), 0.5), ((1,), 0.4), ((2,), 0.6)], ["fitness", "latency"],
    ...                     latency=lambda a: [10.0, 5.0, 30.0][a[0]])
    >>> rec["front"], [rec["candidates"][i]["latency"] for i in rec["front"]]
    ([1, 0, 2], [5.0, 10.0, 30.0])
    """
    from autopanoptic.search.pareto import front_order

    if len(objectives) < 2 or objectives[0] != "fitness":
        raise ConfigError(f"search.objectives {list(objectives)}: fitness and at least one cost (latency, macs, params)")

    def values(arch: Arch, fitness: float | None) -> dict[str, Any]:
        out: dict[str, Any] = {"arch": list(arch), "fitness": None if fitness is None else float(fitness)}
        if "latency" in objectives:
            out["latency"] = float(latency(arch))
        if "macs" in objectives or "params" in objectives:
            params, macs = count(arch)
            out.update({k: int(v) for k, v in (("macs", macs), ("params", params)) if k in objectives})
        return out

    cands = [values(a, f) for a, f in history]
    seen = {tuple(a) for a, _ in history}
    for a, f in front:
        if tuple(a) not in seen:
            seen.add(tuple(a))
            cands.append({**values(a, f), "proposed": "front"})
    senses = ("max",) + ("min",) * (len(objectives) - 1)
    front = front_order([tuple(c[o] for o in objectives) for c in cands], senses) if cands else []
    rec: dict[str, Any] = {"objectives": list(objectives), "senses": list(senses), "candidates": cands, "front": front}
    if chosen is not None:
        point = next((k + 1 for k, i in enumerate(front) if tuple(cands[i]["arch"]) == tuple(chosen)), None)
        rec["chosen"] = {**values(chosen, chosen_fitness), "point": point}
    return rec


def calibration_batches(dataset: Any, indices: Sequence[int], n_batches: int, batch_size: int, device,
                        resize: Any = None) -> list[list[torch.Tensor]]:
    """``n_batches`` fixed batches of images (cycling through ``indices``) for BN recalibration
    (resized by ``resize``, a :class:`~autopanoptic.engine.resize.Resize`, as evaluation resizes)."""
    idx = list(indices)
    out = []
    for b in range(n_batches):
        chunk = [idx[(b * batch_size + j) % len(idx)] for j in range(batch_size)]
        out.append(load_batch(dataset, chunk, device=device, resize=resize)[0])
    return out


def path_fitness(supernet: torch.nn.Module, arch: Arch, dataset: Any, val_indices: Sequence[int],
                 calib: Sequence[Sequence[torch.Tensor]], *, device: torch.device | str = "cpu", resize: Any = None,
                 amp: str = "off", loader_workers: int = 0) -> float:
    """The search's fitness of one full-space ``arch``: recalibrate the BatchNorm statistics of its
    path on ``calib`` (from :func:`calibration_batches`; none: keep them), then PQ (All, a fraction)
    on ``dataset[val_indices]`` (``resize``, ``amp``, ``loader_workers`` as for
    :func:`~autopanoptic.engine.evaluate.evaluate`)."""
    from autopanoptic.nn import recalibrate_bn

    if calib:
        recalibrate_bn(supernet, arch, calib)
    return evaluate(supernet, dataset, val_indices, arch=arch, device=device, resize=resize, amp=amp,
                    loader_workers=loader_workers).pq


def path_loss(supernet: torch.nn.Module, arch: Arch, dataset: Any, val_indices: Sequence[int],
              calib: Sequence[Sequence[torch.Tensor]], *, device: torch.device | str = "cpu",
              batch_size: int = 4) -> float:
    """The supernet's mean training loss (all loss terms, weighted as in training) of the path
    ``arch`` on ``dataset[val_indices]``, with its BatchNorm statistics recalibrated on ``calib``
    and frozen (no flips, no gradient, the heads' anchor / proposal sampling seeded the same way for
    every path, the caller's random state untouched): a lower-noise alternative to PQ as a fitness
    (lower is better). Sampling happens per batch, so ``batch_size`` changes the value slightly."""
    from autopanoptic.nn import recalibrate_bn

    if calib:
        recalibrate_bn(supernet, arch, calib)
    was = supernet.training
    supernet.train()
    for m in supernet.modules():  # the recalibrated (or trained) statistics, not the batch's
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    total, n = 0.0, 0
    idx = [int(i) for i in val_indices]
    devices = [torch.device(device)] if torch.device(device).type == "cuda" else []
    try:  # the RPN / RoI heads sample anchors and proposals: the same samples for every path
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(0)
            for start in range(0, len(idx), batch_size):
                chunk = idx[start : start + batch_size]
                images, targets = load_batch(dataset, chunk, device=device)
                out = supernet(images, targets, arch=arch)
                total += float(sum(out.values())) * len(chunk)
                n += len(chunk)
    finally:
        supernet.train(was)
    return total / max(n, 1)


def training_free(kind: str) -> bool:
    """Whether the ``search.fitness`` ``kind`` scores candidates without the supernet's trained weights
    (``naswot``: freshly initialised networks), so that a search with it needs no trained supernet.

    >>> training_free("naswot"), training_free("pq"), training_free("loss")
    (True, False, False)
    """
    return kind == "naswot"


def candidate_fitness(kind: str, supernet: torch.nn.Module, arch: Arch, dataset: Any, val_indices: Sequence[int],
                      calib: Sequence[Sequence[torch.Tensor]], *, device: torch.device | str = "cpu",
                      resize: Any = None, amp: str = "off", loader_workers: int = 0, seed: int = 0,
                      naswot_mask_head: bool = False) -> float:
    """The fitness of ``search.fitness`` ``kind`` of one full-space ``arch`` (higher is better):
    ``pq`` (:func:`path_fitness`), ``loss`` (minus :func:`path_loss`) or ``naswot`` (the NASWOT
    score of the freshly initialised standalone network, seeded by ``seed``, with the mask head's
    units when ``naswot_mask_head``; no supernet weights)."""
    if kind == "loss":
        return -path_loss(supernet, arch, dataset, val_indices, calib, device=device)
    if kind == "naswot":
        from autopanoptic.nn.proxies import naswot_scores

        return naswot_scores(supernet.config, [arch], calib, seed=seed, mask_head=naswot_mask_head)[0]
    return path_fitness(supernet, arch, dataset, val_indices, calib, device=device, resize=resize, amp=amp,
                        loader_workers=loader_workers)


def fitness_words(kind: str, value: float | None) -> str:
    """A fitness as a reader wants it, by ``search.fitness`` (``loss`` is journaled as minus the loss).

    >>> fitness_words("pq", 0.52), fitness_words("loss", -1.25), fitness_words("naswot", 85.123)
    ('PQ 52.0 on the search validation split', 'validation loss 1.250 on the search validation split', 'NASWOT score 85.12 (untrained network, 8 calibration images)')
    """
    if value is None:
        return "-"
    if kind == "loss":
        return f"validation loss {-value:.3f} on the search validation split"
    if kind == "naswot":
        from autopanoptic.nn.proxies import NASWOT_IMAGES

        return f"NASWOT score {value:.2f} (untrained network, {NASWOT_IMAGES} calibration images)"
    return f"PQ {100 * value:.1f} on the search validation split"


@attrs.frozen
class SearchOutcome:
    """The result of a search, in the full space."""

    best: Arch
    best_fitness: float | None
    history: tuple[tuple[Arch, float], ...]  # full-space archs, in evaluation order
    scoreboard: Any  # a Scoreboard of the sampling space (path-priority's own, or ranked history)
    top_k: tuple[Arch, ...]
    seconds: float
    chosen_fitness: float | None = None  # fitness of ``best``, evaluated after the search if it never was
    front: tuple[tuple[Arch, float], ...] = ()  # the policy's front composites (full space), measured


def search_supernet(
    supernet: torch.nn.Module,
    dataset: Any,
    val_indices: Sequence[int],
    calib_indices: Sequence[int],
    cfg: SearchConfig,
    restriction: OpRestriction,
    *,
    device: torch.device | str = "cpu",
    journal: str | Path | None = None,
    candidates_json: str | Path | None = None,
    count=None,
    latency=None,
    op_costs=None,
    progress: bool = True,
    log=None,
    resize: Any = None,
    amp: str = "off",
    loader_workers: int = 0,
) -> SearchOutcome:
    """Search the supernet with ``cfg.policy``; see the module docstring.

    ``count(full_arch) -> (params, macs)`` is needed only when ``cfg`` sets a parameter or MAC budget,
    ``latency(full_arch) -> ms`` only for ``search.max_latency_ms``. ``op_costs`` (one number per
    layer and choice of the full space: the first cost objective's, e.g. a latency table's ms) makes
    a policy with a ``front`` measure its front composites too (``search.front_points``). ``log``, if
    given, is called on rank 0 with ``{"kind": "candidate", "stage": "search", "n", "arch",
    "fitness", "seconds"}`` after each evaluation (e.g. :meth:`autopanoptic.engine.logs.RunLog.write`).
    ``resize`` and ``amp`` apply to the calibration batches and the evaluations, ``loader_workers`` to
    the evaluations (as in :func:`~autopanoptic.engine.evaluate.evaluate`).
    """
    from autopanoptic.search import PathPriority, Scoreboard, run

    policy = make_policy(cfg, budget_for(cfg, restriction.to_full, count, latency))
    calib = calibration_batches(dataset, calib_indices, cfg.calib_batches, cfg.calib_batch_size, device, resize)
    started = time.perf_counter()

    world = distributed.world()
    evaluated = [_journaled(journal)]  # evaluation order of the next candidate (the journal's count)

    def measure(archs: list[Arch]) -> list[tuple[float, float]]:
        out: dict[int, tuple[float, float]] = {}
        for k, a in distributed.shard(list(enumerate(archs)), world):  # all of them in one process
            t = time.perf_counter()
            f = candidate_fitness(cfg.fitness, supernet, restriction.to_full(a), dataset, val_indices, calib,
                                  device=device, resize=resize, amp=amp, loader_workers=loader_workers, seed=cfg.seed,
                                  naswot_mask_head=cfg.naswot_mask_head)
            out[k] = (f, time.perf_counter() - t)
        if world.active:
            for part in distributed.all_gather_objects(out):
                out.update(part)
        return [out[k] for k in range(len(archs))]

    def fitness(archs: list[Arch], **mark: Any) -> list[float]:
        measured = measure(archs)
        for a, (f, seconds) in zip(archs, measured):
            if log is not None and world.is_main:
                log({"kind": "candidate", "stage": "search", "n": evaluated[0],
                     "arch": list(restriction.to_full(a)), "fitness": f, "seconds": seconds, **mark})
            evaluated[0] += 1
        return [f for f, _ in measured]

    supernet.to(device)
    with _rank_journal(journal, world) as my_journal:
        result = run(policy, restriction.sub, fitness, seed=cfg.seed, journal=my_journal,
                     progress=progress and world.is_main)
    if isinstance(policy, PathPriority):
        board = policy.scoreboard(result.state)
        top = policy.top_k(result.state, 5)
    else:
        archs = [a for a, _ in result.history]
        board = Scoreboard.empty(restriction.sub).add(archs, [f for _, f in result.history]) if archs else Scoreboard.empty(restriction.sub)
        top = tuple(a for a, _ in sorted(result.history, key=lambda x: -x[1])[:5])
    history = tuple((restriction.to_full(a), f) for a, f in result.history)
    if candidates_json is not None and world.is_main:
        atomic_write_json(candidates_json, [{"index": i, "arch": list(a), "fitness": f} for i, (a, f) in enumerate(history)])
    if result.best is None:
        raise ConfigError("the search evaluated no architecture; raise search.cycles or search.evaluations")
    front: tuple[tuple[Arch, float], ...] = ()
    if op_costs is not None and cfg.front_points > 0 and hasattr(policy, "front"):
        from autopanoptic.search.run import evaluate_listed

        sub_costs = [[float(row[m]) for m in maps] for row, maps in zip(op_costs, restriction.index_maps)]
        proposed = policy.front(result.state, sub_costs, cfg.front_points)
        with _rank_journal(front_journal(journal), world) as my_front:
            front = evaluate_listed(policy, restriction.sub, proposed, functools.partial(fitness, proposed="front"),
                                    seed=cfg.seed, known=result.history, journal=my_front)
    chosen = result.best_fitness
    if chosen is None:
        chosen = dict(front).get(result.best)
    if chosen is None:  # e.g. path-priority's composite: measure it the same way, for the record
        chosen = measure([result.best])[0][0]
    return SearchOutcome(
        best=restriction.to_full(result.best),
        best_fitness=result.best_fitness,
        history=history,
        scoreboard=board,
        top_k=tuple(restriction.to_full(a) for a in top),
        seconds=time.perf_counter() - started,
        chosen_fitness=chosen,
        front=tuple((restriction.to_full(a), f) for a, f in front),
    )


def front_journal(journal: str | Path | None) -> Path | None:
    """The journal of the front composites beside the search's ``journal`` (``journal.jsonl`` ->
    ``journal-front.jsonl``; ``None`` without one).

    >>> front_journal("run/search/journal.jsonl").name
    'journal-front.jsonl'
    """
    if journal is None:
        return None
    j = Path(journal)
    return j.with_name(f"{j.stem}-front{j.suffix}")


def _journaled(journal: str | Path | None) -> int:
    """How many evaluations ``journal`` holds (0 if there is none yet)."""
    if journal is None or not Path(journal).exists() or Path(journal).stat().st_size == 0:
        return 0
    from autopanoptic.search import read_journal

    return len(read_journal(journal)[1])


@contextlib.contextmanager
def _rank_journal(journal: str | Path | None, world: distributed.World):
    """The journal this rank writes: ``journal`` itself on rank 0; elsewhere a private copy of it
    (so every rank replays the same evaluations) that is thrown away afterwards."""
    if journal is None or not world.active:
        yield journal
        return
    if world.is_main:
        distributed.barrier()  # the other ranks have copied the journal before rank 0 appends to it
        yield journal
        return
    with tempfile.TemporaryDirectory(prefix="autopanoptic-journal-") as tmp:
        mine = Path(tmp) / Path(journal).name
        if Path(journal).exists():
            shutil.copyfile(journal, mine)
        distributed.barrier()
        yield mine
