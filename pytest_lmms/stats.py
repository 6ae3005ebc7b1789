"""Uncertainty for benchmark scores: means with (cluster-robust) intervals, the bootstrap,
paired comparisons between two runs, and Holm's correction for many comparisons.

Every function validates its input loudly rather than guessing: an empty sample, a NaN
score, a missing cluster id or a mismatch between paired runs raises ``ValueError`` with
the count and the first offending position, never a silently smaller sample.

Conventions shared by every function:

- ``level`` is the two-sided confidence level, strictly between 0 and 1.
- With one observation (or one cluster) the standard error is undefined: it is returned
  as NaN, and so are the interval bounds (and the p-value), never as 0.
- When every score is equal the standard error is exactly 0. For a score that is not a
  proportion the t interval then has zero width: there is no observed variability to
  propagate. A proportion (every score 0 or 1) gets the Agresti-Coull interval instead,
  which stays honest at the boundary: 0 right out of 80 is [0, 0.055], not [0, 0].
- Intervals and p-values use the t and normal distributions computed here (equal to
  scipy's to 1e-10); scipy is imported only by ``power`` and ``sample_size``, so neither
  importing this module nor a run's summary pays for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from pytest_lmms.types import Estimate, json_number

__all__ = [
    "Comparison",
    "Stability",
    "bootstrap",
    "cluster_copies",
    "compare",
    "design_effect",
    "estimate",
    "holm",
    "pass_hat_k",
    "power",
    "sample_size",
    "stability",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

_MAX_NAMED = 5


@dataclass(frozen=True, slots=True)
class Comparison:
    """A paired difference ``a - b`` with its standard error, interval and p-value."""

    diff: float
    se: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    n_clusters: int | None = None
    method: str = "paired-t"
    level: float = 0.95

    def to_json(self) -> dict[str, Any]:
        return {
            "diff": json_number(self.diff),
            "se": json_number(self.se),
            "ci_low": json_number(self.ci_low),
            "ci_high": json_number(self.ci_high),
            "p_value": json_number(self.p_value),
            "n": self.n,
            "n_clusters": self.n_clusters,
            "method": self.method,
            "level": self.level,
        }


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def estimate(
    scores: Sequence[float] | np.ndarray,
    clusters: Sequence[Hashable] | np.ndarray | None = None,
    level: float = 0.95,
) -> Estimate:
    """The mean of ``scores`` with its standard error and a confidence interval.

    Without ``clusters`` the samples are taken as independent: SE = sample SD (ddof=1) /
    sqrt(n). With ``clusters`` (one hashable id per score; samples sharing an id, such as
    questions about the same image or video, may be correlated) the SE is the
    cluster-robust CR1 SE of the mean — the one statsmodels reports for OLS on a constant
    with ``cov_type="cluster"`` — and ``n_clusters`` is G, the number of clusters.

    The interval depends on the scores:

    - a proportion (every score 0 or 1): the Agresti-Coull interval, the same as
      ``statsmodels.stats.proportion.proportion_confint(k, n, method="agresti_coull")``
      (method ``"agresti-coull"``). With clusters, the same interval on the effective
      sample size n / deff, deff = (CR1 SE / independent SE)^2 floored at 1, with the t
      quantile on G - 1 degrees of freedom in place of the normal one (method
      ``"agresti-coull-cluster"``). Unlike a t interval it keeps its coverage near 0 and 1
      and never leaves [0, 1]; unlike Wilson's score interval, whose coverage dips to 85%
      next to p = 1 / n and to 92% at p = 0.05 with n = 20, its coverage stays at or above
      93% at every p for n >= 20 (a little wide, 96%, on average at n = 20; nominal from
      n = 500 on), which is the safer error for a harness that gates on intervals;
    - any other score: a t interval with n - 1 degrees of freedom (method ``"t"``), or with
      clusters G - 1 (method ``"cluster-t"``).

    The SE reported is the same either way (the interval of a proportion is not symmetric
    around the value, so it is not value ± quantile × SE).

    Edge cases:

    - no scores: ``ValueError``;
    - one score (or a single cluster): the value, with NaN SE and interval;
    - a NaN or infinite score: ``ValueError`` naming how many and the first index;
    - ``clusters`` of another length than ``scores``: ``ValueError``;
    - a missing cluster id (None or NaN): ``ValueError`` naming the first index;
    - all scores equal: SE 0; a zero-width t interval, or for all-0 / all-1 scores an
      Agresti-Coull interval reaching into (0, 1) (with clusters the design effect, 0 / 0, is taken as 1).
    """
    _check_level(level)
    values = _as_scores(scores)
    if clusters is None:
        mean, se, df = _independent_mean_se(values)
        n_clusters = None
    else:
        codes, n_clusters = _cluster_codes(clusters, len(values))
        mean, se, df = _cluster_mean_se(values, codes, n_clusters)
    if not np.all((values == 0.0) | (values == 1.0)):
        method = "t" if clusters is None else "cluster-t"
        low, high = _t_interval(mean, se, df, level)
    elif clusters is None:
        method = "agresti-coull"
        low, high = _agresti_coull_interval(mean, len(values), _normal_quantile(level), se)
    else:
        method = "agresti-coull-cluster"
        low, high = _cluster_proportion_interval(values, mean, se, df, level)
    return Estimate(
        value=mean,
        se=se,
        ci_low=low,
        ci_high=high,
        n=len(values),
        n_clusters=n_clusters,
        method=method,
        level=level,
    )


def bootstrap(
    values: Sequence[Any] | np.ndarray,
    statistic: Callable[[Sequence[Any]], float],
    clusters: Sequence[Hashable] | np.ndarray | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Estimate:
    """A percentile bootstrap interval for any ``statistic`` of ``values``.

    For aggregates that are not a mean (sums, circular accuracy, corpus-level WER, ...).
    ``value`` is ``statistic(values)`` on the original data, ``se`` is the SD (ddof=1) of
    the bootstrap distribution, and the interval is its ``(1 - level) / 2`` and
    ``(1 + level) / 2`` quantiles, all on the statistic's own scale.

    Each resample draws ``len(values)`` items with replacement (method ``"bootstrap"``).
    With ``clusters`` it draws G whole clusters with replacement and concatenates their
    values (method ``"cluster-bootstrap"``), so correlation within a cluster is kept.
    A resample is passed to ``statistic`` as a numpy array when ``values`` is one, as a
    list otherwise. The generator is ``numpy.random.default_rng(seed)``: the same inputs
    and seed always give the same interval.

    Edge cases:

    - no values, or ``n_resamples < 2``: ``ValueError``;
    - ``clusters`` of another length, or a missing cluster id (None or NaN): ``ValueError``
      as in :func:`estimate`;
    - one value (or a single cluster): every resample is the original data, so there is
      no information about variability; the value comes with NaN SE and interval;
    - ``statistic`` returning NaN or infinity, on the data or on some resamples:
      ``ValueError`` with the count (resamples are never silently dropped);
    - a statistic constant over resamples: SE 0 and a zero-width interval.
    """
    _check_level(level)
    if n_resamples < 2:
        raise ValueError(f"n_resamples must be at least 2, got {n_resamples}")
    n = len(values)
    if n == 0:
        raise ValueError("cannot bootstrap an empty sample")

    # An array is passed as it came: statistics such as np.mean take it as a sequence.
    value = float(statistic(cast(Sequence[Any], values)))
    if not math.isfinite(value):
        raise ValueError(f"statistic returned {value} on the original data")

    if clusters is None:
        method, n_clusters, n_units = "bootstrap", None, n
    else:
        codes, n_clusters = _cluster_codes(clusters, n)
        method, n_units = "cluster-bootstrap", n_clusters
    if n_units < 2:
        nan = math.nan
        return Estimate(value, nan, nan, nan, n, n_clusters, method, level)

    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_units, size=(n_resamples, n_units))
    if clusters is None:
        index_rows: Iterable[IntArray] = draws
    else:
        index_rows = _ClusterIndexer(codes, n_units).rows(draws)

    take = _taker(values)
    distribution = np.fromiter(
        (statistic(take(rows)) for rows in index_rows), dtype=np.float64, count=n_resamples
    )
    bad = int(np.count_nonzero(~np.isfinite(distribution)))
    if bad:
        first = int(np.flatnonzero(~np.isfinite(distribution))[0])
        raise ValueError(
            f"statistic returned NaN or infinity on {bad} of {n_resamples} resamples "
            f"(first: resample {first}); make it defined on every resample"
        )
    # Percentile interval: Efron & Tibshirani (1993), An Introduction to the Bootstrap, ch. 13;
    # cluster (block) resampling: Davison & Hinkley (1997), Bootstrap Methods, sec. 3.8.
    alpha = 1.0 - level
    low, high = np.quantile(distribution, [alpha / 2, 1 - alpha / 2])
    se = float(np.std(distribution, ddof=1))
    return Estimate(value, se, float(low), float(high), n, n_clusters, method, level)


def compare(
    a: Mapping[str, float],
    b: Mapping[str, float],
    clusters: Mapping[str, Hashable] | None = None,
    level: float = 0.95,
) -> Comparison:
    """The paired difference in mean score, ``a - b``, over the same sample ids.

    ``a`` and ``b`` map sample id -> score and must hold exactly the same ids (a missing or
    extra id raises ``ValueError`` naming up to five of each and the counts): a paired
    comparison on different samples is meaningless.

    Without ``clusters``: the paired t test on the per-sample differences (identical to
    ``scipy.stats.ttest_rel``), a t interval with n - 1 degrees of freedom, method
    ``"paired-t"``. With ``clusters`` (sample id -> cluster id; ids beyond those compared
    are ignored): the cluster-robust CR1 SE of the mean difference, t with G - 1 degrees of
    freedom, method ``"paired-cluster-t"``. ``p_value`` is two-sided, for a zero difference.

    Edge cases:

    - no common samples: ``ValueError``; NaN or infinite scores: ``ValueError`` naming how
      many and the first sample id; a sample id without a cluster, or whose cluster id is
      None or NaN: ``ValueError``;
    - one sample (or a single cluster): NaN SE, interval and p-value;
    - every difference equal (SE exactly 0): a zero-width interval, and p-value 1.0 when
      the difference is 0 (scipy returns NaN for that 0/0) or 0.0 when it is not.
    """
    _check_level(level)
    ids = _paired_ids(a, b)
    diffs = _paired_scores(a, ids, "a") - _paired_scores(b, ids, "b")

    if clusters is None:
        mean, se, df = _independent_mean_se(diffs)
        method, n_clusters = "paired-t", None
    else:
        missing = [key for key in ids if key not in clusters]
        if missing:
            raise ValueError(f"{len(missing)} compared sample ids have no cluster id: {_name_some(missing)}")
        codes, n_clusters = _cluster_codes([clusters[key] for key in ids], len(ids), ids)
        mean, se, df = _cluster_mean_se(diffs, codes, n_clusters)
        method = "paired-cluster-t"
    low, high = _t_interval(mean, se, df, level)
    return Comparison(
        diff=mean,
        se=se,
        ci_low=low,
        ci_high=high,
        p_value=_two_sided_p(mean, se, df),
        n=len(ids),
        n_clusters=n_clusters,
        method=method,
        level=level,
    )


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given.

    Same as ``statsmodels.stats.multitest.multipletests(p, method="holm")[1]``: monotone in
    the raw p-values and capped at 1. Rejecting where the adjusted p-value is below alpha
    controls the family-wise error rate at alpha. A p-value that is NaN or outside [0, 1]
    raises ``ValueError``; an empty input gives an empty list.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_values must be one-dimensional, got shape {p.shape}")
    invalid = ~((p >= 0.0) & (p <= 1.0))  # NaN compares False: invalid too
    if invalid.any():
        first = int(np.flatnonzero(invalid)[0])
        raise ValueError(
            f"{int(invalid.sum())} p-values are NaN or outside [0, 1] "
            f"(first: index {first}, value {p[first]})"
        )
    m = len(p)
    if m == 0:
        return []
    # Holm (1979), "A simple sequentially rejective multiple test procedure", Scand. J. Stat.
    order = np.argsort(p, kind="stable")
    stepped = (m - np.arange(m)) * p[order]
    adjusted_sorted = np.minimum(np.maximum.accumulate(stepped), 1.0)
    adjusted = np.empty(m, dtype=np.float64)
    adjusted[order] = adjusted_sorted
    return [float(x) for x in adjusted]


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be strictly between 0 and 1, got {level}")


def _as_scores(scores: Sequence[float] | np.ndarray) -> FloatArray:
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"scores must be one-dimensional, got shape {values.shape}")
    if len(values) == 0:
        raise ValueError("cannot estimate from an empty sample (n == 0)")
    bad = ~np.isfinite(values)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{int(bad.sum())} of {len(values)} scores are NaN or infinite "
            f"(first at index {first}); drop or fix them explicitly"
        )
    return values


def _is_missing(cluster_id: Hashable) -> bool:
    return cluster_id is None or (isinstance(cluster_id, float) and math.isnan(cluster_id))


def _cluster_codes(
    clusters: Sequence[Hashable] | np.ndarray, n: int, labels: Sequence[str] | None = None
) -> tuple[IntArray, int]:
    """Integer codes 0..G-1 for the cluster ids (in order of first appearance), and G."""
    if len(clusters) != n:
        raise ValueError(f"got {len(clusters)} cluster ids for {n} scores; they must match")
    if isinstance(clusters, np.ndarray) and clusters.dtype.kind in "iub":
        return _integer_cluster_codes(clusters)
    index: dict[Hashable, int] = {}
    codes = np.empty(n, dtype=np.intp)
    for i, cluster_id in enumerate(clusters):
        if _is_missing(cluster_id):
            where = f"sample id {labels[i]!r}" if labels is not None else f"index {i}"
            raise ValueError(f"missing cluster id (None or NaN) at {where}")
        codes[i] = index.setdefault(cluster_id, len(index))
    return codes, len(index)


def _integer_cluster_codes(clusters: np.ndarray) -> tuple[IntArray, int]:
    """The codes of :func:`_cluster_codes` for an integer array (none can be missing),
    without a Python loop: simulations and large runs pass their cluster ids so."""
    if clusters.ndim != 1:
        raise ValueError(f"clusters must be one-dimensional, got shape {clusters.shape}")
    _, first, inverse = np.unique(clusters, return_index=True, return_inverse=True)
    # np.unique numbers the ids in sorted order; renumber them by first appearance
    rank = np.empty(len(first), dtype=np.intp)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.reshape(-1)].astype(np.intp), len(first)


def _independent_mean_se(values: FloatArray) -> tuple[float, float, float]:
    """Mean, SE and degrees of freedom for independent observations."""
    n = len(values)
    mean = float(np.mean(values))
    if n < 2:
        return mean, math.nan, math.nan
    # Student's t: SE = s / sqrt(n), n - 1 df (as scipy.stats.sem and scipy.stats.ttest_1samp).
    se = float(np.std(values, ddof=1) / math.sqrt(n))
    return mean, se, float(n - 1)


def _cluster_mean_se(values: FloatArray, codes: IntArray, n_clusters: int) -> tuple[float, float, float]:
    """Mean, cluster-robust (CR1) SE and degrees of freedom G - 1."""
    mean = float(np.mean(values))
    if n_clusters < 2:
        return mean, math.nan, math.nan
    n = len(values)
    cluster_sums = np.bincount(codes, weights=values - mean, minlength=n_clusters)
    # CR1 sandwich for OLS on a constant, c = G/(G-1) * (n-1)/(n-k) with k = 1, G - 1 df:
    # Cameron & Miller (2015), "A Practitioner's Guide to Cluster-Robust Inference", JHR.
    correction = n_clusters / (n_clusters - 1)
    se = math.sqrt(correction * float(np.sum(cluster_sums**2))) / n
    return mean, se, float(n_clusters - 1)


def _t_interval(center: float, se: float, df: float, level: float) -> tuple[float, float]:
    if math.isnan(se) or math.isnan(df):
        return math.nan, math.nan
    quantile = _t_quantile(df, level)
    return center - quantile * se, center + quantile * se


def _normal_quantile(level: float) -> float:
    return _normal_upper_quantile(1.0 - (0.5 + level / 2))  # as scipy's ndtri(0.5 + level / 2)


def _agresti_coull_interval(share: float, n: float, quantile: float, se: float) -> tuple[float, float]:
    """The Agresti-Coull interval for a share of n (n may be an effective, fractional size)."""
    if math.isnan(se):  # one observation or one cluster: undefined, as every other interval
        return math.nan, math.nan
    # Agresti & Coull (1998), "Approximate is better than 'exact' for interval estimation of
    # binomial proportions", Am. Stat. 52: a Wald interval after adding q^2 / 2 successes
    # and q^2 / 2 failures; Brown, Cai & DasGupta (2001), Statistical Science 16, eq. (5).
    n_adjusted = n + quantile * quantile
    center = (share * n + quantile * quantile / 2) / n_adjusted
    half = quantile * math.sqrt(center * (1 - center) / n_adjusted)
    # unlike Wilson's, the bounds can leave [0, 1] near the boundary: clipped, as statsmodels
    return max(center - half, 0.0), min(center + half, 1.0)


def _cluster_proportion_interval(
    values: FloatArray, mean: float, cluster_se: float, df: float, level: float
) -> tuple[float, float]:
    """The Agresti-Coull interval on the clusters' effective sample size, with G - 1 df."""
    if math.isnan(cluster_se):
        return math.nan, math.nan
    n = len(values)
    _, independent_se, _ = _independent_mean_se(values)
    # Effective sample size n / deff with deff = Var_cluster / Var_independent of the mean,
    # floored at 1 (so clustering never narrows the interval) and taken as 1 when both are
    # 0 (all scores equal, as Korn & Graubard do for p = 0). Design-effect intervals for
    # proportions: Korn & Graubard (1998), "Confidence intervals for proportions with small
    # expected number of positive counts estimated from survey data", Survey Methodology
    # 24; score-type intervals on n / deff: Dean & Pagano (2015), "Evaluating confidence
    # interval methods for binomial proportions in clustered surveys", J. Surv. Stat.
    # Methodol. 3. The t quantile on G - 1 df in place of z is Korn & Graubard's
    # degrees-of-freedom adjustment, with z for their t on n - 1 df, and matches the G - 1
    # df of the cluster t interval: without it, 20 clusters of 4 at p = 0.05 (ICC 0.2)
    # cover 92% instead of 95% (tests/unit/test_stats.py).
    deff = (cluster_se / independent_se) ** 2 if independent_se > 0 else 1.0
    n_effective = n / max(deff, 1.0)
    quantile = _t_quantile(df, level)
    return _agresti_coull_interval(mean, n_effective, quantile, cluster_se)


def _two_sided_p(diff: float, se: float, df: float) -> float:
    if math.isnan(se) or math.isnan(df):
        return math.nan
    if se == 0.0:
        return 1.0 if diff == 0.0 else 0.0
    return 2.0 * _t_upper_tail(df, abs(diff / se))


# --------------------------------------------------------------------------------------
# Student t and normal distributions without scipy: a run's summary needs a quantile or a
# p-value per task, and importing scipy.special for them cost 0.3 s of every run's end.
# Agreement with scipy.special (stdtrit, stdtr, ndtri) to 1e-10 relative is tested in
# tests/unit/test_stats.py.
# --------------------------------------------------------------------------------------


def _normal_upper_quantile(q: float) -> float:
    """z with P(Z > z) = q for a standard normal Z, 0 < q < 1."""
    if q > 0.5:
        return -_normal_upper_quantile(1.0 - q)
    # start: Abramowitz & Stegun 26.2.23 (error < 4.5e-4), then Newton on the exact tail
    # 0.5 * erfc(z / sqrt 2), which converges to full precision in two or three steps
    t = math.sqrt(-2.0 * math.log(q))
    z = t - (2.515517 + t * (0.802853 + t * 0.010328)) / (
        1.0 + t * (1.432788 + t * (0.189269 + t * 0.001308))
    )
    for _ in range(50):
        density = math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
        if density == 0.0:
            break
        step = (0.5 * math.erfc(z / math.sqrt(2.0)) - q) / density
        z += step
        if abs(step) <= 1e-15 * max(abs(z), 1.0):
            break
    return z


def _t_quantile(df: float, level: float) -> float:
    """The two-sided ``level`` quantile of Student's t with ``df`` degrees of freedom."""
    # 1 - (0.5 + level / 2) rather than (1 - level) / 2: the probability scipy's
    # stdtrit(df, 0.5 + level / 2) inverts, so that intervals stay what they were
    return _t_upper_quantile(df, 1.0 - (0.5 + level / 2))


def _t_upper_tail(df: float, t: float) -> float:
    """P(T > t) for t >= 0: half the regularized incomplete beta I_x(df/2, 1/2), with
    x = df / (df + t^2) (Abramowitz & Stegun 26.7.1 and 26.5.27)."""
    if t == 0.0:
        return 0.5
    t2 = t * t
    return 0.5 * _incomplete_beta(df / 2, 0.5, df / (df + t2), t2 / (df + t2))


def _t_density(df: float, t: float) -> float:
    log_norm = _log_gamma_half_ratio(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_norm - (df + 1) / 2 * math.log1p(t * t / df))


def _log_gamma_half_ratio(a: float) -> float:
    """log Gamma(a + 1/2) - log Gamma(a), without the cancellation of two large lgammas."""
    if a < 100:
        return math.lgamma(a + 0.5) - math.lgamma(a)
    # the difference of the two Stirling series; the next term, 17 / (14336 a^7), is below
    # 1e-16 from a = 100 on (checked against mpmath in tests/unit/test_stats.py)
    return 0.5 * math.log(a) - 1 / (8 * a) + 1 / (192 * a**3) - 1 / (640 * a**5)


def _t_upper_quantile(df: float, q: float) -> float:
    """t >= 0 with P(T > t) = q, 0 < q <= 0.5: Newton on log P(T > t), kept inside a
    bracket that bisection narrows when a step would leave it."""
    if q >= 0.5:
        return 0.0
    z = _normal_upper_quantile(q)
    # start: the Cornish-Fisher expansion of t in z (Abramowitz & Stegun 26.7.5)
    t = z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df * df)
    low, high = 0.0, math.inf
    log_q = math.log(q)
    for _ in range(200):
        tail = _t_upper_tail(df, t)
        if tail > q:
            low = t
        else:
            high = t
        gap = math.log(tail) - log_q if tail > 0.0 else -math.inf
        density = _t_density(df, t)
        step = gap * tail / density if density > 0.0 and math.isfinite(gap) else math.nan
        candidate = t + step
        if not low < candidate < high:  # bisect (doubling while no upper bound is known)
            candidate = 2.0 * t + 1.0 if math.isinf(high) else (low + high) / 2
        if abs(candidate - t) <= 1e-14 * max(t, 1e-300):
            return candidate
        t = candidate
    return t


def _incomplete_beta(a: float, b: float, x: float, y: float) -> float:
    """The regularized incomplete beta I_x(a, b), with y = 1 - x given exactly."""
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast only below its mean
        return 1.0 - _incomplete_beta(b, a, y, x)
    log_x = math.log1p(-y) if y < 0.5 else math.log(x)  # log of a value near 1, exactly
    log_y = math.log1p(-x) if x < 0.5 else math.log(y)
    log_front = a * log_x + b * log_y - _log_beta(a, b)
    return math.exp(log_front) / a / _beta_continued_fraction(a, b, x)


def _log_beta(a: float, b: float) -> float:
    if b == 0.5:  # the t distribution's case, exact for a large df
        return math.lgamma(0.5) - _log_gamma_half_ratio(a)
    if a == 0.5:
        return math.lgamma(0.5) - _log_gamma_half_ratio(b)
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """1 + d1 / (1 + d2 / (1 + ...)), the continued fraction of I_x(a, b) (Abramowitz &
    Stegun 26.5.8), evaluated with the modified Lentz method."""
    tiny = 1e-300
    value, c, d = 1.0, 1.0, 0.0
    for j in range(1, 100_000):
        m = j // 2
        if j % 2:
            term = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        else:
            term = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 + term * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + term / c
        c = c if abs(c) > tiny else tiny
        value *= c * d
        if abs(c * d - 1.0) < 1e-16:
            break
    return value


def _paired_ids(a: Mapping[str, float], b: Mapping[str, float]) -> list[str]:
    only_a = [key for key in a if key not in b]
    only_b = [key for key in b if key not in a]
    if only_a or only_b:
        parts = []
        if only_a:
            parts.append(f"{len(only_a)} ids only in a: {_name_some(only_a)}")
        if only_b:
            parts.append(f"{len(only_b)} ids only in b: {_name_some(only_b)}")
        raise ValueError("a paired comparison needs the same sample ids in both runs; " + "; ".join(parts))
    ids = list(a)
    if not ids:
        raise ValueError("cannot compare two empty runs (n == 0)")
    return ids


def _paired_scores(run: Mapping[str, float], ids: Sequence[str], name: str) -> FloatArray:
    scores = np.array([run[key] for key in ids], dtype=np.float64)
    bad = ~np.isfinite(scores)
    if bad.any():
        first = ids[int(np.flatnonzero(bad)[0])]
        raise ValueError(
            f"{int(bad.sum())} of {len(ids)} scores in {name} are NaN or infinite "
            f"(first: sample id {first!r}); drop or fix them explicitly"
        )
    return scores


def _name_some(keys: Sequence[Hashable]) -> str:
    shown = ", ".join(repr(key) for key in keys[:_MAX_NAMED])
    return shown + (", ..." if len(keys) > _MAX_NAMED else "")


def _taker(values: Sequence[Any] | np.ndarray) -> Callable[[IntArray], Sequence[Any]]:
    """How to build a resample from an index array: fancy indexing for arrays, else a list."""
    if isinstance(values, np.ndarray):
        return values.__getitem__
    return lambda rows: [values[i] for i in rows]


class _ClusterIndexer:
    """Turns rows of drawn cluster codes into the concatenated sample indices."""

    def __init__(self, codes: IntArray, n_clusters: int) -> None:
        self.by_cluster = np.argsort(codes, kind="stable")
        self.sizes = np.bincount(codes, minlength=n_clusters)
        self.starts = np.concatenate(([0], np.cumsum(self.sizes)[:-1]))

    def rows(self, draws: IntArray) -> Iterator[IntArray]:
        for drawn in draws:
            sizes = self.sizes[drawn]
            ends = np.cumsum(sizes)
            # Position j of the resample belongs to drawn cluster k: its offset inside that
            # cluster is j - (ends[k] - sizes[k]); add the cluster's start in by_cluster.
            offsets = np.repeat(self.starts[drawn] - (ends - sizes), sizes)
            yield self.by_cluster[offsets + np.arange(int(ends[-1]))]


# --------------------------------------------------------------------------------------
# Power and sample size for paired comparisons
# --------------------------------------------------------------------------------------


def design_effect(cluster_size: float | None = None, icc: float | None = None) -> float:
    """Kish's design effect ``1 + (m - 1) * ICC`` for clusters of size m (1 without clusters)."""
    if cluster_size is None and icc is None:
        return 1.0
    if cluster_size is None or icc is None:
        raise ValueError("cluster_size and icc go together: give both or neither")
    if cluster_size < 1 or not 0.0 <= icc <= 1.0:
        raise ValueError(f"need cluster_size >= 1 and 0 <= icc <= 1, got {cluster_size} and {icc}")
    return 1.0 + (cluster_size - 1.0) * icc


def _difference_sd(sd: float | None, p: float | None, paired_correlation: float | None) -> float:
    """SD of one question's score difference between two models.

    From one model's per-question SD (``sd``, or ``sqrt(p (1 - p))`` for an accuracy p,
    both models alike): ``Var(a - b) = 2 sd^2 (1 - rho)``, rho the correlation of the two
    models' scores on the same question (0 when unknown: no credit for pairing).
    """
    if (sd is None) == (p is None):
        raise ValueError("give exactly one of sd (score SD) or p (accuracy)")
    if p is not None:
        if not 0.0 < p < 1.0:
            raise ValueError(f"p must be strictly between 0 and 1, got {p}")
        sd = math.sqrt(p * (1.0 - p))
    assert sd is not None
    if sd <= 0:
        raise ValueError(f"sd must be positive, got {sd}")
    rho = 0.0 if paired_correlation is None else paired_correlation
    if not -1.0 <= rho < 1.0:
        raise ValueError(f"paired_correlation must be in [-1, 1), got {rho}")
    return sd * math.sqrt(2.0 * (1.0 - rho))


def power(
    n: float,
    effect: float,
    sd: float | None = None,
    p: float | None = None,
    alpha: float = 0.05,
    paired_correlation: float | None = None,
    cluster_size: float | None = None,
    icc: float | None = None,
) -> float:
    """Power of the two-sided paired t test to detect a difference ``effect`` with n questions.

    The test is on n / DE effective questions (DE the design effect of clustered questions)
    with standardized effect ``effect / SD(a - b)``; power is the mass of the noncentral t
    beyond both critical values, as in ``statsmodels.stats.power.TTestPower``.
    """
    from scipy import stats as scipy_stats

    if effect == 0:
        raise ValueError("effect must be non-zero")
    n_effective = n / design_effect(cluster_size, icc)
    if n_effective < 2:
        raise ValueError(f"need at least 2 effective questions, got {n_effective:g}")
    d = abs(effect) / _difference_sd(sd, p, paired_correlation)
    df = n_effective - 1
    critical = scipy_stats.t.ppf(1 - alpha / 2, df)
    noncentrality = d * math.sqrt(n_effective)
    # Two-sided power of the one-sample t test: Cohen (1988), ch. 2; noncentral t tails.
    return float(
        scipy_stats.nct.sf(critical, df, noncentrality) + scipy_stats.nct.cdf(-critical, df, noncentrality)
    )


def sample_size(
    effect: float,
    sd: float | None = None,
    p: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,  # noqa: A002 - the statistical name
    paired_correlation: float | None = None,
    cluster_size: float | None = None,
    icc: float | None = None,
) -> int:
    """The smallest number of questions whose :func:`power` reaches ``power``."""
    if not 0.0 < power < 1.0 or not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha and power must be in (0, 1), got {alpha} and {power}")
    kwargs = dict(
        sd=sd, p=p, alpha=alpha, paired_correlation=paired_correlation, cluster_size=cluster_size, icc=icc
    )
    minimum = math.ceil(2 * design_effect(cluster_size, icc))

    def enough(n: int) -> bool:
        return _power(n, effect, **kwargs) >= power  # type: ignore[arg-type]

    high = max(minimum, 2)
    while not enough(high):
        high *= 2
        if high > 10**12:
            raise ValueError("effect too small: no sample size below 10^12 reaches that power")
    low = max(minimum, high // 2)
    while low < high:
        middle = (low + high) // 2
        if enough(middle):
            high = middle
        else:
            low = middle + 1
    return high


_power = power


# --------------------------------------------------------------------------------------
# Stability over repeated samples of the same question
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stability:
    """How stable a model's answers are over k samples of each question."""

    expected_accuracy: float  # EA
    consensus_accuracy: float  # CA
    internal_variance: float  # IV
    consistency_rate: float  # CR
    n_questions: int
    k: int

    def to_json(self) -> dict[str, Any]:
        return {
            "expected_accuracy": self.expected_accuracy,
            "consensus_accuracy": self.consensus_accuracy,
            "internal_variance": self.internal_variance,
            "consistency_rate": self.consistency_rate,
            "n_questions": self.n_questions,
            "k": self.k,
        }


def pass_hat_k(
    successes: Sequence[int],
    trials: Sequence[int] | int,
    k: int,
    clusters: Sequence[Hashable] | None = None,
    level: float = 0.95,
) -> Estimate:
    """pass^k: the probability that all of k tries of a task succeed, averaged over tasks.

    A task tried n times with c successes contributes C(c, k) / C(n, k), the unbiased
    estimate of p^k from n tries (Yao et al. 2024, "tau-bench", eq. 1; the pass@k estimator of
    Chen et al. 2021 counts the complement); the tasks' mean is unbiased for the mean of
    p_i^k. The interval is ``estimate``'s over the per-task values (a t interval, or with
    ``clusters`` the cluster-robust one; tasks whose values are all 0 or 1 get the proportion
    interval). k = 1 is the mean success rate.

    Edge cases: k < 1, a task with fewer than k tries, c < 0 or c > n, or lengths that
    differ raise ``ValueError`` naming the first offending task index.
    """
    counts = [int(c) for c in successes]
    tries = [int(trials)] * len(counts) if isinstance(trials, int) else [int(n) for n in trials]
    if k < 1:
        raise ValueError(f"pass^k: k must be >= 1, got {k}")
    if len(tries) != len(counts):
        raise ValueError(f"pass^k: {len(counts)} success counts for {len(tries)} trial counts")
    values = []
    for index, (c, n) in enumerate(zip(counts, tries, strict=True)):
        if n < k:
            raise ValueError(f"pass^k: task {index} was tried {n} times, fewer than k = {k}")
        if not 0 <= c <= n:
            raise ValueError(f"pass^k: task {index} has {c} successes in {n} tries")
        values.append(math.comb(c, k) / math.comb(n, k))
    return estimate(values, clusters=clusters, level=level)


def stability(
    scores_by_repeat: Mapping[str, Sequence[float]],
    answers_by_repeat: Mapping[str, Sequence[str]] | None = None,
) -> Stability:
    """EA, CA, IV and CR over questions asked k >= 2 times each.

    - expected accuracy: the mean over questions of each question's mean score;
    - consensus accuracy: the mean over questions of the majority answer's score. With
      ``answers_by_repeat`` the majority is the most frequent answer (compare normalized
      answers); on a tie between answers the question scores the mean of the tied
      answers' scores (a 1-1 tie between a right and a wrong answer counts 0.5). Without
      answers it is the median score (the majority of right/wrong, 0.5 on an even split);
    - internal variance: the mean over questions of the variance of its k scores
      (population variance, ddof=0: p (1 - p) for a question right a share p of the time);
    - consistency rate: the share of questions whose k answers (or, without answers, k
      scores) are all the same.

    A question with fewer than 2 samples, a NaN score, or answers that do not line up
    with the scores: ``ValueError`` naming the question. ``k`` reported is the smallest.
    """
    if not scores_by_repeat:
        raise ValueError("no questions")
    ea, ca, iv, consistent = [], [], [], 0
    k_min = None
    for question, raw_scores in scores_by_repeat.items():
        scores = np.asarray(raw_scores, dtype=np.float64)
        if scores.size < 2:
            raise ValueError(f"question {question!r} has {scores.size} sample(s); stability needs k >= 2")
        if not np.all(np.isfinite(scores)):
            raise ValueError(f"question {question!r} has a NaN or infinite score")
        k_min = scores.size if k_min is None else min(k_min, scores.size)
        ea.append(float(scores.mean()))
        iv.append(float(scores.var()))
        if answers_by_repeat is None:
            ca.append(float(np.median(scores)))
            consistent += bool(np.all(scores == scores[0]))
            continue
        answers = list(answers_by_repeat.get(question, ()))
        if len(answers) != scores.size:
            raise ValueError(f"question {question!r}: {len(answers)} answers for {scores.size} scores")
        by_answer: dict[str, list[float]] = {}
        for answer, score in zip(answers, scores, strict=True):
            by_answer.setdefault(answer, []).append(float(score))
        top = max(len(v) for v in by_answer.values())
        tied = [v for v in by_answer.values() if len(v) == top]
        ca.append(float(np.mean([np.mean(v) for v in tied])))
        consistent += len(by_answer) == 1
    n = len(ea)
    return Stability(
        expected_accuracy=float(np.mean(ea)),
        consensus_accuracy=float(np.mean(ca)),
        internal_variance=float(np.mean(iv)),
        consistency_rate=consistent / n,
        n_questions=n,
        k=int(k_min or 0),
    )


def cluster_copies(
    rows: Sequence[Any],
    cluster_of: Callable[[Any], Hashable],
    key_of: Callable[[Any], Hashable],
) -> list[list[Any]]:
    """The rows of each drawn cluster, one list per copy, for statistics over clusters.

    :func:`bootstrap` with clusters hands a statistic the rows of each drawn cluster side
    by side, a cluster drawn k times as k runs. A statistic that groups by cluster id
    (MME's acc+, MMBench's circular accuracy) must count those k copies, not merge them:
    here a new copy starts when the cluster changes or a row's ``key_of`` repeats within
    the current run. The rows of one cluster must be contiguous, as they are in a
    resample and in data sorted by cluster (``Task.aggregate`` sorts them so).
    """
    copies: list[list[Any]] = []
    current: Hashable = object()
    seen: set[Hashable] = set()
    for row in rows:
        cluster, key = cluster_of(row), key_of(row)
        if not copies or cluster != current or key in seen:
            copies.append([])
            current, seen = cluster, set()
        copies[-1].append(row)
        seen.add(key)
    return copies
