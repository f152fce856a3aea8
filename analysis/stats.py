"""Statistics for comparing ablation arms over few seeds: pure functions over numpy arrays.

Conventions (rliable-like, but every resampling function takes an explicit
``np.random.Generator`` so the same seed gives the same CI):

- ``x`` is the arm under test, ``y`` the reference arm (``separate``); both ``(n_runs,)``.
- Welch's t-test is the primary test (Colas et al. 2019, "A Hitchhiker's Guide to
  Statistical Comparisons of RL Algorithms"); Mann-Whitney U is the robustness check;
  bootstrap CIs are descriptive (percentile method: with 3-5 seeds BCa is unstable).
- Degenerate input (n < 2, zero variance) gives NaN rather than an exception; callers
  report it through :func:`degenerate_reason`, and :func:`primary_test` says which test
  stands in and why.
- Arms that share seeds are *not* paired: the same seed gives the same initial weights and
  prefill, but the random streams diverge from the first updates on. Every test here treats
  the arms as independent samples.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

from analysis import aggregate

DEFAULT_RESAMPLES = 2000
CONFIDENCE = 0.95
MIN_BOOTSTRAP_N = 5
"""Fewest runs per arm for which a percentile-bootstrap CI is reported: below it the
resamples take so few distinct values that the interval under-covers badly (a simulation in
the tests: at n = 3 the CI of a difference excludes 0 in far more than 5% of null cases)."""
PERMUTATION_RESAMPLES = 99_999
"""Mann-Whitney with ties: up to this many splits of the pooled runs are enumerated (scipy's
permutation test is exact when there are no more distinct splits, e.g. 8 vs 8: 12,870);
beyond, this many splits are drawn from a seeded generator."""

Interval = tuple[float, float]


def _as_1d(values: np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    return array[np.isfinite(array)]


# ----------------------------------------------------------------------------------------------
# Per-run summaries of one learning curve
# ----------------------------------------------------------------------------------------------


def final_performance(
    steps: np.ndarray, values: np.ndarray, total_steps: float | None = None, fraction: float = 0.1
) -> float:
    """Mean of a curve over the last ``fraction`` of training (DESIGN.md section 5).

    Args:
        steps: ``(n_points,)`` env steps at which ``values`` were logged.
        values: ``(n_points,)`` e.g. ``eval/return``.
        total_steps: training budget in env steps; defaults to ``steps.max()`` (the run's end).
        fraction: window size as a fraction of ``total_steps``; the window is
            ``steps >= (1 - fraction) * total_steps``.

    Returns:
        The window mean; the last logged value when no point falls in the window (sparse
        evaluation: :func:`points_in_window` is then 0, and the report names the run and
        the step that stood in); NaN for an empty curve.
    """
    steps = np.asarray(steps, dtype=float)
    values = np.asarray(values, dtype=float)
    if steps.size == 0:
        return float("nan")
    order = np.argsort(steps, kind="stable")
    steps, values = steps[order], values[order]
    in_window = _in_window(steps, total_steps, fraction)
    if not in_window.any():
        return float(values[-1])
    return float(values[in_window].mean())


def points_in_window(
    steps: np.ndarray, total_steps: float | None = None, fraction: float = 0.1
) -> int:
    """How many of the ``(n_points,)`` ``steps`` fall in :func:`final_performance`'s window
    (``steps >= (1 - fraction) * total_steps``); 0 for an empty curve or when none does."""
    steps = np.asarray(steps, dtype=float)
    return int(_in_window(steps, total_steps, fraction).sum()) if steps.size else 0


def _in_window(steps: np.ndarray, total_steps: float | None, fraction: float) -> np.ndarray:
    end = np.max(steps) if total_steps is None else float(total_steps)
    return steps >= (1.0 - fraction) * end


def normalised_auc(steps: np.ndarray, values: np.ndarray) -> float:
    """Area under a learning curve divided by its step range, so it is in the curve's units.

    Trapezoid rule over ``(n_points,)`` ``steps`` / ``values``; equals the time-average of the
    piecewise-linear curve. One point gives that point's value; none gives NaN.
    """
    steps = np.asarray(steps, dtype=float)
    values = np.asarray(values, dtype=float)
    if steps.size == 0:
        return float("nan")
    order = np.argsort(steps, kind="stable")
    steps, values = steps[order], values[order]
    span = steps[-1] - steps[0]
    if span <= 0:
        return float(values.mean())
    return float(np.trapezoid(values, steps) / span)


def mean_ci_t(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[np.ndarray, ...]:
    """Mean and Student-t confidence band across seeds, for plotting curves.

    Args:
        values: ``(n_seeds, n_points)``; NaN entries are ignored per point.

    Returns:
        ``(mean, low, high)``, each ``(n_points,)``; the band collapses onto the mean where
        fewer than two seeds have a value.
    """
    values = np.asarray(values, dtype=float)
    count = np.sum(np.isfinite(values), axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns are expected at edges
        mean = np.nanmean(values, axis=0)
        std = np.nanstd(values, axis=0, ddof=1)
    half = np.zeros_like(mean)
    enough = count >= 2
    t_crit = stats.t.ppf(0.5 + confidence / 2, np.maximum(count[enough] - 1, 1))
    half[enough] = t_crit * std[enough] / np.sqrt(count[enough])
    return mean, mean - half, mean + half


# ----------------------------------------------------------------------------------------------
# Tests and effect sizes between an arm x and the reference y
# ----------------------------------------------------------------------------------------------


def degenerate_reason(x: np.ndarray, y: np.ndarray) -> str | None:
    """Why Welch's test is undefined for ``x``, ``y`` (each ``(n_runs,)``); None when it is not."""
    x, y = _as_1d(x), _as_1d(y)
    if x.size < 2 or y.size < 2:
        return f"too few runs (n={x.size} vs {y.size}; need >= 2 per arm)"
    if np.var(x) == 0 and np.var(y) == 0:
        if x[0] == y[0]:
            return f"every run of both arms scored {x[0]:.4g}: no difference, no test defined"
        return (
            f"zero variance in both arms ({x[0]:.4g} vs {y[0]:.4g}): Welch's t is undefined "
            "(0/0 standard error)"
        )
    return None


def welch_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided p-value of Welch's t-test (unequal variances), ``scipy.stats.ttest_ind``.

    ``x``, ``y``: ``(n_runs,)``. NaN when :func:`degenerate_reason` is not None.
    """
    if degenerate_reason(x, y) is not None:
        return float("nan")
    return float(stats.ttest_ind(_as_1d(x), _as_1d(y), equal_var=False).pvalue)


def mann_whitney_p(
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator | None = None,
    n_resamples: int = PERMUTATION_RESAMPLES,
) -> float:
    """Two-sided p-value of the Mann-Whitney U test, exact or by permutation, never asymptotic.

    ``x``, ``y``: ``(n_runs,)``. Without ties: scipy's exact null distribution. With ties
    (common at a return ceiling): the permutation distribution of U over every split of the
    pooled runs when ``math.comb(n1 + n2, n1) <= n_resamples``, else over ``n_resamples``
    splits drawn from ``rng`` (default: seeded with 0). The
    asymptotic p it replaces is about half the exact one at n = 5 (0.004 vs 0.0079).
    NaN for an empty arm or when every value in both arms is identical (every split then
    has the same U: the test cannot tell anything).

    Two-sided means, on every path: twice the smaller one-sided p, capped at 1,
    ``min(1, 2 min(P(U <= u), P(U >= u)))`` over the splits. This is scipy's definition
    (``mannwhitneyu`` exact and permutation), so each p here can be rerun with scipy, and
    without ties the null distribution of U is symmetric about ``n1 n2 / 2``, where it equals
    the share of splits with ``|U - n1 n2 / 2|`` at least the observed one. With ties the
    permutation distribution can be lopsided and the two rules differ (x = [-1, -1, 0, -1,
    1], y = [2, -3, 1]: 0.643 doubled, 0.607 by distance). Both keep the test's level;
    doubling is the one scipy and the exact path already use, so one definition holds for
    all three paths (exact, permutation, one run in an arm).
    """
    x, y = _as_1d(x), _as_1d(y)
    pooled = np.concatenate([x, y])
    if x.size == 0 or y.size == 0 or np.ptp(pooled) == 0:
        return float("nan")
    if np.unique(pooled).size == pooled.size:
        return float(stats.mannwhitneyu(x, y, alternative="two-sided", method="exact").pvalue)
    if min(x.size, y.size) == 1:  # scipy's permutation test needs two runs per arm
        return _single_run_u_p(x, y)
    method = stats.PermutationMethod(
        n_resamples=n_resamples, rng=rng if rng is not None else np.random.default_rng(0)
    )
    return float(stats.mannwhitneyu(x, y, alternative="two-sided", method=method).pvalue)


def _single_run_u_p(x: np.ndarray, y: np.ndarray) -> float:
    """The exact permutation p of U when one arm has a single run, as
    :func:`mann_whitney_p` defines it (twice the smaller one-sided p, capped at 1): there are
    ``n1 + n2`` splits, one per pooled run as the single arm's, each equally likely."""
    pooled = np.concatenate([x, y])
    single_first = x.size == 1

    def u(index: int) -> float:
        value, rest = pooled[index], np.delete(pooled, index)
        return float(np.sum(value > rest) + 0.5 * np.sum(value == rest))

    observed = u(0 if single_first else pooled.size - 1)
    splits = np.array([u(index) for index in range(pooled.size)])  # (n1 + n2,)
    # U takes multiples of 1/2: the tolerance only absorbs rounding.
    below = np.mean(splits <= observed + 1e-9)
    above = np.mean(splits >= observed - 1e-9)
    return float(min(1.0, 2.0 * min(below, above)))


def smallest_mann_whitney_p(n_x: int, n_y: int) -> float:
    """The smallest two-sided Mann-Whitney p any data can give at these sizes: complete
    separation, ``2 / comb(n_x + n_y, n_x)`` (capped at 1). n = 3 vs 3: 0.1; 5 vs 5: 0.0079."""
    if n_x < 1 or n_y < 1:
        return float("nan")
    return min(1.0, 2.0 / math.comb(n_x + n_y, n_x))


@dataclass(frozen=True)
class TestResult:
    """The primary test of one comparison: its p, which test gave it, and why (if not Welch)."""

    p: float
    test: str
    """``Welch``, ``Mann-Whitney`` (Welch undefined) or ``none``."""
    note: str


def primary_test(x: np.ndarray, y: np.ndarray) -> TestResult:
    """Welch's t-test, or what stands in where it is undefined, said explicitly.

    ``x``, ``y``: ``(n_runs,)``. Both arms constant at different values (a return ceiling
    against another constant) -> the exact Mann-Whitney p, which does separate them;
    both constant at the same value, or fewer than two runs in an arm -> no test (NaN p).
    """
    reason = degenerate_reason(x, y)
    if reason is None:
        return TestResult(welch_p(x, y), "Welch", "")
    if reason.startswith("zero variance"):
        return TestResult(mann_whitney_p(x, y), "Mann-Whitney", reason + "; Mann-Whitney p used")
    return TestResult(float("nan"), "none", reason)


def hedges_g(x: np.ndarray, y: np.ndarray) -> float:
    """Hedges' g: Cohen's d with pooled SD, times the small-sample correction.

    ``g = J * (mean(x) - mean(y)) / s_pooled``, ``s_pooled**2 = ((n1-1) s1**2 + (n2-1) s2**2)
    / (n1 + n2 - 2)``, ``J = 1 - 3 / (4 (n1 + n2) - 9)`` (Hedges & Olkin 1985).
    ``x``, ``y``: ``(n_runs,)``. NaN for n < 2 in an arm or zero pooled SD.
    """
    x, y = _as_1d(x), _as_1d(y)
    n1, n2 = x.size, y.size
    if n1 < 2 or n2 < 2:
        return float("nan")
    pooled = ((n1 - 1) * np.var(x, ddof=1) + (n2 - 1) * np.var(y, ddof=1)) / (n1 + n2 - 2)
    if pooled == 0:
        return float("nan")
    correction = 1.0 - 3.0 / (4.0 * (n1 + n2) - 9.0)
    return float(correction * (x.mean() - y.mean()) / np.sqrt(pooled))


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) for a random run of each arm, ties counting 1/2: ``U / (n1 n2)``.

    The Mann-Whitney U statistic of ``x`` normalised by the number of pairs (Agarwal et al.
    2021, "Deep RL at the Edge of the Statistical Precipice"). ``x``, ``y``: ``(n_runs,)``;
    :func:`analysis.aggregate.probability_of_improvement` of one task.
    """
    x, y = _as_1d(x), _as_1d(y)
    if x.size == 0 or y.size == 0:
        return float("nan")
    return float(aggregate.probability_of_improvement(x[:, None], y[:, None]))


def _poi(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    # Vectorised over leading (resample) axes: pairs are formed along the last axis.
    x = np.moveaxis(x, axis, -1)[..., :, None]
    y = np.moveaxis(y, axis, -1)[..., None, :]
    return np.mean((x > y) + 0.5 * (x == y), axis=(-2, -1))


def iqm(x: np.ndarray) -> float:
    """Interquartile mean of ``(n_runs,)``: mean of the middle 50% (``trim_mean(x, 0.25)``);
    :func:`analysis.aggregate.iqm` of one task."""
    x = _as_1d(x)
    return float(aggregate.iqm(x[:, None])) if x.size else float("nan")


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (Holm 1979), same shape ``(n_tests,)`` as the input.

    Sorted ascending, ``p_adj_(i) = max_{j <= i} min(1, (m - j) p_(j))`` with j 0-based and
    m the number of finite p-values; NaN entries stay NaN and do not count towards m.
    Reject at level alpha where ``p_adj < alpha``.
    """
    p_values = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p_values, np.nan)
    finite = np.flatnonzero(np.isfinite(p_values))
    m = finite.size
    if m == 0:
        return adjusted
    order = finite[np.argsort(p_values[finite], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p_values[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def welch_power(d: float, n_per_arm: int, alpha: float, nodes: int = 64) -> float:
    """Power of the two-sided Welch t-test for Cohen's d, n runs per arm, equal variances.

    With equal n the Welch statistic equals Student's, a noncentral t with ``2n - 2`` df and
    noncentrality ``d sqrt(n / 2)``; only its df differ: ``(n - 1) / (B**2 + (1 - B)**2)``
    with ``B = s1**2 / (s1**2 + s2**2) ~ Beta((n-1)/2, (n-1)/2)``, independent of the
    statistic (the sum and the share of two independent chi-squares are independent). Power
    is the rejection probability averaged over B by Gauss-Jacobi quadrature.
    """
    a = (n_per_arm - 1) / 2
    x, weights = special.roots_jacobi(nodes, a - 1, a - 1)
    share = (x + 1) / 2  # (nodes,) values of B
    weights = weights / weights.sum()
    welch_df = (n_per_arm - 1) / (share**2 + (1 - share) ** 2)
    t_crit = stats.t.ppf(1 - alpha / 2, welch_df)
    df, noncentrality = 2 * n_per_arm - 2, d * np.sqrt(n_per_arm / 2)
    upper = stats.nct.sf(t_crit, df, noncentrality)
    # The wrong-sign tail is negligible here; scipy returns NaN for it at large noncentrality.
    lower = np.nan_to_num(stats.nct.cdf(-t_crit, df, noncentrality), nan=0.0)
    return float(np.sum(weights * (upper + lower)))


def student_power(d: float, n_per_arm: int, alpha: float) -> float:
    """Power of the two-sided equal-variance t-test (``df = 2n - 2``), Cohen (1988)."""
    df, noncentrality = 2 * n_per_arm - 2, d * np.sqrt(n_per_arm / 2)
    t_crit = stats.t.ppf(1 - alpha / 2, df)
    lower = np.nan_to_num(stats.nct.cdf(-t_crit, df, noncentrality), nan=0.0)
    return float(stats.nct.sf(t_crit, df, noncentrality) + lower)


def min_detectable_effect(
    n_per_arm: int, power: float = 0.8, alpha: float = 0.05, welch: bool = True
) -> float:
    """Smallest Cohen's d detected with ``power`` by the two-sided test at level ``alpha``.

    ``welch`` (default): Welch's t-test, the test the verdict uses (:func:`welch_power`);
    otherwise Student's t (FACTS.md: n=3 -> 3.07, 5 -> 2.02, 10 -> 1.32, 20 -> 0.91 at 0.05).
    Pass the alpha the decision actually uses: under Holm, the first step's ``alpha / m``.
    Solved for d by root finding; NaN for n < 2.
    """
    if n_per_arm < 2:
        return float("nan")
    achieved = welch_power if welch else student_power

    def shortfall(d: float) -> float:
        return achieved(d, n_per_arm, alpha) - power

    # Bracket by doubling instead of a fixed wide interval: scipy's noncentral t returns NaN
    # for very large noncentrality.
    upper = 1.0
    while shortfall(upper) < 0:
        upper *= 2.0
    return float(optimize.brentq(shortfall, 1e-6, upper))


def ratio_of_means(x: np.ndarray, y: np.ndarray) -> float:
    """``mean(x) / mean(y)`` of ``(n_runs,)`` arrays (e.g. updates/s coupled over separate)."""
    x, y = _as_1d(x), _as_1d(y)
    if x.size == 0 or y.size == 0 or y.mean() == 0:
        return float("nan")
    return float(x.mean() / y.mean())


# ----------------------------------------------------------------------------------------------
# Bootstrap confidence intervals (percentile; arms resampled independently = stratified)
# ----------------------------------------------------------------------------------------------


def _bootstrap(
    samples: tuple[np.ndarray, ...],
    statistic: Callable[..., np.ndarray],
    rng: np.random.Generator,
    n_resamples: int,
    confidence: float,
) -> Interval:
    samples = tuple(_as_1d(sample) for sample in samples)
    if any(sample.size < 2 for sample in samples):
        return (float("nan"), float("nan"))
    result = stats.bootstrap(
        samples,
        statistic,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        paired=False,
        rng=rng,
    )
    return (float(result.confidence_interval.low), float(result.confidence_interval.high))


def diff_of_means_ci(
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = CONFIDENCE,
) -> Interval:
    """Percentile bootstrap CI of ``mean(x) - mean(y)``, each ``(n_runs,)`` resampled apart.

    Descriptive only: with 5 seeds it excludes 0 in ~12% of null cases (FACTS.md).
    ``(nan, nan)`` when an arm has fewer than two runs.
    """

    def statistic(a: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
        return np.mean(a, axis=axis) - np.mean(b, axis=axis)

    return _bootstrap((x, y), statistic, rng, n_resamples, confidence)


def iqm_ci(
    x: np.ndarray,
    rng: np.random.Generator,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = CONFIDENCE,
) -> Interval:
    """Percentile bootstrap CI of the IQM of ``(n_runs,)`` (Agarwal et al. 2021)."""

    def statistic(a: np.ndarray, axis: int) -> np.ndarray:
        return stats.trim_mean(a, 0.25, axis=axis)

    return _bootstrap((x,), statistic, rng, n_resamples, confidence)


def probability_of_improvement_ci(
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = CONFIDENCE,
) -> Interval:
    """Percentile bootstrap CI of :func:`probability_of_improvement`, arms resampled apart."""
    return _bootstrap((x, y), _poi, rng, n_resamples, confidence)


def ratio_of_means_ci(
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = CONFIDENCE,
) -> Interval:
    """Percentile bootstrap CI of ``mean(x) / mean(y)``, each ``(n_runs,)`` resampled apart."""

    def statistic(a: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.mean(a, axis=axis) / np.mean(b, axis=axis)

    return _bootstrap((x, y), statistic, rng, n_resamples, confidence)
