"""Guided search: path-priority's per-layer scores as a model, used to steer a small-budget search.

Path-priority bets that a layer's good choices can be read from the ranks of the models they appear
in, and returns the composite of the best choices without ever evaluating it. The bet pays on wide,
nearly additive spaces and fails when layers interact. :class:`GuidedSearch` keeps the scoring idea
but checks every bet with a measurement:

1. **Explore.** The first batch is about a quarter of the budget (whole strict-fair cycles, at least
   one), exactly like path-priority's first cycles.
2. **Model.** Before every later batch, fitnesses are turned into rank-based normal scores (robust
   to outliers and to the scale of the fitness) and a Bayesian linear model with one weight per
   (layer, choice) is fitted: the least-squares version of the scoreboard, valid for any design,
   fair or not. The noise variance is estimated from the residuals.
3. **Propose.** Each slot of the batch draws one set of weights from the posterior (Thompson
   sampling; the spread shrinks linearly to zero as the budget runs out, so the last batch
   exploits) and picks the unseen, allowed candidate with the highest score among: the composite of
   the drawn weights and its one-layer variants (path-priority's bet, now *evaluated*), and the
   one- and two-layer variants and crossovers of the five best measured architectures (local
   search, which handles interacting layers). A candidate's score is its model prediction plus the
   residual (measured minus predicted) of the nearest top architecture, discounted by ``1/2`` per
   differing layer: near a measured architecture, the measurement is trusted over the model.
4. **Return** the best *measured* architecture (ties: the earlier one).

Settings are few: the budget, the batch size and the constraint. Every random draw is derived from
``(seed, purpose, step)``, the state is a frozen value holding the history, so a search resumes
from its journal exactly. Standard library, numpy and attrs only.

>>> from autopanoptic.search.spaces import nas_bench_macro
>>> policy = GuidedSearch(budget=12)
>>> state = policy.init(nas_bench_macro(), seed=0)
>>> archs, state = policy.ask(state)
>>> len(archs)                              # the first batch: one strict-fair cycle (3 for 3 choices)
3
>>> state = policy.tell(state, archs, [float(sum(a)) for a in archs])
>>> archs, state = policy.ask(state)        # then batches of `batch_size` (here the cycle length, 3)
>>> len(archs), policy.done(state)
(3, False)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from statistics import NormalDist
from typing import Any

import attrs
import numpy as np

from autopanoptic.search.fair import derive_rng, strict_fair_cycle
from autopanoptic.search.hull import convex_front
from autopanoptic.search.policies.base import (
    Constraint,
    callable_or_none,
    check_seed,
    check_tell,
    optional_positive,
    positive,
    random_unseen,
    running_best,
    settings_json,
)
from autopanoptic.search.space import Arch, SearchSpace

__all__ = ["AdditiveModel", "GuidedSearch", "GuidedSearchState", "fit_additive", "normal_scores"]

_PURPOSE_INIT = 21
_PURPOSE_GUIDED = 22
_PURPOSE_FILL = 23

INIT_FRACTION = 0.25
"""Share of the budget spent on the first, strict-fair batch (rounded to whole cycles, >= 1 cycle)."""
TOP = 5
"""Number of best measured architectures whose neighbourhoods are searched."""
DISCOUNT = 0.5
"""How much a measured residual is trusted per layer of distance (``DISCOUNT ** hamming``)."""
RANDOM_VARIANTS = 30
"""Random two-layer variants per top architecture, and crossovers of top pairs, per batch."""


@attrs.frozen
class GuidedSearchState:
    """Everything that changes during a guided search (an immutable value).

    ``history`` holds every ``(arch, fitness)`` told, in order; the model is refitted from it, so
    the state stays small and is rebuilt exactly when a search is replayed from its journal.
    """

    space: SearchSpace
    seed: int
    step: int = 0
    history: tuple[tuple[Arch, float], ...] = ()
    seen: frozenset[Arch] = frozenset()
    best: Arch | None = None
    best_fitness: float | None = None
    pending: tuple[Arch, ...] | None = None
    exhausted: bool = False

    @property
    def evaluations(self) -> int:
        """Number of distinct architectures evaluated so far."""
        return len(self.history)


@attrs.frozen
class AdditiveModel:
    """A Bayesian linear model with one weight per (layer, choice), on rank-normal scores.

    ``mean`` is the posterior mean of the flat weight vector (layer 0's choices first); ``center``
    the mean one-hot row of the data; ``prior`` and ``noise`` the prior and (estimated) noise
    variances; ``design`` and ``targets`` the centred one-hot data and its scores, kept so that
    :meth:`sample` can draw exact posterior samples with ``n x n`` algebra only.
    """

    n_choices: tuple[int, ...]
    mean: np.ndarray = attrs.field(eq=False)
    center: np.ndarray = attrs.field(eq=False)
    prior: float
    noise: float
    design: np.ndarray = attrs.field(eq=False, repr=False)
    targets: np.ndarray = attrs.field(eq=False, repr=False)

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.n_choices)[:-1]]).astype(np.int64)

    def predict(self, archs: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Predicted score of each row of ``archs`` (an ``N x layers`` int array).

        >>> m = fit_additive((2, 2), [(0, 0), (1, 1), (1, 0), (0, 1)], [0.0, 3.0, 2.0, 1.0])
        >>> bool(m.predict(np.array([(1, 1)]))[0] > m.predict(np.array([(0, 0)]))[0])
        True
        """
        w = self.mean if weights is None else weights
        return w[self.offsets + np.asarray(archs)].sum(axis=1) - float(self.center @ w)

    def composite(self, weights: np.ndarray | None = None) -> Arch:
        """The highest-scoring choice of each layer under ``weights`` (default: the posterior mean).

        >>> fit_additive((3,), [(0,), (1,), (2,)], [1.0, 5.0, 2.0]).composite()
        (1,)
        """
        w = self.mean if weights is None else weights
        return tuple(int(np.argmax(w[o : o + n])) for o, n in zip(self.offsets, self.n_choices))

    def sample(self, gen: np.random.Generator, spread: float = 1.0) -> np.ndarray:
        """Weights drawn from the posterior, their deviation from the mean scaled by ``spread``
        (``0``: the mean). Exact sampling by perturbing the prior and the data (Matheron's rule).

        >>> m = fit_additive((2,), [(0,), (1,)], [0.0, 1.0])
        >>> bool(np.allclose(m.sample(np.random.default_rng(0), spread=0.0), m.mean))
        True
        """
        if spread == 0.0:
            return self.mean.copy()
        X, n = self.design, len(self.targets)
        w0 = math.sqrt(self.prior) * gen.standard_normal(X.shape[1])
        e = math.sqrt(self.noise) * gen.standard_normal(n)
        K = self.prior * (X @ X.T) + self.noise * np.eye(n)
        w = w0 + self.prior * (X.T @ np.linalg.solve(K, self.targets - X @ w0 - e))
        return self.mean + spread * (w - self.mean)


_NORMAL = NormalDist()


def normal_scores(fitnesses: np.ndarray) -> np.ndarray:
    """Rank-based normal scores: ``Phi^-1((rank + 1/2) / n)`` with rank 0 the lowest; ties share
    the average rank. Monotone in the fitness and free of its scale.

    >>> [round(float(x), 2) for x in normal_scores(np.array([3.0, 1.0, 2.0]))]
    [0.97, -0.97, 0.0]
    """
    y = np.asarray(fitnesses, dtype=float)
    n = len(y)
    order = np.argsort(y, kind="stable")
    ranks = np.empty(n)
    ranks[order] = np.arange(n, dtype=float)
    for value in np.unique(y):  # average the ranks of ties
        tie = y == value
        if tie.sum() > 1:
            ranks[tie] = ranks[tie].mean()
    return np.array([_NORMAL.inv_cdf((r + 0.5) / n) for r in ranks])


def fit_additive(n_choices: Iterable[int], archs: Iterable[Arch], fitnesses: Iterable[float]) -> AdditiveModel:
    """Fit the additive model of :class:`AdditiveModel` to evaluated architectures.

    Prior: independent weights ``N(0, 1 / layers)`` (so a random architecture's score has prior
    variance about 1, like the normal scores); noise variance estimated from the residuals (two
    refinements, floor 0.05).

    >>> m = fit_additive((3,), [(0,), (1,), (2,)], [1.0, 5.0, 2.0])
    >>> m.composite()
    (1,)
    """
    n_choices = tuple(int(n) for n in n_choices)
    A = np.asarray(list(archs), dtype=np.int64).reshape(-1, len(n_choices))
    z = normal_scores(np.asarray(list(fitnesses), dtype=float))
    offsets = np.concatenate([[0], np.cumsum(n_choices)[:-1]]).astype(np.int64)
    X = np.zeros((len(A), int(sum(n_choices))))
    np.put_along_axis(X, offsets + A, 1.0, axis=1)
    center = X.mean(axis=0)
    Xc = X - center
    prior = 1.0 / len(n_choices)
    gram = prior * (Xc @ Xc.T)  # n x n: the dual (kernel) form, cheap when n < weights
    noise = 0.5
    for _ in range(3):  # mean for the current noise, then re-estimate the noise from residuals
        alpha = np.linalg.solve(gram + noise * np.eye(len(z)), z)
        mean = prior * (Xc.T @ alpha)
        res = z - Xc @ mean
        if _ == 2:
            break
        noise = max(0.05, float(res @ res) / len(z))
    return AdditiveModel(n_choices, mean, center, prior, noise, Xc, z)


@attrs.frozen
class GuidedSearch:
    """A small-budget search policy: Thompson sampling on path-priority's additive model, with
    local search around the best measured architectures (see the module docstring).

    Args:
        budget: number of distinct architectures to evaluate (60, the paper's path-priority budget).
        batch_size: architectures per batch after the first (``None``: the space's cycle length,
            at most ``budget // 4``). Smaller batches adapt more often; larger ones parallelise.
        constraint: optional predicate; a violating architecture is never proposed nor counted.
        max_tries: random draws per candidate before giving up (constraint error or exhaustion).

    Stops early when every allowed architecture has been evaluated.
    """

    budget: int = attrs.field(default=60, validator=positive)
    batch_size: int | None = attrs.field(default=None, validator=optional_positive)
    constraint: Constraint | None = attrs.field(default=None, validator=callable_or_none)
    max_tries: int = attrs.field(default=10_000, validator=positive)

    # ---- sizes ---------------------------------------------------------------------------------
    def batch_for(self, space: SearchSpace) -> int:
        """Batch size used on ``space`` after the first batch.

        >>> from autopanoptic.search.spaces import auto_panoptic
        >>> GuidedSearch(budget=24).batch_for(auto_panoptic()), GuidedSearch().batch_for(auto_panoptic())
        (6, 12)
        """
        if self.batch_size is not None:
            return self.batch_size
        return max(1, min(space.cycle_length, self.budget // 4))

    def first_batch_for(self, space: SearchSpace) -> int:
        """Size of the first, strict-fair batch: about ``INIT_FRACTION`` of the budget in whole
        cycles, at least one cycle and the batch size, at most the budget."""
        m = space.cycle_length
        n0 = max(m, self.batch_for(space), m * round(self.budget * INIT_FRACTION / m))
        return min(self.budget, n0)

    def init(self, space: SearchSpace, seed: int) -> GuidedSearchState:
        """Initial state for ``space`` and ``seed``."""
        return GuidedSearchState(space=space, seed=check_seed(seed))

    def _allowed(self, arch: Arch) -> bool:
        return self.constraint is None or bool(self.constraint(arch))

    # ---- the two phases ------------------------------------------------------------------------
    def _first_batch(self, state: GuidedSearchState, n: int) -> tuple[list[Arch], bool]:
        """Whole strict-fair cycles (violators and repeats dropped), topped up at random."""
        space = state.space
        out: list[Arch] = []
        taken: set[Arch] = set(state.seen)
        draws = 0
        cycle = 0
        while len(out) < n and draws < self.max_tries and cycle < 64:
            for arch in strict_fair_cycle(space, derive_rng(state.seed, _PURPOSE_INIT, cycle)):
                draws += 1
                if len(out) < n and arch not in taken and self._allowed(arch):
                    taken.add(arch)
                    out.append(arch)
            cycle += 1
        return self._fill(state, out, taken, n)

    def _fill(self, state: GuidedSearchState, out: list[Arch], taken: set[Arch], n: int) -> tuple[list[Arch], bool]:
        gen = derive_rng(state.seed, _PURPOSE_FILL, state.step)
        while len(out) < n:
            arch = random_unseen(state.space, gen, self.constraint, taken, self.max_tries)
            if arch is None:
                return out, True
            taken.add(arch)
            out.append(arch)
        return out, False

    def _guided_batch(self, state: GuidedSearchState, n: int) -> tuple[list[Arch], bool]:
        space = state.space
        nc = np.asarray(space.n_choices, dtype=np.int64)
        L = len(nc)
        gen = derive_rng(state.seed, _PURPOSE_GUIDED, state.step)
        archs = [a for a, _ in state.history]
        fits = np.array([f for _, f in state.history])
        model = fit_additive(space.n_choices, archs, fits)
        z = normal_scores(fits)

        order = sorted(range(len(archs)), key=lambda i: (-fits[i], i))[:TOP]
        tops = np.array([archs[i] for i in order], dtype=np.int64)
        resid = z[order] - model.predict(tops)

        # the candidate pool around the best measured architectures
        pool = [tops, *(_one_layer_variants(t, nc) for t in tops)]
        for t in tops:
            pool.append(_random_variants(t, nc, gen, RANDOM_VARIANTS, flips=min(2, L)))
        if len(tops) > 1:
            i = gen.integers(len(tops), size=RANDOM_VARIANTS)
            j = gen.integers(len(tops), size=RANDOM_VARIANTS)
            mask = gen.random((RANDOM_VARIANTS, L)) < 0.5
            pool.append(np.where(mask, tops[i], tops[j]))
        base = np.concatenate(pool)

        remaining = self.budget - state.evaluations - n
        spread = max(0.0, remaining / self.budget)
        taken: set[Arch] = set(state.seen)
        verdict: dict[Arch, bool] = {}
        out: list[Arch] = []
        for _ in range(n):
            w = model.sample(gen, spread)
            comp = np.array(model.composite(w), dtype=np.int64)
            # repeats in the pool are harmless: the first unseen, allowed one is taken
            cands = np.concatenate([comp[None, :], _one_layer_variants(comp, nc), base])
            dist = (cands[:, None, :] != tops[None, :, :]).sum(axis=2)
            score = model.predict(cands, w) + (resid[None, :] * DISCOUNT**dist).max(axis=1)
            pick = None
            for k in np.argsort(-score, kind="stable"):
                arch = tuple(int(c) for c in cands[k])
                if arch in taken:
                    continue
                if arch not in verdict:
                    verdict[arch] = self._allowed(arch)
                if verdict[arch]:
                    pick = arch
                    break
            if pick is None:  # the neighbourhood is used up: a random allowed architecture
                got, exhausted = self._fill(state, [], taken, 1)
                if exhausted:
                    return out, True
                pick = got[0]
            taken.add(pick)
            out.append(pick)
        return out, False

    # ---- the interface -------------------------------------------------------------------------
    def ask(self, state: GuidedSearchState) -> tuple[tuple[Arch, ...], GuidedSearchState]:
        """The next batch of distinct, unseen, allowed architectures."""
        if state.pending is not None:
            return state.pending, state
        if self.done(state):
            raise ValueError("ask() after the search is done")
        space = state.space
        if state.evaluations == 0:
            batch, exhausted = self._first_batch(state, self.first_batch_for(space))
        else:
            n = min(self.batch_for(space), self.budget - state.evaluations)
            batch, exhausted = self._guided_batch(state, n)
        batch_t = tuple(batch)
        # an empty batch (the allowed space is used up) is still asked and told, then we are done
        return batch_t, attrs.evolve(state, step=state.step + 1, pending=batch_t, exhausted=exhausted)

    def tell(self, state: GuidedSearchState, archs: Iterable[Arch], fitnesses: Iterable[float]) -> GuidedSearchState:
        """Record the fitnesses of the last batch."""
        archs, fits = check_tell(state.pending, archs, fitnesses)
        best, best_fit = running_best(state.best, state.best_fitness, archs, fits)
        return attrs.evolve(
            state,
            history=state.history + tuple(zip(archs, fits)),
            seen=state.seen | frozenset(archs),
            best=best,
            best_fitness=best_fit,
            pending=None,
        )

    def done(self, state: GuidedSearchState) -> bool:
        """True when the budget is spent or the allowed space is exhausted."""
        return state.pending is None and (state.evaluations >= self.budget or state.exhausted)

    def best(self, state: GuidedSearchState) -> Arch | None:
        """The best architecture evaluated so far (``None`` before any; ties: the earlier one)."""
        return state.best

    def model(self, state: GuidedSearchState) -> AdditiveModel | None:
        """The additive model fitted to everything evaluated so far (``None`` before any).

        ``model(state).composite()`` is path-priority's bet for this history.
        """
        if not state.history:
            return None
        return fit_additive(state.space.n_choices, [a for a, _ in state.history], [f for _, f in state.history])

    def front(self, state: GuidedSearchState, costs: Sequence[Sequence[float]], k: int | None = None) -> tuple[Arch, ...]:
        """Composites along the additive model's front against an additive cost (``costs``: one
        number per layer and choice of the policy's space): those that maximise ``predicted score -
        lam * total cost`` (posterior mean weights) for some ``lam >= 0``, the model's composite
        first (a tied cheaper choice preferred), cheapest last; violators of the constraint skipped;
        at most ``k``, evenly spread (:func:`~autopanoptic.search.hull.convex_front`). Unlike
        :meth:`best` these are the model's bets, measured or not. Empty before any evaluation.

        >>> from autopanoptic.search.spaces import nas_bench_macro
        >>> policy, costs = GuidedSearch(budget=6), [[0.0, 1.0, 2.0]] * 8
        >>> state = policy.init(nas_bench_macro(), seed=0)
        >>> policy.front(state, costs)              # nothing measured yet
        ()
        >>> archs, state = policy.ask(state)
        >>> front = policy.front(policy.tell(state, archs, [float(sum(a)) for a in archs]), costs, k=2)
        >>> len(front), front[-1]
        (2, (0, 0, 0, 0, 0, 0, 0, 0))
        """
        model = self.model(state)
        if model is None:
            return ()
        weights = [model.mean[o : o + n] for o, n in zip(model.offsets, model.n_choices)]
        return tuple(p.arch for p in convex_front(weights, costs, k=k, constraint=self.constraint))

    def max_proposals(self, space: SearchSpace) -> int:
        """Upper bound on the number of architectures proposed."""
        return self.budget

    def to_json(self) -> dict[str, Any]:
        """The settings, with the constraint replaced by its name."""
        return settings_json(self)


def _one_layer_variants(arch: np.ndarray, nc: np.ndarray) -> np.ndarray:
    """Every architecture differing from ``arch`` in exactly one layer."""
    rows = []
    for layer, n in enumerate(nc):
        for c in range(int(n)):
            if c != arch[layer]:
                row = arch.copy()
                row[layer] = c
                rows.append(row)
    if not rows:
        return np.empty((0, len(nc)), dtype=np.int64)
    return np.stack(rows)


def _random_variants(arch: np.ndarray, nc: np.ndarray, gen: np.random.Generator, count: int, flips: int) -> np.ndarray:
    """``count`` copies of ``arch`` with ``flips`` random layers redrawn uniformly."""
    L = len(nc)
    out = np.repeat(arch[None, :], count, axis=0)
    layers = np.argsort(gen.random((count, L)), axis=1)[:, :flips]
    fresh = gen.integers(0, nc[layers])
    np.put_along_axis(out, layers, fresh, axis=1)
    return out
