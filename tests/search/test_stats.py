"""Rank statistics of autopanoptic.search.stats against brute-force definitions (Hypothesis)."""

from __future__ import annotations

import itertools
import math
from math import comb

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from autopanoptic.search import stats

samples = st.lists(st.tuples(st.integers(0, 5), st.integers(-3, 3)), min_size=3, max_size=14)


def tau_b_by_definition(x, y) -> float:
    conc = disc = tx = ty = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        dx, dy = x[i] - x[j], y[i] - y[j]
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            tx += 1
        elif dy == 0:
            ty += 1
        elif dx * dy > 0:
            conc += 1
        else:
            disc += 1
    den = ((conc + disc + tx) * (conc + disc + ty)) ** 0.5
    return (conc - disc) / den if den else float("nan")


@given(samples)
def test_kendall_tau_b_matches_its_definition_with_ties(pairs):
    x, y = [p[0] for p in pairs], [p[1] for p in pairs]
    want, got = tau_b_by_definition(x, y), stats.kendall_tau(x, y)
    assert (np.isnan(want) and np.isnan(got)) or got == pytest.approx(want, abs=1e-12)


@given(samples)
def test_spearman_is_pearson_of_average_ranks(pairs):
    x, y = [p[0] for p in pairs], [p[1] for p in pairs]
    rx, ry = stats.average_ranks(x), stats.average_ranks(y)
    got = stats.spearman_rho(x, y)
    if rx.std() == 0 or ry.std() == 0:
        assert np.isnan(got)
    else:
        assert got == pytest.approx(np.corrcoef(rx, ry)[0, 1], abs=1e-12)


@given(st.lists(st.integers(-1000, 1000), min_size=2, max_size=12, unique=True))
def test_perfect_and_reversed_orderings_and_monotone_invariance(x):
    y = [3 * v + 1 for v in x]
    assert stats.kendall_tau(x, y) == pytest.approx(1.0)
    assert stats.kendall_tau(x, [-v for v in y]) == pytest.approx(-1.0)
    assert stats.spearman_rho(x, [np.exp(v / 1e3) for v in x]) == pytest.approx(1.0)


@given(samples, samples)
def test_pooled_statistics_use_pairs_within_groups_only(a, b):
    ga = ([p[0] for p in a], [p[1] for p in a])
    gb = ([p[0] + 100 for p in b], [p[1] - 100 for p in b])  # a shift between groups must not matter
    pooled = stats.kendall_tau([ga, gb])
    shifted = stats.kendall_tau([ga, ([v - 100 for v in gb[0]], [v + 100 for v in gb[1]])])
    assert (np.isnan(pooled) and np.isnan(shifted)) or pooled == pytest.approx(shifted)
    assert (np.isnan(stats.kendall_tau([ga])) and np.isnan(stats.kendall_tau(*ga))) or \
        stats.kendall_tau([ga]) == pytest.approx(stats.kendall_tau(*ga))


@settings(max_examples=30)
@given(st.lists(st.integers(-4, 4), min_size=1, max_size=9))
def test_wilcoxon_exact_p_matches_enumeration_of_sign_flips(d):
    w, p = stats.wilcoxon_signed_rank(d)
    nz = [v for v in d if v != 0]
    if not nz:
        assert p == 1.0
        return
    ranks = stats.average_ranks(np.abs(nz))
    assert w == pytest.approx(sum(r for r, v in zip(ranks, nz) if v > 0))
    null = [sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product([0, 1], repeat=len(nz))]
    assert p == pytest.approx(np.mean([v >= w - 1e-9 for v in null]))


def test_wilcoxon_normal_approximation_is_close_to_exact_at_the_switch():
    rng = np.random.default_rng(0)
    d = rng.normal(0.4, 1, 21)
    w, p = stats.wilcoxon_signed_rank(d)
    _, p_exact = stats.wilcoxon_signed_rank(d[:20])
    assert 0 < p < 1 and abs(p - p_exact) < 0.15


def test_reliability_separates_signal_from_noise():
    rng = np.random.default_rng(1)
    signal = rng.normal(0, 1, (200, 1)) + rng.normal(0, 0.5, (200, 3))
    noise = rng.normal(0, 1, (200, 3))
    want = 1 / (1 + 0.25 / 3)  # var_between / (var_between + var_within / k)
    assert stats.split_half_reliability(signal) == pytest.approx(want, abs=0.05)
    rel, sb, sw = stats.mean_reliability(signal)
    assert rel == pytest.approx(want, abs=0.03) and sb == pytest.approx(1, abs=0.15) and sw == pytest.approx(0.5, abs=0.05)
    assert abs(stats.split_half_reliability(noise)) < 0.3 and stats.mean_reliability(noise)[0] < 0.15
    assert np.isnan(stats.split_half_reliability([[1.0], [2.0], [3.0]]))
    uneven = [list(r[: 2 + i % 2]) for i, r in enumerate(signal)]  # 2 or 3 seeds per row
    assert stats.mean_reliability(uneven)[0] == pytest.approx(1 / (1 + 0.25 / 2.5), abs=0.05)


def test_bootstrap_and_permutation_agree_with_what_the_data_say():
    rng = np.random.default_rng(2)
    x = rng.normal(size=30)
    y = x + rng.normal(0, 0.5, 30)
    lo, hi = stats.bootstrap_ci(stats.kendall_tau, x, y, n_boot=500, seed=0)
    assert 0 < lo < stats.kendall_tau(x, y) < hi <= 1
    assert stats.permutation_p(stats.kendall_tau, x, y, n_perm=500, alternative="greater") < 0.01
    z = rng.normal(size=30)
    assert stats.permutation_p(stats.kendall_tau, x, z, n_perm=500) > 0.01
    assert stats.permutation_p(stats.kendall_tau, x, -y, n_perm=200, alternative="greater") > 0.9
    lo, hi = stats.bootstrap_mean_ci([1.0, 2.0, 3.0, 4.0], n_boot=500)
    assert 1.0 <= lo < 2.5 < hi <= 4.0
    with pytest.raises(ValueError):
        stats.kendall_tau([1, 2, 3], [1, 2])


@settings(max_examples=15, deadline=None)
@given(st.floats(0.2, 4.0), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_tau_ceiling_is_what_a_perfect_estimator_reaches_against_a_noisy_truth(sd_between, k, seed):
    """Simulated: true values, a truth that is their mean over k noisy seeds, and an estimator that
    knows the true values. Its tau against the truth averages tau_ceiling(ICC(1, k))."""
    rng = np.random.default_rng(seed)
    n, reps = 40, 150
    taus = []
    for _ in range(reps):
        true = rng.normal(0, sd_between, n)
        truth = true + rng.normal(0, 1, (k, n)).mean(axis=0)
        taus.append(stats.kendall_tau(true, truth))
    icc = sd_between**2 / (sd_between**2 + 1 / k)
    assert abs(float(np.mean(taus)) - stats.tau_ceiling(icc)) < 0.03
    assert stats.tau_ceiling(icc) < 1 and stats.tau_ceiling(icc) > stats.tau_ceiling(icc / 2)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_paired_difference_finds_the_better_estimator_and_is_antisymmetric(seed):
    rng = np.random.default_rng(seed)
    true = rng.normal(0, 1, 30)
    truth = true + rng.normal(0, 0.5, 30)
    sharp = true + rng.normal(0, 0.2, 30)  # knows the truth well
    blunt = true + rng.normal(0, 3.0, 30)  # barely
    d, lo, hi, p = stats.paired_difference(stats.kendall_tau, sharp, blunt, truth, n_boot=300, seed=seed)
    assert d == pytest.approx(stats.kendall_tau(sharp, truth) - stats.kendall_tau(blunt, truth))
    assert lo < hi and d > 0 and p < 0.5
    back = stats.paired_difference(stats.kendall_tau, blunt, sharp, truth, n_boot=300, seed=seed)
    assert back[0] == pytest.approx(-d) and back[1] == pytest.approx(-hi) and back[2] == pytest.approx(-lo)
    same = stats.paired_difference(stats.kendall_tau, sharp, sharp, truth, n_boot=50, seed=seed)
    assert same[:3] == (0.0, 0.0, 0.0) and same[3] == 1.0  # "not better" than itself
    with pytest.raises(ValueError):
        stats.paired_difference(stats.kendall_tau, sharp, blunt[:-1], truth)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 12))
def test_best_of_k_percentile_orders_estimators_by_what_they_know(seed, k):
    rng = np.random.default_rng(seed)
    truth = rng.normal(0, 1, 40)
    perfect = stats.best_of_k_percentile(truth, truth, k, n_draws=600, seed=1)
    noisy = stats.best_of_k_percentile(truth + rng.normal(0, 1, 40), truth, k, n_draws=600, seed=1)
    blind = stats.best_of_k_percentile(np.zeros(40), truth, k, n_draws=600, seed=1)  # ties: a random pick
    backwards = stats.best_of_k_percentile(-truth, truth, k, n_draws=600, seed=1)
    assert perfect[0] >= noisy[0] - 0.02 and noisy[0] > backwards[0] and perfect[0] > blind[0] > backwards[0]
    assert abs(blind[0] - 0.5) < 0.06  # 600 uniform picks: sd of the mean about 0.012
    # a perfect estimator picks the best of k: exactly the expected percentile of the max of k ranks
    n = 40
    expected = sum((r / (n - 1)) * comb(r, k - 1) / comb(n, k) for r in range(k - 1, n))  # P(max has rank r)
    assert perfect[0] == pytest.approx(expected, abs=0.03)
    assert 0 <= perfect[1] <= perfect[0] <= perfect[2] <= 1


def _binomial_range(n: int, q: float, tail: float) -> tuple[int, int]:
    """The smallest and largest counts of Binomial(n, q) outside which each tail holds less than ``tail``
    (a normal approximation fails here: q is often below 1 / n)."""
    pmf = [comb(n, k) * q**k * (1 - q) ** (n - k) for k in range(n + 1)]
    below, lo = 0.0, 0
    while below + pmf[lo] < tail:
        below += pmf[lo]
        lo += 1
    above, hi = 0.0, n
    while above + pmf[hi] < tail:
        above += pmf[hi]
        hi -= 1
    return lo, hi


def test_the_binomial_range_holds_what_it_should():
    assert _binomial_range(300, 1 / 8008, 1e-6)[0] == 0 and 1 <= _binomial_range(300, 1 / 8008, 1e-6)[1] <= 6
    lo, hi = _binomial_range(1000, 0.5, 1e-6)
    assert 400 < lo < 500 < hi < 600 and lo + hi == 1000  # symmetric


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(3, 12), st.integers(3, 12))
def test_difference_of_means_finds_a_shift_and_not_noise(seed, n, m):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0, 1, n), rng.normal(0, 1, m)
    d, lo, hi, p = stats.difference_of_means(a + 10, b, n_boot=300, n_perm=300, seed=seed)
    assert d == pytest.approx(a.mean() + 10 - b.mean()) and lo <= d <= hi and lo > 0
    q = 1 / comb(n + m, n)  # only the observed split of the labels reaches a shift of 10 sd
    # p = (1 + hits) / 301 with hits ~ Binomial(300, q): hits within the binomial's central 1 - 2e-6
    hits = round(p * 301) - 1
    lo_h, hi_h = _binomial_range(300, q, 1e-6)
    assert lo_h <= hits <= hi_h
    back = stats.difference_of_means(b, a + 10, n_boot=300, n_perm=300, seed=seed)
    assert back[0] == pytest.approx(-d) and back[3] > 0.99
    # without a shift, "greater" is found about as often as a level says: p is uniform under the null
    ps = [stats.difference_of_means(rng.normal(0, 1, n), rng.normal(0, 1, m), n_boot=10, n_perm=200, seed=s)[3]
          for s in range(60)]
    assert 0.02 <= np.mean(np.array(ps) < 0.2) <= 0.45
    with pytest.raises(ValueError):
        stats.difference_of_means([], b)


@settings(max_examples=15, deadline=None)
@given(st.floats(0.3, 1.5), st.floats(0.0, 0.9), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_expected_tau_predicts_an_estimators_tau_against_a_more_reliable_truth(sd_between, est_noise, k, seed):
    """Simulated: an estimator (true values plus its own noise) held against a truth averaged over
    k noisy seeds, and against one of 4k seeds: expected_tau carries the first tau to the second."""
    rng = np.random.default_rng(seed)
    n, reps = 40, 150
    few, many = [], []
    for _ in range(reps):
        true = rng.normal(0, sd_between, n)
        est = true + rng.normal(0, est_noise * sd_between + 1e-9, n)
        few.append(stats.kendall_tau(est, true + rng.normal(0, 1, (k, n)).mean(axis=0)))
        many.append(stats.kendall_tau(est, true + rng.normal(0, 1, (4 * k, n)).mean(axis=0)))
    icc = lambda m: sd_between**2 / (sd_between**2 + 1 / m)  # noqa: E731
    # within 0.06 (the largest miss in 300 simulated settings was 0.034); the seeds' own gain is larger
    # than that in 9 of 10 of them, so a function that ignored the reliabilities would fail here
    assert abs(stats.expected_tau(float(np.mean(few)), icc(k), icc(4 * k)) - float(np.mean(many))) < 0.06
    t = 0.5 * stats.tau_ceiling(icc(k))  # a tau this truth allows
    assert stats.expected_tau(t, icc(k), icc(k)) == pytest.approx(t)
    assert stats.expected_tau(t, icc(k), 1.0) >= t - 1e-12
    assert stats.expected_tau(1.0, icc(k), icc(k)) == pytest.approx(stats.tau_ceiling(icc(k)))  # capped
    assert math.isnan(stats.expected_tau(float("nan"), icc(k))) and math.isnan(stats.expected_tau(0.2, 0.0))


@st.composite
def _pool(draw):
    n_choices = draw(st.lists(st.integers(1, 4), min_size=1, max_size=5))
    n = draw(st.integers(2, 30))
    archs = [tuple(draw(st.integers(0, k - 1)) for k in n_choices) for _ in range(n)]
    values = draw(st.lists(st.floats(-100, 100, allow_nan=False), min_size=n, max_size=n))
    return archs, values, n_choices


@given(_pool())
def test_op_marginals_are_centred_per_layer_and_are_op_effects_effects(pool):
    archs, values, n_choices = pool
    m = stats.op_marginals(archs, values, n_choices)
    eff = stats.op_effects(archs, values, n_choices, n_boot=20)
    a = np.asarray(archs)
    for layer, k in enumerate(n_choices):
        counts = [(a[:, layer] == c).sum() for c in range(k)]
        for c in range(k):
            assert math.isnan(m[layer][c]) == (counts[c] == 0)
            assert eff[layer][c]["n"] == counts[c]
            assert (math.isnan(m[layer][c]) and math.isnan(eff[layer][c]["effect"])) or m[layer][c] == eff[layer][c]["effect"]
        # usage-weighted, the marginals of a layer sum to zero: each is a deviation from the pool's mean
        assert sum(n * m[layer][c] for c, n in enumerate(counts) if n) == pytest.approx(0, abs=1e-9 * (1 + max(map(abs, values))) * len(values))


def test_per_op_rank_scoring_recovers_an_additive_landscape():
    """On every architecture of a small space, the marginals of an additive fitness's ranks order the
    architectures as the fitness does (what per-op rank scoring relies on); on a pure interaction they
    are all zero."""
    space = [3, 2, 3]
    archs = list(itertools.product(*(range(k) for k in space)))
    w = [[0.0, 1.0, 2.5], [0.0, 0.7], [0.3, 0.0, 1.9]]
    fit = [sum(w[l][c] for l, c in enumerate(a)) for a in archs]
    m = stats.op_marginals(archs, stats.average_ranks(fit), space)
    score = [sum(m[l][c] for l, c in enumerate(a)) for a in archs]
    assert stats.kendall_tau(score, fit) > 0.9
    xor = [float((a[0] % 2) ^ (a[1] % 2)) for a in itertools.product(range(2), range(2))]
    assert stats.op_marginals(list(itertools.product(range(2), range(2))), xor, [2, 2]) == [[0.0, 0.0], [0.0, 0.0]]
