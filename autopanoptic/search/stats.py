"""Rank statistics for judging a search: does one score rank architectures like another?

Plain numpy functions (no scipy needed), used by ``autopanoptic check-ranking``, the ground-truth
benchmark and anyone comparing a proxy with a ground truth:

- :func:`kendall_tau` (tau-b) and :func:`spearman_rho`, over one group of ``(x, y)`` pairs or pooled
  over several groups (pairs and ranks formed *within* each group, e.g. within each supernet seed);
- :func:`bootstrap_ci` (percentile interval, pairs resampled within groups) and
  :func:`permutation_p` (two-sided, ``y`` shuffled within groups);
- :func:`split_half_reliability` (how reliable a mean over repeated measurements is, Spearman-Brown
  corrected), :func:`mean_reliability` (the same by one-way ANOVA, with the variance components)
  and :func:`spearman_brown`;
- :func:`wilcoxon_signed_rank` (one-sided, exact for small samples) and :func:`bootstrap_mean_ci`
  for paired differences such as "searched minus random";
- :func:`op_effects`: which op choices of each layer go with higher values (marginal means).

Ties get average ranks throughout. ``randomness`` is always passed in as a seed.

>>> round(kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]), 4)
0.6667
>>> lo, hi = bootstrap_ci(kendall_tau, [1, 2, 3, 4, 5, 6], [2, 1, 4, 3, 6, 5], n_boot=200, seed=0)
>>> -1 <= lo <= hi <= 1
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "average_ranks",
    "best_of_k_percentile",
    "bootstrap_ci",
    "bootstrap_mean_ci",
    "difference_of_means",
    "expected_tau",
    "format_p",
    "kendall_tau",
    "mean_reliability",
    "op_effects",
    "op_marginals",
    "paired_difference",
    "permutation_p",
    "spearman_brown",
    "spearman_rho",
    "split_half_reliability",
    "tau_ceiling",
    "wilcoxon_signed_rank",
]

Groups = Sequence[tuple[Sequence[float], Sequence[float]]]


def average_ranks(x: Sequence[float]) -> np.ndarray:
    """Ranks 1..n, tied values sharing the average of their ranks.

    >>> average_ranks([10, 30, 20, 20]).tolist()
    [1.0, 4.0, 2.5, 2.5]
    """
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    sx = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sx[j + 1] == sx[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _kendall_parts(x, y) -> tuple[float, float, float]:
    """(sum of sign products over pairs, pairs untied in x, pairs untied in y)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    iu = np.triu_indices(len(x), 1)
    sx = np.sign(x[:, None] - x[None, :])[iu]
    sy = np.sign(y[:, None] - y[None, :])[iu]
    return float(np.sum(sx * sy)), float(np.sum(sx != 0)), float(np.sum(sy != 0))


def _spearman_parts(x, y) -> tuple[float, float, float]:
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float(rx @ ry), float(rx @ rx), float(ry @ ry)


def _combine(parts) -> float:
    num = sum(p[0] for p in parts)
    den = math.sqrt(sum(p[1] for p in parts) * sum(p[2] for p in parts))
    return float(num / den) if den > 0 else float("nan")


def _groups(x, y) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(x, y)`` as one group, or ``x`` already a list of groups when ``y`` is None."""
    if y is None:
        out = [(np.asarray(a, float), np.asarray(b, float)) for a, b in x]
    else:
        out = [(np.asarray(x, float), np.asarray(y, float))]
    for a, b in out:
        if a.shape != b.shape or a.ndim != 1:
            raise ValueError(f"x and y must be 1-d sequences of the same length, got shapes {a.shape} and {b.shape}")
    return out


def kendall_tau(x: Sequence[float] | Groups, y: Sequence[float] | None = None) -> float:
    """Kendall's tau-b of ``x`` and ``y``; or, with ``y`` None, pooled over the pairs *within* each
    ``(x, y)`` group of ``x``. ``nan`` when one side is constant.

    >>> round(kendall_tau([1, 2, 2, 3], [1, 2, 3, 3]), 4)
    0.8
    >>> kendall_tau([([1, 2], [1, 2]), ([1, 2], [2, 1])])
    0.0
    """
    return _combine([_kendall_parts(a, b) for a, b in _groups(x, y)])


def spearman_rho(x: Sequence[float] | Groups, y: Sequence[float] | None = None) -> float:
    """Spearman's rho (Pearson's correlation of average ranks); grouped like :func:`kendall_tau`.

    >>> round(spearman_rho([1, 2, 3, 4], [1, 3, 2, 4]), 4)
    0.8
    >>> round(spearman_rho([([1, 2, 3], [3, 2, 1]), ([5, 6, 7], [5, 6, 7])]), 4)
    0.0
    """
    return _combine([_spearman_parts(a, b) for a, b in _groups(x, y)])


def _resample(groups, rng: np.random.Generator):
    out = []
    for a, b in groups:
        i = rng.integers(0, len(a), len(a))
        out.append((a[i], b[i]))
    return out


def bootstrap_ci(stat: Callable, x, y=None, *, n_boot: int = 10000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of ``stat`` (e.g. :func:`kendall_tau`) over resamples of the ``(x, y)``
    pairs with replacement (within each group); resamples where ``stat`` is undefined are skipped."""
    groups = _groups(x, y)
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(int(n_boot)):
        v = stat(_resample(groups, rng))
        if not np.isnan(v):
            vals.append(v)
    if not vals:
        return float("nan"), float("nan")
    lo, hi = np.quantile(vals, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def paired_difference(stat: Callable, a: Sequence[float], b: Sequence[float], truth: Sequence[float], *,
                      n_boot: int = 10000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float, float]:
    """Is estimator ``a`` better than estimator ``b`` against the same ``truth``? ``stat(a, truth) -
    stat(b, truth)`` (e.g. two Kendall taus), its percentile interval over bootstrap resamples of the
    items (the same items for both estimators: the comparison is paired, so what the two share, such
    as a noisy truth, cancels), and the one-sided bootstrap p-value of "not better" (the share of
    resamples where the difference is <= 0).

    >>> truth = list(range(20))
    >>> good, bad = truth[:], truth[::-1]
    >>> d, lo, hi, p = paired_difference(kendall_tau, good, bad, truth, n_boot=500)
    >>> d, lo > 1.5, p < 0.01
    (2.0, True, True)
    """
    a, b, t = (np.asarray(v, float) for v in (a, b, truth))
    if not len(a) == len(b) == len(t):
        raise ValueError(f"paired_difference needs lists of one length, got {len(a)}, {len(b)}, {len(t)}")
    obs = float(stat(a, t) - stat(b, t))
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(int(n_boot)):
        i = rng.integers(0, len(t), len(t))
        v = stat(a[i], t[i]) - stat(b[i], t[i])
        if not np.isnan(v):
            vals.append(v)
    if not vals:
        return obs, float("nan"), float("nan"), float("nan")
    lo, hi = np.quantile(vals, [(1 - level) / 2, (1 + level) / 2])
    return obs, float(lo), float(hi), float(np.mean(np.asarray(vals) <= 0))


def best_of_k_percentile(estimate: Sequence[float], truth: Sequence[float], k: int, *, n_draws: int = 4000,
                         seed: int = 0) -> tuple[float, float, float]:
    """What a search that trusts ``estimate`` would get: draw ``k`` items at random, keep the one the
    estimator scores highest, and read its percentile in ``truth`` (the share of all items whose truth is
    below it, ties half). Returns the mean percentile over ``n_draws`` draws and the 2.5% and 97.5%
    quantiles of the single draws (the spread of one such search's outcome). A random estimator's mean
    is about 0.5; a perfect one's is the expected percentile of the best of ``k``.

    >>> truth = list(range(100))
    >>> perfect = best_of_k_percentile(truth, truth, 10, n_draws=2000)[0]
    >>> backwards = best_of_k_percentile(truth[::-1], truth, 10, n_draws=2000)[0]
    >>> round(perfect, 2) > 0.85, round(backwards, 2) < 0.15
    (True, True)
    """
    e, t = np.asarray(estimate, float), np.asarray(truth, float)
    if len(e) != len(t) or not 1 <= k <= len(t):
        raise ValueError(f"best_of_k_percentile needs lists of one length and 1 <= k <= n, got {len(e)}, {len(t)}, k={k}")
    pct = np.array([(np.sum(t < v) + 0.5 * (np.sum(t == v) - 1)) / max(1, len(t) - 1) for v in t])
    rng = np.random.default_rng(seed)
    got = np.empty(int(n_draws))
    for d in range(int(n_draws)):
        sub = rng.choice(len(t), k, replace=False)
        got[d] = pct[sub[np.argmax(e[sub])]]
    lo, hi = np.quantile(got, [0.025, 0.975])
    return float(got.mean()), float(lo), float(hi)


def format_p(p: float) -> str:
    """A p-value as a reader wants it: three decimals, and ``< 0.001`` below that (a Monte Carlo
    p never reaches 0: :func:`permutation_p`'s least is ``1 / (1 + n_perm)``).

    >>> format_p(0.0421), format_p(0.0004998), format_p(float("nan"))
    ('0.042', '< 0.001', 'nan')
    """
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def permutation_p(stat: Callable, x, y=None, *, n_perm: int = 10000, seed: int = 0,
                  alternative: str = "two-sided") -> float:
    """Monte Carlo permutation p-value of ``stat`` with ``y`` shuffled within each group:
    ``(1 + #{perm at least as extreme}) / (1 + n_perm)``; ``alternative`` is ``two-sided`` (|stat|)
    or ``greater`` (stat itself, for "ranks better than chance")."""
    if alternative not in ("two-sided", "greater"):
        raise ValueError(f"alternative must be 'two-sided' or 'greater', got {alternative!r}")
    groups = _groups(x, y)
    key = abs if alternative == "two-sided" else (lambda v: v)
    obs = key(stat(groups))
    if np.isnan(obs):
        return float("nan")
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(int(n_perm)):
        v = stat([(a, rng.permutation(b)) for a, b in groups])
        hits += bool(key(v) >= obs - 1e-12)
    return (1 + hits) / (1 + n_perm)


def spearman_brown(r: float, k: float) -> float:
    """Reliability of a measurement ``k`` times as long as one whose reliability is ``r``.

    >>> round(spearman_brown(0.5, 2), 4)
    0.6667
    """
    return float(k * r / (1 + (k - 1) * r))


def split_half_reliability(table: Sequence[Sequence[float]], *, n_splits: int = 200, seed: int = 0) -> float:
    """Reliability of the per-row mean of ``table`` (rows: items such as architectures; columns:
    repeated measurements such as training seeds; rows with fewer than 2 columns are skipped).

    The columns of each row are split at random into two halves (sizes ``k // 2`` and the rest);
    the Pearson correlation of the half means across rows, Spearman-Brown corrected (factor 2), is
    averaged over ``n_splits`` random splits. See also :func:`mean_reliability`.

    >>> rng = np.random.default_rng(0)
    >>> truth = rng.normal(0, 2, 40)
    >>> table = truth[:, None] + rng.normal(0, 1, (40, 4))
    >>> 0.8 < split_half_reliability(table) < 1.0
    True
    """
    rows = [np.asarray(r, float) for r in table if len(r) >= 2]
    if len(rows) < 3:
        return float("nan")
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(int(n_splits)):
        a, b = [], []
        for r in rows:
            p = rng.permutation(len(r))
            h = len(r) // 2
            a.append(r[p[:h]].mean())
            b.append(r[p[h:]].mean())
        c = np.corrcoef(a, b)[0, 1]
        if not np.isnan(c):
            vals.append(c)
    if not vals:
        return float("nan")
    return spearman_brown(float(np.mean(vals)), 2)


def mean_reliability(table: Sequence[Sequence[float]]) -> tuple[float, float, float]:
    """``(reliability, sd_between, sd_within)`` of the per-row means of ``table`` by one-way ANOVA
    (rows may have different numbers of columns; rows with fewer than 2 are skipped).

    ``sd_within`` is the pooled standard deviation of repeated measurements of one row;
    ``sd_between`` the standard deviation of the rows' true values (variance component, 0 if
    negative); reliability = ICC(1, k) = var_between / (var_between + var_within / k) with ``k`` the
    mean number of columns: the expected correlation of the means with the true values, squared.

    >>> rng = np.random.default_rng(0)
    >>> rel, sb, sw = mean_reliability(rng.normal(0, 2, (200, 1)) + rng.normal(0, 1, (200, 3)))
    >>> 0.9 < rel < 0.95 and 1.8 < sb < 2.2 and 0.9 < sw < 1.1
    True
    """
    rows = [np.asarray(r, float) for r in table if len(r) >= 2]
    if len(rows) < 2:
        return float("nan"), float("nan"), float("nan")
    ns = np.array([len(r) for r in rows], float)
    means = np.array([r.mean() for r in rows])
    ss_within = sum(float(((r - r.mean()) ** 2).sum()) for r in rows)
    df_within = float(ns.sum() - len(rows))
    ms_within = ss_within / df_within
    grand = float((means * ns).sum() / ns.sum())
    ms_between = float((ns * (means - grand) ** 2).sum() / (len(rows) - 1))
    n0 = float((ns.sum() - (ns**2).sum() / ns.sum()) / (len(rows) - 1))  # unbalanced designs
    var_between = max(0.0, (ms_between - ms_within) / n0)
    k = float(ns.mean())
    denom = var_between + ms_within / k
    return (var_between / denom if denom > 0 else float("nan")), math.sqrt(var_between), math.sqrt(ms_within)


def tau_ceiling(reliability: float) -> float:
    """The Kendall tau that a *perfect* estimator (one that knows every item's true value) is expected
    to reach against a noisy truth of this ``reliability`` (e.g. ICC(1, k) of the per-architecture
    means): the truth correlates with the true values at ``sqrt(reliability)``, and for normal
    variables tau = 2 / pi * arcsin(r). No estimator can be expected to rank better against that
    truth; an observed tau is best read against this ceiling.

    >>> round(tau_ceiling(1.0), 3), round(tau_ceiling(0.55), 3), tau_ceiling(0.0)
    (1.0, 0.532, 0.0)
    """
    if not 0 <= reliability <= 1:
        return float("nan")
    return float(2 / math.pi * math.asin(math.sqrt(reliability)))


def expected_tau(tau: float, reliability: float, new_reliability: float = 1.0) -> float:
    """The Kendall tau an estimator that reached ``tau`` against a truth of ``reliability`` can be
    expected to reach against a truth of ``new_reliability`` (1: the true values), under the model
    of :func:`tau_ceiling` (normal variables, tau = 2 / pi * arcsin(r); the truth's noise lowers r
    by ``sqrt(reliability)``). E.g. what more seeds per architecture would show, with
    :func:`spearman_brown` for the reliability they give. A ``tau`` above what ``reliability``
    allows (:func:`tau_ceiling`) counts as that ceiling.

    >>> round(expected_tau(tau_ceiling(0.8), 0.8), 3), round(expected_tau(0.3, 0.6, 0.6), 3)
    (1.0, 0.3)
    """
    if not (0 < reliability <= 1 and 0 <= new_reliability <= 1 and -1 <= tau <= 1):  # nan fails too
        return float("nan")
    r = math.sin(math.pi * float(tau) / 2) / math.sqrt(reliability)
    r = max(-1.0, min(1.0, r)) * math.sqrt(new_reliability)
    return float(2 / math.pi * math.asin(r))


def bootstrap_mean_ci(d: Sequence[float], *, n_boot: int = 10000, seed: int = 0,
                      level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``d``."""
    d = np.asarray(d, float)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), (int(n_boot), len(d)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def difference_of_means(a: Sequence[float], b: Sequence[float], *, n_boot: int = 10000, n_perm: int = 10000,
                        seed: int = 0, level: float = 0.95) -> tuple[float, float, float, float]:
    """Do the values ``a`` tend to exceed the values ``b`` (two independent samples, e.g. the truth of
    the architectures two search settings chose)? ``mean(a) - mean(b)``, its percentile interval over
    bootstrap resamples of each sample separately, and the one-sided permutation p-value of "not
    greater" (labels shuffled: ``(1 + #{permuted difference >= observed}) / (1 + n_perm)``).

    >>> d, lo, hi, p = difference_of_means([5, 6, 7, 8], [1, 2, 3, 4], n_boot=500, n_perm=2000)
    >>> d, lo > 0, p < 0.05  # 1 of the 70 splits of 8 values into 4 + 4 is as extreme
    (4.0, True, True)
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"difference_of_means needs two non-empty samples, got {len(a)} and {len(b)}")
    obs = float(a.mean() - b.mean())
    rng = np.random.default_rng(seed)
    boot = (a[rng.integers(0, len(a), (int(n_boot), len(a)))].mean(axis=1)
            - b[rng.integers(0, len(b), (int(n_boot), len(b)))].mean(axis=1))
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    both = np.concatenate([a, b])
    hits = 0
    for _ in range(int(n_perm)):
        x = rng.permutation(both)
        hits += bool(x[:len(a)].mean() - x[len(a):].mean() >= obs - 1e-12)
    return obs, float(lo), float(hi), (1 + hits) / (1 + n_perm)


def wilcoxon_signed_rank(d: Sequence[float]) -> tuple[float, float]:
    """One-sided Wilcoxon signed-rank test that the differences ``d`` tend to be positive.

    Returns ``(W+, p)``: the sum of the ranks of |d| over positive ``d`` (zeros dropped, ties
    averaged) and the exact p-value ``P(W+ >= observed)`` under the null (all 2^n sign patterns,
    n <= 20), or the normal approximation with tie correction for larger n.

    >>> wilcoxon_signed_rank([1.0, 2.0, 3.0, 4.0, 5.0])
    (15.0, 0.03125)
    """
    d = np.asarray([v for v in d if v != 0], float)
    n = len(d)
    if n == 0:
        return 0.0, 1.0
    ranks = average_ranks(np.abs(d))
    w = float(ranks[d > 0].sum())
    if n <= 20:
        twice = np.rint(2 * ranks).astype(np.int64)  # average ranks are multiples of 1/2
        dist = {0: 1}
        for r in twice:
            nxt: dict[int, int] = {}
            for s, c in dist.items():
                nxt[s] = nxt.get(s, 0) + c
                nxt[s + int(r)] = nxt.get(s + int(r), 0) + c
            dist = nxt
        obs = int(round(2 * w))
        return w, float(sum(c for s, c in dist.items() if s >= obs) / 2**n)
    mean = n * (n + 1) / 4
    _, counts = np.unique(np.abs(d), return_counts=True)
    var = n * (n + 1) * (2 * n + 1) / 24 - float(np.sum(counts**3 - counts)) / 48
    z = (w - mean - 0.5) / math.sqrt(var)  # continuity correction
    return w, float(0.5 * math.erfc(z / math.sqrt(2)))


def op_marginals(archs: Sequence[Sequence[int]], values: Sequence[float], n_choices: Sequence[int]) -> list[list[float]]:
    """Per layer and choice, the mean of ``values`` over the architectures that use that choice minus
    the mean over all (the choice's marginal effect; ``nan`` where none uses it). With ``values`` the
    ranks of a pool's fitnesses (:func:`average_ranks`), it is per-op rank scoring: an architecture's
    score is the sum of its choices' marginals. :func:`op_effects` adds intervals.

    >>> op_marginals([(0, 1), (1, 1), (1, 0)], [1.0, 2.0, 3.0], [2, 3])
    [[-1.0, 0.5], [1.0, -0.5, nan]]
    """
    a = np.asarray(archs, dtype=np.int64)
    v = np.asarray(values, float)
    if a.ndim != 2 or len(a) != len(v):
        raise ValueError("archs must be a list of equal-length architectures, one per value")
    out = []
    for layer, n in enumerate(n_choices):
        row = []
        for c in range(int(n)):
            use = a[:, layer] == c
            row.append(float(v[use].mean() - v.mean()) if use.any() else float("nan"))
        out.append(row)
    return out


def op_effects(archs: Sequence[Sequence[int]], values: Sequence[float], n_choices: Sequence[int], *,
               n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> list[list[dict[str, float]]]:
    """Per layer and choice, the mean of ``values`` over the architectures that use that choice minus
    the mean over all (the choice's marginal effect), with a percentile bootstrap interval
    (architectures resampled) and the count; ``nan`` where no architecture uses the choice.

    >>> eff = op_effects([(0,), (0,), (1,), (1,)], [1.0, 1.0, 3.0, 3.0], [2], n_boot=100)
    >>> [round(e["effect"], 2) for e in eff[0]], [e["n"] for e in eff[0]]
    ([-1.0, 1.0], [2, 2])
    """
    effects = op_marginals(archs, values, n_choices)
    a = np.asarray(archs, dtype=np.int64)
    v = np.asarray(values, float)
    rng = np.random.default_rng(seed)
    boot = rng.integers(0, len(v), (int(n_boot), len(v)))
    out = []
    for layer, n in enumerate(n_choices):
        row = []
        for c in range(int(n)):
            use = a[:, layer] == c
            if not use.any():
                row.append({"effect": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0})
                continue
            eff = effects[layer][c]
            bu, bv = use[boot], v[boot]
            counts = bu.sum(axis=1)
            ok = counts > 0
            be = (np.where(bu, bv, 0).sum(axis=1)[ok] / counts[ok]) - bv[ok].mean(axis=1)
            lo, hi = np.quantile(be, [(1 - level) / 2, (1 + level) / 2]) if len(be) else (np.nan, np.nan)
            row.append({"effect": eff, "lo": float(lo), "hi": float(hi), "n": int(use.sum())})
        out.append(row)
    return out
