"""Tests for pytest_lmms.stats.

Three kinds of evidence:

- reference checks: every SE, interval and p-value equals what scipy or statsmodels
  computes for the same seeded data (to 1e-6 relative), so the formulas are not re-derived
  here;
- seeded coverage simulations: 95% intervals cover the true value about 95% of the time,
  also for proportions near 0 and 1 (the Agresti-Coull interval), and ignoring clusters on
  clustered data demonstrably does not (so these tests fail if the clustering is dropped);
- one test per documented edge case.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import scipy.special
import scipy.stats
import statsmodels.api as sm
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from pytest_lmms.stats import Comparison, bootstrap, compare, estimate, holm
from pytest_lmms.types import Estimate

REL = 1e-6  # agreement required with scipy / statsmodels
LEVELS = [0.9, 0.95, 0.99]


def approx(expected: float | np.floating[Any]) -> Any:
    return pytest.approx(expected, rel=REL, abs=1e-12)


def interval_approx(expected: float | np.floating[Any]) -> Any:
    return pytest.approx(expected, rel=1e-9, abs=1e-12)


def as_runs(a: np.ndarray, b: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
    ids = [f"doc-{i}" for i in range(len(a))]
    return dict(zip(ids, a.tolist(), strict=True)), dict(zip(ids, b.tolist(), strict=True))


def clustered_binary(
    rng: np.random.Generator, n_clusters: int, size: int, mean: float, concentration: float
) -> tuple[np.ndarray, np.ndarray]:
    """Binary scores whose success rate varies by cluster: p_g ~ Beta with the given mean.

    The intra-cluster correlation is 1 / (concentration + 1).
    """
    p_cluster = rng.beta(mean * concentration, (1 - mean) * concentration, size=n_clusters)
    groups = np.repeat(np.arange(n_clusters), size)
    scores = (rng.random(n_clusters * size) < p_cluster[groups]).astype(float)
    return scores, groups


def covered(intervals: Sequence[Estimate | Comparison], truth: float) -> float:
    return float(np.mean([item.ci_low <= truth <= item.ci_high for item in intervals]))


def cluster_fit(y: np.ndarray, groups: np.ndarray) -> Any:
    # use_t=True makes statsmodels use t with G - 1 df (its df_resid_inference) for the
    # cluster covariance; its default (use_t=False) would use the normal distribution.
    return sm.OLS(y, np.ones((len(y), 1))).fit(cov_type="cluster", cov_kwds={"groups": groups}, use_t=True)


# --------------------------------------------------------------------------------------
# Reference checks against scipy / statsmodels
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 7, 50, 500])
@pytest.mark.parametrize("level", LEVELS)
def test_estimate_matches_scipy(n: int, level: float) -> None:
    rng = np.random.default_rng(n)
    scores = rng.normal(0.4, 0.3, size=n)
    result = estimate(scores, level=level)

    sem = scipy.stats.sem(scores)
    low, high = scipy.stats.t.interval(level, n - 1, loc=np.mean(scores), scale=sem)
    assert result.value == approx(np.mean(scores))
    assert result.se == approx(sem)
    assert (result.ci_low, result.ci_high) == (approx(low), approx(high))
    assert (result.n, result.n_clusters, result.method, result.level) == (n, None, "t", level)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("level", LEVELS)
def test_clustered_estimate_matches_statsmodels(seed: int, level: float) -> None:
    rng = np.random.default_rng(seed)
    n_clusters = int(rng.integers(3, 40))
    sizes = rng.integers(1, 9, size=n_clusters)  # unbalanced, some singletons
    groups = np.repeat(np.arange(n_clusters), sizes)
    y = rng.normal(size=n_clusters)[groups] + rng.normal(size=len(groups))
    labels = [f"image-{g}" for g in rng.permutation(n_clusters)[groups]]  # arbitrary ids

    result = estimate(y, clusters=labels, level=level)

    fit = cluster_fit(y, groups)
    assert fit.df_resid_inference == n_clusters - 1  # like with like: t with G - 1 df
    low, high = fit.conf_int(alpha=1 - level)[0]
    assert result.value == approx(fit.params[0])
    assert result.se == approx(fit.bse[0])
    assert (result.ci_low, result.ci_high) == (approx(low), approx(high))
    assert (result.n, result.n_clusters, result.method) == (len(y), n_clusters, "cluster-t")


def test_singleton_clusters_reduce_to_the_independent_estimate() -> None:
    scores = np.random.default_rng(3).random(40)
    independent = estimate(scores)
    clustered = estimate(scores, clusters=list(range(40)))
    assert clustered.se == approx(independent.se)
    assert (clustered.ci_low, clustered.ci_high) == (
        approx(independent.ci_low),
        approx(independent.ci_high),
    )


@pytest.mark.parametrize("n", [2, 10, 300])
@pytest.mark.parametrize("level", LEVELS)
def test_compare_matches_ttest_rel(n: int, level: float) -> None:
    rng = np.random.default_rng(100 + n)
    difficulty = rng.normal(size=n)
    a = difficulty + rng.normal(0.1, 0.5, size=n)
    b = difficulty + rng.normal(0.0, 0.5, size=n)
    result = compare(*as_runs(a, b), level=level)

    test = scipy.stats.ttest_rel(a, b)
    interval = test.confidence_interval(confidence_level=level)
    assert result.diff == approx(np.mean(a - b))
    assert result.se == approx(np.mean(a - b) / test.statistic)
    assert result.p_value == approx(test.pvalue)
    assert (result.ci_low, result.ci_high) == (approx(interval.low), approx(interval.high))
    assert (result.n, result.n_clusters, result.method) == (n, None, "paired-t")


@pytest.mark.parametrize("seed", range(3))
def test_clustered_compare_matches_statsmodels(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    groups = np.repeat(np.arange(25), rng.integers(1, 6, size=25))
    n = len(groups)
    a = rng.normal(size=25)[groups] + rng.normal(size=n)
    b = rng.normal(size=n)
    runs = as_runs(a, b)
    clusters = {doc_id: int(g) for doc_id, g in zip(runs[0], groups, strict=True)}
    result = compare(*runs, clusters=clusters)

    fit = cluster_fit(a - b, groups)
    low, high = fit.conf_int(alpha=0.05)[0]
    assert result.diff == approx(fit.params[0])
    assert result.se == approx(fit.bse[0])
    assert result.p_value == approx(fit.pvalues[0])
    assert (result.ci_low, result.ci_high) == (approx(low), approx(high))
    assert (result.n_clusters, result.method) == (25, "paired-cluster-t")


@pytest.mark.parametrize("seed", range(6))
def test_holm_matches_statsmodels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 30))
    p = rng.random(m) ** 3  # many small p-values
    p[rng.random(m) < 0.2] = 1.0
    if m > 2:
        p[1] = p[0]  # a tie
    adjusted = holm(p.tolist())
    expected = multipletests(p, method="holm")[1]
    assert adjusted == [approx(x) for x in expected]
    assert all(isinstance(x, float) for x in adjusted)


@pytest.mark.parametrize(("k", "n"), [(0, 80), (80, 80), (1, 2), (3, 20), (17, 20), (250, 500), (499, 500)])
@pytest.mark.parametrize("level", LEVELS)
def test_proportion_estimate_is_statsmodels_agresti_coull(k: int, n: int, level: float) -> None:
    scores = np.r_[np.ones(k), np.zeros(n - k)]
    result = estimate(scores, level=level)

    low, high = proportion_confint(k, n, alpha=1 - level, method="agresti_coull")
    assert (result.ci_low, result.ci_high) == (interval_approx(low), interval_approx(high))
    assert result.se == approx(scipy.stats.sem(scores))
    assert (result.value, result.method, result.n_clusters) == (approx(k / n), "agresti-coull", None)


def test_zero_right_out_of_80_is_not_a_certainty() -> None:
    # The offline quick start's 0/80: a t interval said [0, 0]; 80 samples cannot say that.
    result = estimate([0.0] * 80)
    assert (result.value, result.se, result.ci_low) == (0.0, 0.0, 0.0)
    assert result.ci_high == interval_approx(proportion_confint(0, 80, method="agresti_coull")[1])
    assert result.ci_high == pytest.approx(0.0549, abs=1e-4)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("level", LEVELS)
def test_clustered_proportion_is_agresti_coull_on_the_effective_sample_size(seed: int, level: float) -> None:
    rng = np.random.default_rng(300 + seed)
    n_clusters = int(rng.integers(3, 40))
    groups = np.repeat(np.arange(n_clusters), rng.integers(1, 9, size=n_clusters))
    scores = (rng.random(len(groups)) < rng.beta(1.0, 2.0, size=n_clusters)[groups]).astype(float)
    n = len(scores)

    result = estimate(scores, clusters=[f"q{g}" for g in groups], level=level)

    # deff = (cluster-robust SE / iid SE)^2 from statsmodels and scipy, floored at 1;
    # the G - 1 df t quantile in place of z: statsmodels' interval at the level whose
    # normal quantile is that t quantile.
    deff = max((cluster_fit(scores, groups).bse[0] / scipy.stats.sem(scores)) ** 2, 1.0)
    t = scipy.stats.t.ppf(0.5 + level / 2, n_clusters - 1)
    size = n / deff
    alpha = 2 * scipy.stats.norm.sf(t)
    low, high = proportion_confint(np.mean(scores) * size, size, alpha=alpha, method="agresti_coull")
    assert (result.ci_low, result.ci_high) == (interval_approx(low), interval_approx(high))
    assert result.se == approx(cluster_fit(scores, groups).bse[0])  # the SE stays CR1
    assert (result.method, result.n_clusters) == ("agresti-coull-cluster", n_clusters)


def test_clustered_proportion_never_narrower_than_independent() -> None:
    # Negatively correlated clusters (one right, one wrong in each) give deff < 1: floored.
    scores = [1.0, 0.0] * 20
    clustered = estimate(scores, clusters=np.repeat(np.arange(20), 2))
    independent = estimate(scores)
    assert clustered.ci_high - clustered.ci_low >= independent.ci_high - independent.ci_low
    # all equal: deff is 0 / 0, taken as 1 (Korn & Graubard), not a zero-width interval
    zero = estimate([0.0] * 40, clusters=np.repeat(np.arange(10), 4))
    assert zero.ci_low == 0.0 and 0.05 < zero.ci_high < 0.2


def test_integer_cluster_arrays_number_clusters_by_first_appearance() -> None:
    # The vectorized path for integer ids gives the bootstrap the same draws as a list.
    ids = np.array([7, 7, 3, 9, 3, 1, 9, 9])
    values = np.arange(8, dtype=float)
    assert bootstrap(values, np.mean, clusters=ids, seed=2) == bootstrap(
        values, np.mean, clusters=[str(i) for i in ids], seed=2
    )


# --------------------------------------------------------------------------------------
# Coverage simulations (seeded, so deterministic)
# --------------------------------------------------------------------------------------


def test_coverage_independent_bernoulli() -> None:
    rng = np.random.default_rng(2024)
    data = (rng.random((1000, 200)) < 0.7).astype(float)
    assert 0.93 <= covered([estimate(row) for row in data], 0.7) <= 0.97


def test_coverage_clustered_and_naive_undercoverage() -> None:
    # 60 clusters of 5 binary scores, intra-cluster correlation 1/3 (design effect ~2.3).
    rng = np.random.default_rng(7)
    clustered, naive = [], []
    for _ in range(1000):
        scores, groups = clustered_binary(rng, 60, 5, mean=0.7, concentration=2.0)
        clustered.append(estimate(scores, clusters=groups))
        naive.append(estimate(scores))
    assert 0.93 <= covered(clustered, 0.7) <= 0.97
    assert covered(naive, 0.7) < 0.93  # ignoring the clusters is overconfident


def test_coverage_paired_comparison() -> None:
    # Binary scores of two models on shared items of varying difficulty: a_i = 1[z_i + e > c].
    rng = np.random.default_rng(11)
    c_a, c_b = -0.6, -0.3
    truth = scipy.stats.norm.cdf(c_b / math.sqrt(2)) - scipy.stats.norm.cdf(c_a / math.sqrt(2))
    results = []
    for _ in range(1000):
        difficulty = rng.normal(size=200)
        a = (difficulty + rng.normal(size=200) > c_a).astype(float)
        b = (difficulty + rng.normal(size=200) > c_b).astype(float)
        results.append(compare(*as_runs(a, b)))
    assert 0.93 <= covered(results, truth) <= 0.97
    # The p-value and the interval agree: p < 0.05 exactly when 0 is outside the interval.
    assert all((r.p_value < 0.05) == (not r.ci_low <= 0 <= r.ci_high) for r in results)


def test_coverage_clustered_paired_comparison() -> None:
    # Each model has its own per-cluster effect, so the differences are correlated within
    # a cluster: a_i = 1[u_g + v_g + z_i + e_i > c], every term N(0, 1).
    rng = np.random.default_rng(13)
    n_clusters, size = 60, 5
    c_a, c_b = -0.4, 0.0
    truth = scipy.stats.norm.cdf(c_b / 2) - scipy.stats.norm.cdf(c_a / 2)
    groups = np.repeat(np.arange(n_clusters), size)
    ids = [f"doc-{i}" for i in range(len(groups))]
    clusters = dict(zip(ids, groups.tolist(), strict=True))
    clustered, naive = [], []
    for _ in range(1000):
        shared = rng.normal(size=n_clusters)[groups] + rng.normal(size=len(groups))
        a = (shared + rng.normal(size=n_clusters)[groups] + rng.normal(size=len(groups))) > c_a
        b = (shared + rng.normal(size=n_clusters)[groups] + rng.normal(size=len(groups))) > c_b
        runs = as_runs(a.astype(float), b.astype(float))
        clustered.append(compare(*runs, clusters=clusters))
        naive.append(compare(*runs))
    assert 0.93 <= covered(clustered, truth) <= 0.97
    assert covered(naive, truth) < 0.93


def test_coverage_bootstrap_mean() -> None:
    # The percentile interval is slightly too narrow in small samples (it ignores the t
    # correction and the sqrt((n-1)/n) bias of the plug-in SD), and 300 replications have a
    # Monte Carlo SD of ~1.3 points, so the band is 92-97.5% rather than 93-97%.
    rng = np.random.default_rng(5)
    data = (rng.random((300, 200)) < 0.7).astype(float)
    results = [bootstrap(row, np.mean, n_resamples=500, seed=i) for i, row in enumerate(data)]
    assert 0.92 <= covered(results, 0.7) <= 0.975


def test_coverage_cluster_bootstrap_mean() -> None:
    # Same caveats as above, with 60 clusters as the resampling unit.
    rng = np.random.default_rng(17)
    results = []
    for i in range(200):
        scores, groups = clustered_binary(rng, 60, 5, mean=0.7, concentration=2.0)
        results.append(bootstrap(scores, np.mean, clusters=groups, n_resamples=400, seed=i))
    assert 0.92 <= covered(results, 0.7) <= 0.975


BOUNDARY_SIMULATIONS = 20_000  # replications per (p, n, design); Monte Carlo SD <= 0.16 points
CLUSTER_SIZE = 4  # questions per image (or repeats per question): G = 5, 20, 125
CONCENTRATION = 4.0  # Beta concentration of the per-cluster rates: ICC 1 / (4 + 1) = 0.2


def proportion_coverage(p: float, n: int, clustered: bool, rng: np.random.Generator) -> float:
    """Coverage of ``estimate``'s 95% interval over seeded replications of 0/1 scores.

    A replication is summed up by what the estimate depends on (the number right, or the
    sorted numbers right per cluster), so each distinct outcome is estimated once and
    counted as often as it was drawn: every interval comes from ``estimate`` itself.
    """
    # Without clusters one "cluster" of all n scores: the number right is all that counts.
    size = CLUSTER_SIZE if clustered else n
    n_clusters = n // size
    if clustered:
        rates = rng.beta(p * CONCENTRATION, (1 - p) * CONCENTRATION, size=(BOUNDARY_SIMULATIONS, n_clusters))
    else:
        rates = np.full((BOUNDARY_SIMULATIONS, 1), p)
    right = np.sort(rng.binomial(size, rates), axis=1)
    outcomes, counts = np.unique(right, axis=0, return_counts=True)
    groups = np.repeat(np.arange(n_clusters), size)
    hits = 0
    for outcome, count in zip(outcomes, counts, strict=True):
        scores = (np.arange(size) < outcome[:, None]).ravel().astype(float)
        result = estimate(scores, clusters=groups if clustered else None)
        hits += count * (result.ci_low <= p <= result.ci_high)
    return hits / BOUNDARY_SIMULATIONS


@pytest.mark.parametrize("clustered", [False, True], ids=["independent", "clustered"])
@pytest.mark.parametrize("n", [20, 80, 500])
@pytest.mark.parametrize("p", [0.01, 0.05, 0.5])
def test_coverage_of_proportions_near_the_boundary(p: float, n: int, clustered: bool) -> None:
    coverage = proportion_coverage(p, n, clustered, np.random.default_rng([n, int(p * 100), clustered]))
    # (Wilson's score interval covered 92.45% at p = 0.05, n = 20: only when at most 2 of 20
    # were right; the t interval 64%.)
    assert coverage >= 0.93
    if p == 0.5 and (not clustered or n // CLUSTER_SIZE >= 20):
        assert coverage <= 0.97  # away from the boundary and with enough clusters: not loose


@pytest.mark.parametrize("n", [20, 50, 80, 200, 500])
def test_proportion_interval_covers_at_least_93_percent_at_every_p(n: int) -> None:
    # Exact coverage (no simulation): the binomial probability of the counts whose interval
    # holds p, on a grid of 999 values of p. Wilson's score interval fails this near
    # p = 1 / n (85% at n = 20, Brown, Cai & DasGupta 2001, fig. 4).
    intervals = [estimate(np.r_[np.ones(k), np.zeros(n - k)]) for k in range(n + 1)]
    low = np.array([e.ci_low for e in intervals])
    high = np.array([e.ci_high for e in intervals])
    grid = np.linspace(0.001, 0.999, 999)
    counts = np.arange(n + 1)
    coverage = np.array([scipy.stats.binom.pmf(counts, n, p)[(low <= p) & (p <= high)].sum() for p in grid])
    assert coverage.min() >= 0.925  # 0.929 at n = 20, above 0.934 from n = 50
    assert (coverage < 0.93).mean() <= 0.015
    assert 0.95 <= coverage.mean() <= 0.963  # not far wider than asked


def test_t_interval_undercovers_proportions_near_the_boundary() -> None:
    # What the proportion interval fixes: a t interval of 0/1 scores at p = 0.01, n = 80 is
    # [0, 0] whenever none is right (45% of runs), so it covers far below 95%.
    rng = np.random.default_rng(1)
    right = rng.binomial(80, 0.01, size=BOUNDARY_SIMULATIONS)
    sem = np.sqrt(right / 80 * (1 - right / 80) / 79)
    half = scipy.stats.t.ppf(0.975, 79) * sem
    t_covers = np.abs(right / 80 - 0.01) <= half
    assert np.mean(t_covers) < 0.7
    assert proportion_coverage(0.01, 80, False, rng) >= 0.93


# --------------------------------------------------------------------------------------
# estimate: edge cases
# --------------------------------------------------------------------------------------


def test_estimate_rejects_an_empty_sample() -> None:
    with pytest.raises(ValueError, match="empty"):
        estimate([])


def test_estimate_of_one_score_has_undefined_uncertainty() -> None:
    result = estimate([0.25])
    assert result.value == 0.25
    assert math.isnan(result.se) and math.isnan(result.ci_low) and math.isnan(result.ci_high)
    assert (result.n, result.method) == (1, "t")
    assert result.to_json()["se"] is None


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_estimate_rejects_nonfinite_scores_naming_count_and_first_index(bad: float) -> None:
    with pytest.raises(ValueError, match=r"2 of 6 scores .*first at index 3"):
        estimate([1.0, 0.0, 1.0, bad, 0.0, bad])


def test_estimate_rejects_cluster_length_mismatch() -> None:
    with pytest.raises(ValueError, match="3 cluster ids for 4 scores"):
        estimate([1, 0, 1, 1], clusters=["a", "a", "b"])


@pytest.mark.parametrize("missing", [None, math.nan, np.float64("nan")])
def test_estimate_rejects_a_missing_cluster_id_naming_the_index(missing: Any) -> None:
    with pytest.raises(ValueError, match="missing cluster id .* index 2"):
        estimate([1, 0, 1, 1], clusters=["a", "a", missing, "b"])


def test_estimate_with_a_single_cluster_has_undefined_uncertainty() -> None:
    result = estimate([1, 0, 1, 1], clusters=["img"] * 4)
    assert result.value == 0.75
    assert math.isnan(result.se) and math.isnan(result.ci_low) and math.isnan(result.ci_high)
    assert (result.method, result.n_clusters, result.n) == ("agresti-coull-cluster", 1, 4)
    graded = estimate([1, 0.5, 1, 1], clusters=["img"] * 4)
    assert math.isnan(graded.ci_low) and graded.method == "cluster-t"


@pytest.mark.parametrize("clusters", [None, ["a", "a", "b", "c", "c"]])
def test_estimate_of_equal_graded_scores_has_zero_width_interval(clusters: list[str] | None) -> None:
    # Correct, not a failure: with no observed variability there is nothing to propagate.
    result = estimate([0.5] * 5, clusters=clusters)
    assert (result.value, result.se, result.ci_low, result.ci_high) == (0.5, 0.0, 0.5, 0.5)


def test_estimate_accepts_bool_and_int_scores() -> None:
    assert estimate([True, False, True, True]).value == 0.75
    assert estimate(np.array([1, 0, 0, 1])).value == 0.5


def test_estimate_rejects_two_dimensional_scores() -> None:
    with pytest.raises(ValueError, match="one-dimensional"):
        estimate(np.ones((3, 2)))


@pytest.mark.parametrize("level", [0.0, 1.0, 95.0, -0.5])
def test_every_function_rejects_a_level_outside_zero_one(level: float) -> None:
    with pytest.raises(ValueError, match="level"):
        estimate([0.0, 1.0], level=level)
    with pytest.raises(ValueError, match="level"):
        bootstrap([0.0, 1.0], np.mean, level=level)
    with pytest.raises(ValueError, match="level"):
        compare({"x": 1.0}, {"x": 0.0}, level=level)


def test_level_changes_the_interval_width() -> None:
    scores = np.random.default_rng(0).random(30)
    widths = [estimate(scores, level=lv).ci_high - estimate(scores, level=lv).ci_low for lv in LEVELS]
    assert widths == sorted(widths)
    assert estimate(scores, level=0.9).level == 0.9


def test_importing_stats_does_not_import_scipy() -> None:
    code = "import sys, pytest_lmms.stats; print('scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------------------
# compare: edge cases
# --------------------------------------------------------------------------------------


def test_compare_names_missing_and_extra_ids_with_counts() -> None:
    a = {f"d{i}": 1.0 for i in range(10)}
    b = {f"d{i}": 0.0 for i in range(3, 12)}
    with pytest.raises(ValueError) as info:
        compare(a, b)
    message = str(info.value)
    assert "3 ids only in a: 'd0', 'd1', 'd2'" in message
    assert "2 ids only in b: 'd10', 'd11'" in message


def test_compare_names_at_most_five_ids() -> None:
    a = {f"d{i}": 1.0 for i in range(20)}
    with pytest.raises(ValueError, match=r"20 ids only in a: 'd0', 'd1', 'd2', 'd3', 'd4', \.\.\."):
        compare(a, {})


def test_compare_rejects_empty_runs() -> None:
    with pytest.raises(ValueError, match="empty"):
        compare({}, {})


def test_compare_pairs_by_id_not_by_order() -> None:
    a = {"x": 1.0, "y": 0.0, "z": 1.0}
    b = {"z": 1.0, "x": 0.0, "y": 0.0}  # same ids, another order
    assert compare(a, b).diff == approx(1 / 3)


def test_compare_rejects_nan_scores_naming_the_sample() -> None:
    a = {"x": 1.0, "y": 0.0, "z": 1.0}
    b = {"x": 1.0, "y": math.nan, "z": math.nan}
    with pytest.raises(ValueError, match=r"2 of 3 scores in b .* sample id 'y'"):
        compare(a, b)


def test_compare_of_one_sample_has_undefined_uncertainty() -> None:
    result = compare({"x": 1.0}, {"x": 0.0})
    assert result.diff == 1.0
    assert all(math.isnan(v) for v in (result.se, result.ci_low, result.ci_high, result.p_value))
    assert result.to_json()["p_value"] is None


def test_compare_of_identical_runs_is_a_zero_difference_with_p_one() -> None:
    a = {"x": 1.0, "y": 0.0, "z": 1.0}
    result = compare(a, dict(a))
    assert (result.diff, result.se, result.ci_low, result.ci_high) == (0.0, 0.0, 0.0, 0.0)
    assert result.p_value == 1.0


def test_compare_of_a_constant_nonzero_difference_has_p_zero() -> None:
    result = compare({"x": 1.0, "y": 1.0}, {"x": 0.0, "y": 0.0})
    assert (result.diff, result.se, result.p_value) == (1.0, 0.0, 0.0)


def test_compare_rejects_samples_without_a_cluster() -> None:
    a = {"x": 1.0, "y": 0.0, "z": 1.0}
    with pytest.raises(ValueError, match=r"1 compared sample ids have no cluster id: 'z'"):
        compare(a, a, clusters={"x": "g1", "y": "g2"})


def test_compare_rejects_a_none_cluster_naming_the_sample() -> None:
    a = {"x": 1.0, "y": 0.0, "z": 1.0}
    with pytest.raises(ValueError, match="missing cluster id .* sample id 'y'"):
        compare(a, a, clusters={"x": "g1", "y": None, "z": "g2"})


def test_compare_ignores_cluster_ids_of_samples_not_compared() -> None:
    a = {"x": 1.0, "y": 0.0, "z": 1.0, "w": 1.0}
    b = {"x": 0.0, "y": 0.0, "z": 1.0, "w": 0.0}
    clusters = {"x": 1, "y": 1, "z": 2, "w": 3, "unused": 4}
    result = compare(a, b, clusters=clusters)
    assert (result.n, result.n_clusters) == (4, 3)


def test_compare_with_a_single_cluster_has_undefined_uncertainty() -> None:
    a = {"x": 1.0, "y": 0.0, "z": 1.0}
    b = {"x": 0.0, "y": 0.0, "z": 1.0}
    result = compare(a, b, clusters={"x": 1, "y": 1, "z": 1})
    assert math.isnan(result.se) and math.isnan(result.p_value)
    assert (result.method, result.n_clusters) == ("paired-cluster-t", 1)


def test_comparison_to_json_round_trips_plain_values() -> None:
    result = compare(*as_runs(np.array([1.0, 0.0, 1.0, 1.0]), np.array([0.0, 0.0, 1.0, 0.0])))
    data = result.to_json()
    assert data == {
        "diff": result.diff,
        "se": result.se,
        "ci_low": result.ci_low,
        "ci_high": result.ci_high,
        "p_value": result.p_value,
        "n": 4,
        "n_clusters": None,
        "method": "paired-t",
        "level": 0.95,
    }


# --------------------------------------------------------------------------------------
# holm: edge cases
# --------------------------------------------------------------------------------------


def test_holm_keeps_order_is_monotone_and_capped() -> None:
    p = [0.04, 0.01, 0.5, 0.03]
    adjusted = holm(p)
    assert adjusted == [approx(0.09), approx(0.04), approx(0.5), approx(0.09)]
    by_raw = [adjusted[i] for i in np.argsort(p)]
    assert by_raw == sorted(by_raw)
    assert holm([0.6, 0.7]) == [1.0, 1.0]


def test_holm_of_nothing_is_nothing() -> None:
    assert holm([]) == []


@pytest.mark.parametrize("bad", [math.nan, -0.1, 1.5])
def test_holm_rejects_invalid_p_values(bad: float) -> None:
    with pytest.raises(ValueError, match="index 1"):
        holm([0.1, bad, 0.2])


# --------------------------------------------------------------------------------------
# bootstrap
# --------------------------------------------------------------------------------------


def test_bootstrap_is_reproducible_for_a_seed() -> None:
    scores = np.random.default_rng(1).random(50)
    assert bootstrap(scores, np.mean, seed=3) == bootstrap(scores, np.mean, seed=3)
    assert bootstrap(scores, np.mean, seed=3) != bootstrap(scores, np.mean, seed=4)


def test_bootstrap_reports_the_statistic_of_the_original_data() -> None:
    scores = np.random.default_rng(2).random(50)
    result = bootstrap(scores, np.median, n_resamples=200)
    assert result.value == np.median(scores)
    assert result.ci_low <= result.value <= result.ci_high
    assert (result.n, result.n_clusters, result.method) == (50, None, "bootstrap")


def test_bootstrap_of_a_list_matches_the_array() -> None:
    scores = np.random.default_rng(4).random(30)
    from_list = bootstrap(scores.tolist(), lambda v: float(np.mean(v)), n_resamples=100)
    from_array = bootstrap(scores, np.mean, n_resamples=100)
    assert from_list.ci_low == approx(from_array.ci_low)
    assert from_list.ci_high == approx(from_array.ci_high)


def test_bootstrap_is_on_the_statistic_scale() -> None:
    # A sum (as in MME): the interval is around the sum, and its SE scales with sqrt(n) * SD.
    scores = np.random.default_rng(6).random(400)
    result = bootstrap(scores, np.sum, n_resamples=2000)
    assert result.value == approx(np.sum(scores))
    assert result.ci_low < result.value < result.ci_high
    assert result.se == pytest.approx(math.sqrt(400) * np.std(scores), rel=0.1)


def test_bootstrap_se_of_the_mean_is_close_to_the_analytic_se() -> None:
    scores = (np.random.default_rng(8).random(300) < 0.6).astype(float)
    result = bootstrap(scores, np.mean, n_resamples=2000)
    assert result.se == pytest.approx(scipy.stats.sem(scores), rel=0.1)


def test_cluster_bootstrap_resamples_whole_clusters_concatenated() -> None:
    sizes = {"a": 1, "b": 3, "c": 2, "d": 4}
    values = [(cluster, member) for cluster, size in sizes.items() for member in range(size)]
    values = values[::2] + values[1::2]  # clusters need not be contiguous in the input
    seen: list[Sequence[tuple[str, int]]] = []

    def record(resample: Sequence[tuple[str, int]]) -> float:
        seen.append(resample)
        return float(len(resample))

    result = bootstrap(values, record, clusters=[c for c, _ in values], n_resamples=50)
    assert (result.method, result.n_clusters, result.n) == ("cluster-bootstrap", 4, 10)
    members = {c: [v for v in values if v[0] == c] for c in sizes}  # in input order
    for resample in seen[1:]:  # seen[0] is the original data
        position, drawn = 0, 0
        while position < len(resample):
            cluster = resample[position][0]
            block = list(resample[position : position + sizes[cluster]])
            assert block == members[cluster]
            position += sizes[cluster]
            drawn += 1
        assert drawn == 4  # G clusters drawn per resample
    # Different resamples draw different clusters, so the resample size varies.
    assert len(Counter(len(r) for r in seen)) > 1


def test_cluster_bootstrap_is_wider_than_naive_on_clustered_data() -> None:
    rng = np.random.default_rng(9)
    scores, groups = clustered_binary(rng, 60, 5, mean=0.7, concentration=2.0)
    naive = bootstrap(scores, np.mean, n_resamples=1000)
    clustered = bootstrap(scores, np.mean, clusters=groups, n_resamples=1000)
    assert clustered.se > 1.2 * naive.se


def test_bootstrap_rejects_an_empty_sample_and_too_few_resamples() -> None:
    with pytest.raises(ValueError, match="empty"):
        bootstrap([], np.mean)
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap([1.0, 2.0], np.mean, n_resamples=1)


def test_bootstrap_of_one_value_or_one_cluster_has_undefined_uncertainty() -> None:
    single = bootstrap([0.3], np.mean)
    assert single.value == 0.3 and math.isnan(single.se) and math.isnan(single.ci_low)
    one_cluster = bootstrap([0.0, 1.0, 1.0], np.mean, clusters=["g"] * 3)
    assert math.isnan(one_cluster.se) and math.isnan(one_cluster.ci_high)
    assert (one_cluster.method, one_cluster.n_clusters) == ("cluster-bootstrap", 1)


def test_bootstrap_validates_clusters_like_estimate() -> None:
    with pytest.raises(ValueError, match="2 cluster ids for 3 scores"):
        bootstrap([0.0, 1.0, 1.0], np.mean, clusters=["a", "b"])
    with pytest.raises(ValueError, match="missing cluster id .* index 0"):
        bootstrap([0.0, 1.0, 1.0], np.mean, clusters=[None, "a", "b"])


def test_bootstrap_rejects_a_statistic_undefined_on_some_resamples() -> None:
    values = np.array([0.0] * 9 + [1.0])

    def inverse_of_sum(v: Sequence[float]) -> float:
        total = float(np.sum(v))
        return 1 / total if total else math.inf

    with pytest.raises(ValueError, match=r"on \d+ of 500 resamples"):
        bootstrap(values, inverse_of_sum, n_resamples=500)
    with pytest.raises(ValueError, match="original data"):
        bootstrap(np.zeros(5), inverse_of_sum)


def test_bootstrap_of_equal_values_has_zero_width_interval() -> None:
    result = bootstrap([1.0] * 8, np.mean, n_resamples=100)
    assert (result.value, result.se, result.ci_low, result.ci_high) == (1.0, 0.0, 1.0, 1.0)


def test_cluster_copies_splits_each_drawn_copy_of_a_cluster() -> None:
    from pytest_lmms.stats import cluster_copies

    rows = [("a", 1), ("a", 2), ("a", 1), ("a", 2), ("b", 3), ("c", 4), ("c", 5)]
    copies = cluster_copies(rows, lambda r: r[0], lambda r: r[1])
    assert copies == [[("a", 1), ("a", 2)], [("a", 1), ("a", 2)], [("b", 3)], [("c", 4), ("c", 5)]]


def test_a_proportion_gets_an_interval_inside_zero_and_one() -> None:
    scores = [1.0] * 9 + [0.0]
    est = estimate(scores)
    # the t interval would reach past 1: 0.9 + t(0.975, 9) * SE
    assert 0.9 + scipy.stats.t.ppf(0.975, 9) * scipy.stats.sem(scores) > 1.0
    low, high = proportion_confint(9, 10, method="agresti_coull")
    assert (est.ci_low, est.ci_high, est.method) == (
        interval_approx(low),
        interval_approx(high),
        "agresti-coull",
    )
    assert est.ci_high <= 1.0
    assert est.se == approx(scipy.stats.sem(scores))  # the SE is the plain one
    # scores that are not all 0/1 keep the whole t interval
    graded = estimate([1.0] * 9 + [0.5])
    assert graded.ci_high > 1.0 and graded.method == "t"


# --------------------------------------------------------------------------------------
# The t and normal distributions computed without scipy (a run's summary imports no scipy)
# --------------------------------------------------------------------------------------

DFS = [1, 2, 3, 4, 7, 10, 29, 99, 100, 101, 1_000, 99_999, 1_000_000, 0.7, 2.5]


@pytest.mark.parametrize("df", DFS)
def test_t_quantiles_equal_scipy(df: float) -> None:
    from scipy import special

    from pytest_lmms.stats import _t_quantile

    for level in (0.5, 0.8, *LEVELS, 0.999, 1 - 1e-6):
        expected = float(special.stdtrit(df, 0.5 + level / 2))
        assert _t_quantile(df, level) == pytest.approx(expected, rel=1e-10), level


@pytest.mark.parametrize("df", DFS)
def test_t_p_values_equal_scipy(df: float) -> None:
    from scipy import special

    from pytest_lmms.stats import _two_sided_p

    for t in (0.0, 0.01, 0.3, 1.0, 1.96, 3.0, 10.0, 40.0, 1e3):
        expected = float(2.0 * special.stdtr(df, -t))
        assert _two_sided_p(t, 1.0, df) == pytest.approx(expected, rel=1e-10, abs=1e-300), t


def test_normal_quantiles_equal_scipy() -> None:
    from scipy import special

    from pytest_lmms.stats import _normal_quantile, _normal_upper_quantile

    for level in (1e-6, 0.5, *LEVELS, 0.999, 1 - 1e-12):
        assert _normal_quantile(level) == pytest.approx(float(special.ndtri(0.5 + level / 2)), rel=1e-14)
    for q in (1e-300, 1e-20, 1e-5, 0.3, 0.7, 1 - 1e-10):
        assert _normal_upper_quantile(q) == pytest.approx(-float(special.ndtri(q)), rel=1e-13)


def test_the_gamma_ratio_series_is_exact_where_it_is_used() -> None:
    mpmath = pytest.importorskip("mpmath")
    from pytest_lmms.stats import _log_gamma_half_ratio

    mpmath.mp.dps = 40
    for a in (99.9, 100.0, 1e3, 5e4, 1e7):
        exact = mpmath.loggamma(mpmath.mpf(a) + 0.5) - mpmath.loggamma(a)
        assert _log_gamma_half_ratio(a) == pytest.approx(float(exact), rel=1e-15)


# --------------------------------------------------------------------------------------
# pass^k
# --------------------------------------------------------------------------------------


def test_pass_hat_k_on_hand_computed_cases() -> None:
    from pytest_lmms.stats import pass_hat_k

    # 4 tries: 4 right -> 1; 3 right -> C(3,2)/C(4,2) = 3/6; 2 right -> 1/6; 1 or 0 -> 0
    result = pass_hat_k([4, 3, 2, 1, 0], 4, k=2)
    assert result.value == approx((1 + 0.5 + 1 / 6 + 0 + 0) / 5)
    # k = 3 of 5 tries with 4 right: C(4,3)/C(5,3) = 4/10
    assert pass_hat_k([4], [5], k=3).value == approx(0.4)
    # k = 1 is the success rate; k = n is "all n right"
    assert pass_hat_k([1, 2, 3], 4, k=1).value == approx(6 / 12)
    assert pass_hat_k([4, 3, 4], 4, k=4).value == approx(2 / 3)
    # unbiased: averaged over every outcome of n = 4 tries at p = 0.7, the estimate is p^2
    p, n = 0.7, 4
    expected = sum(scipy.stats.binom.pmf(c, n, p) * math.comb(c, 2) / math.comb(n, 2) for c in range(n + 1))
    assert expected == approx(p**2)


def test_pass_hat_k_names_bad_input() -> None:
    from pytest_lmms.stats import pass_hat_k

    with pytest.raises(ValueError, match="task 1 was tried 2 times, fewer than k = 3"):
        pass_hat_k([3, 1], [4, 2], k=3)
    with pytest.raises(ValueError, match="task 0 has 5 successes in 4 tries"):
        pass_hat_k([5], 4, k=1)
    with pytest.raises(ValueError, match="k must be >= 1"):
        pass_hat_k([1], 4, k=0)
    with pytest.raises(ValueError, match="2 success counts for 3 trial counts"):
        pass_hat_k([1, 2], [4, 4, 4], k=1)


@pytest.mark.parametrize(("k", "tasks"), [(1, 40), (2, 40), (4, 40), (2, 150)])
def test_pass_hat_k_interval_covers_the_population_value(k: int, tasks: int) -> None:
    # Tasks' success rates from Beta(2, 1.5), each task tried 8 times; the estimand is
    # E[p^k] = B(2 + k, 1.5) / B(2, 1.5). Seeded; Monte Carlo SD about 0.5 points.
    from pytest_lmms.stats import pass_hat_k

    rng = np.random.default_rng([k, tasks])
    a, b, n, replications = 2.0, 1.5, 8, 2000
    truth = math.exp(scipy.special.betaln(a + k, b) - scipy.special.betaln(a, b))
    covered = 0
    for _ in range(replications):
        successes = rng.binomial(n, rng.beta(a, b, size=tasks))
        result = pass_hat_k(successes.tolist(), n, k=k)
        covered += result.ci_low <= truth <= result.ci_high
    assert 0.93 <= covered / replications <= 0.97
