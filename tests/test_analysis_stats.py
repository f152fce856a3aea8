"""Each statistic against a hand-computed case or its scipy reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as scipy_stats

from analysis import stats

X = np.array([1.0, 2.0, 3.0])
Y = np.array([2.0, 2.0, 0.0])


def test_final_performance_averages_the_last_tenth() -> None:
    steps = np.arange(0, 101, 10)  # (11,)
    values = steps.astype(float)
    assert stats.final_performance(steps, values) == pytest.approx(95.0)  # steps 90 and 100
    # Shuffled input gives the same answer.
    order = np.random.default_rng(0).permutation(steps.size)
    assert stats.final_performance(steps[order], values[order]) == pytest.approx(95.0)
    # No eval point in the last 10% of the budget: fall back to the last logged value.
    assert stats.final_performance(steps, values, total_steps=200) == pytest.approx(100.0)
    assert np.isnan(stats.final_performance(np.empty(0), np.empty(0)))


def test_normalised_auc_is_in_return_units() -> None:
    steps = np.array([0.0, 10.0, 20.0])
    assert stats.normalised_auc(steps, np.array([0.0, 10.0, 20.0])) == pytest.approx(10.0)
    assert stats.normalised_auc(steps, np.array([4.0, 4.0, 4.0])) == pytest.approx(4.0)
    # Step range 10..30, trapezoids: (0+10)/2*10 + (10+10)/2*10 = 150 -> 150/20.
    assert stats.normalised_auc(np.array([10, 20, 30]), np.array([0, 10, 10])) == pytest.approx(7.5)
    assert stats.normalised_auc(np.array([5.0]), np.array([3.0])) == pytest.approx(3.0)


def test_tests_match_scipy() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(1.0, 1.0, 5), rng.normal(0.0, 2.0, 6)
    expected = scipy_stats.ttest_ind(x, y, equal_var=False).pvalue
    assert stats.welch_p(x, y) == pytest.approx(expected)
    expected = scipy_stats.mannwhitneyu(x, y, alternative="two-sided", method="exact").pvalue
    assert stats.mann_whitney_p(x, y) == pytest.approx(expected)


def _split_u_values(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """The observed U of ``x`` and U over every split of the pooled values into groups of
    len(x) and len(y) (itertools.combinations: each split once, all equally likely)."""
    pooled = np.concatenate([x, y])

    def u(first: np.ndarray, second: np.ndarray) -> float:
        return float(
            np.sum((first[:, None] > second[None]) + 0.5 * (first[:, None] == second[None]))
        )

    splits = []
    for chosen in itertools.combinations(range(pooled.size), x.size):
        mask = np.zeros(pooled.size, bool)
        mask[list(chosen)] = True
        splits.append(u(pooled[mask], pooled[~mask]))
    return u(x, y), np.array(splits)


def _brute_force_mann_whitney_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided p as twice the smaller one-sided share of splits, capped at 1."""
    observed, splits = _split_u_values(x, y)
    below = np.mean(splits <= observed + 1e-9)
    above = np.mean(splits >= observed - 1e-9)
    return min(1.0, 2 * min(below, above))


def _distance_mann_whitney_p(x: np.ndarray, y: np.ndarray) -> float:
    """The other two-sided rule: the share of splits with |U - n m / 2| at least observed."""
    observed, splits = _split_u_values(x, y)
    centre = x.size * y.size / 2
    return float(np.mean(np.abs(splits - centre) >= abs(observed - centre) - 1e-9))


MANN_WHITNEY_CASES = {
    "separation, ceiling ties": (np.full(5, 500.0), np.array([300.0, 310, 320, 330, 340])),
    "ties across arms": (
        np.array([500.0, 500, 500, 420, 380]),
        np.array([500.0, 410, 320, 300, 380]),
    ),
    # Ties that make the permutation distribution lopsided: the two rules differ here.
    "lopsided ties": (np.array([-1.0, -1, 0, -1, 1]), np.array([2.0, -3, 1])),
    "no ties": (np.array([1.0, 2.5, 3.1, 7.0]), np.array([0.5, 2.0, 2.9])),
    "both constant": (np.full(5, 500.0), np.full(5, 312.0)),
    "n = 2": (np.array([500.0, 500.0]), np.array([200.0, 300.0])),
    "n = 2, tied across arms": (np.array([1.0, 2.0]), np.array([2.0, 3.0])),
    # One run of an arm tied with the other's (a task of a suite where one seed finished):
    # scipy's permutation test refuses a single run; the p must still be exact.
    "single run, tied": (np.array([300.0]), np.array([300.0, 310, 320])),
    "single reference run, tied": (np.array([500.0, 500, 420]), np.array([500.0])),
    "single reference run, lopsided ties": (np.array([1.0, 1, 1, 2]), np.array([3.0])),
    "single run, no ties": (np.array([4.0]), np.array([1.0, 2, 3, 5])),
}


@pytest.mark.parametrize("name", sorted(MANN_WHITNEY_CASES))
def test_mann_whitney_p_is_exact_against_every_split(name: str) -> None:
    x, y = MANN_WHITNEY_CASES[name]
    assert stats.mann_whitney_p(x, y) == pytest.approx(_brute_force_mann_whitney_p(x, y))
    # The arms swapped: U becomes n m - U, and a two-sided p cannot change.
    assert stats.mann_whitney_p(y, x) == pytest.approx(stats.mann_whitney_p(x, y))


def test_both_mann_whitney_paths_use_one_two_sided_definition() -> None:
    # Two arms of 2+ runs with ties (scipy's permutation test): 36 of the 56 splits on the
    # doubled rule, 34 by distance from n m / 2. The code must give the doubled one.
    x, y = MANN_WHITNEY_CASES["lopsided ties"]
    assert _brute_force_mann_whitney_p(x, y) == pytest.approx(36 / 56)
    assert _distance_mann_whitney_p(x, y) == pytest.approx(34 / 56)
    assert stats.mann_whitney_p(x, y) == pytest.approx(36 / 56)
    # One run in an arm (the code's own enumeration): 2 of 5 splits doubled, 1 by distance.
    x, y = MANN_WHITNEY_CASES["single reference run, lopsided ties"]
    assert _brute_force_mann_whitney_p(x, y) == pytest.approx(2 / 5)
    assert _distance_mann_whitney_p(x, y) == pytest.approx(1 / 5)
    assert stats.mann_whitney_p(x, y) == pytest.approx(2 / 5)
    # Without ties the rules agree, and scipy's exact p is both.
    x, y = MANN_WHITNEY_CASES["no ties"]
    assert _distance_mann_whitney_p(x, y) == pytest.approx(_brute_force_mann_whitney_p(x, y))


@pytest.mark.parametrize(
    ("x", "y"), [(np.full(3, 4.0), np.full(2, 4.0)), (np.array([4.0]), np.full(2, 4.0))]
)
def test_mann_whitney_of_all_equal_values_is_undefined(x: np.ndarray, y: np.ndarray) -> None:
    # Every split has the same U: the null distribution is a single point, so no test can
    # tell anything (the formula's p = 1 would read as evidence of equality).
    observed, splits = _split_u_values(x, y)
    assert set(splits) == {observed} == {x.size * y.size / 2}
    assert np.isnan(stats.mann_whitney_p(x, y))


def test_mann_whitney_complete_separation_at_n5_is_exact_not_asymptotic() -> None:
    x, y = MANN_WHITNEY_CASES["separation, ceiling ties"]
    assert stats.mann_whitney_p(x, y) == pytest.approx(2 / 252)  # 0.0079, not 0.004
    assert stats.smallest_mann_whitney_p(5, 5) == pytest.approx(2 / 252)
    assert stats.smallest_mann_whitney_p(3, 3) == pytest.approx(0.1)
    assert stats.smallest_mann_whitney_p(2, 2) == pytest.approx(1 / 3)


def test_mann_whitney_beyond_exhaustive_is_a_seeded_permutation_test() -> None:
    rng = np.random.default_rng(3)
    x = np.round(rng.normal(1.0, 1.0, 8))  # rounded: ties; comb(16, 8) = 12,870 splits
    y = np.round(rng.normal(0.0, 1.0, 8))
    first = stats.mann_whitney_p(x, y, np.random.default_rng(1), n_resamples=5_000)
    assert first == stats.mann_whitney_p(x, y, np.random.default_rng(1), n_resamples=5_000)
    assert first != stats.mann_whitney_p(x, y, np.random.default_rng(2), n_resamples=5_000)
    # 5,000 random splits: within 0.025 of the exact permutation p (SE <= 0.0071).
    assert first == pytest.approx(_brute_force_mann_whitney_p(x, y), abs=0.025)


def test_hedges_g_by_hand() -> None:
    # Difference 1, pooled SD 1, J = 1 - 3 / (4 * 6 - 9) = 0.8.
    assert stats.hedges_g(X, X - 1.0) == pytest.approx(0.8)


def test_probability_of_improvement_by_hand_and_as_u_statistic() -> None:
    # Pairs x>y: 1 -> {0}: 1; 2 -> ties with 2, 2 (1/2 each) and > 0: 2; 3 -> 3. Total 6 / 9.
    assert stats.probability_of_improvement(X, Y) == pytest.approx(6 / 9)
    u = scipy_stats.mannwhitneyu(X, Y, alternative="two-sided").statistic
    assert stats.probability_of_improvement(X, Y) == pytest.approx(u / 9)
    assert stats.probability_of_improvement(Y, X) == pytest.approx(1 - 6 / 9)


def test_iqm_is_the_mean_of_the_middle_half() -> None:
    values = np.array([100.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0])  # middle half: 2, 3, 4, 5
    assert stats.iqm(values) == pytest.approx(3.5)
    assert stats.iqm(values) == pytest.approx(scipy_stats.trim_mean(values, 0.25))


def test_holm_by_hand() -> None:
    # Sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> max so far 0.06.
    adjusted = stats.holm(np.array([0.01, 0.04, 0.03, 0.005, np.nan]))
    np.testing.assert_allclose(adjusted[:4], [0.03, 0.06, 0.06, 0.02])
    assert np.isnan(adjusted[4])  # NaN stays NaN and does not enlarge the family
    np.testing.assert_allclose(stats.holm(np.array([0.5, 0.9])), [1.0, 1.0])  # capped at 1


@pytest.mark.parametrize(("n", "expected"), [(3, 3.07), (5, 2.02), (10, 1.32), (20, 0.91)])
def test_student_min_detectable_effect_matches_facts(n: int, expected: float) -> None:
    assert stats.min_detectable_effect(n, welch=False) == pytest.approx(expected, abs=0.02)


@pytest.mark.parametrize(("m", "expected"), [(2, 2.33), (4, 2.64), (12, 3.17)])
def test_student_min_detectable_effect_at_holm_first_step_alphas(m: int, expected: float) -> None:
    assert stats.min_detectable_effect(5, alpha=0.05 / m, welch=False) == pytest.approx(
        expected, abs=0.01
    )


@pytest.mark.parametrize(("n", "m"), [(3, 1), (5, 4), (5, 8), (10, 2)])
def test_welch_min_detectable_effect_has_its_power_in_a_simulation(n: int, m: int) -> None:
    # At the computed d, a seeded simulation of Welch's test at alpha / m rejects 80% of the
    # time (40,000 draws: standard error 0.002). Student's df would overstate Welch's power.
    alpha = 0.05 / m
    d = stats.min_detectable_effect(n, alpha=alpha)
    rng = np.random.default_rng(n * 100 + m)
    x, y = rng.normal(d, 1.0, (40_000, n)), rng.normal(0.0, 1.0, (40_000, n))
    power = np.mean(scipy_stats.ttest_ind(x, y, axis=1, equal_var=False).pvalue < alpha)
    assert power == pytest.approx(0.8, abs=0.008)
    assert d > stats.min_detectable_effect(n, alpha=alpha, welch=False)


def test_ratio_of_means() -> None:
    assert stats.ratio_of_means(np.array([2.0, 4.0]), np.array([1.0, 3.0])) == pytest.approx(1.5)


def test_mean_ci_t_by_hand() -> None:
    values = np.array([[1.0, 2.0, np.nan], [3.0, 4.0, 5.0]])  # (n_seeds=2, n_points=3)
    mean, low, high = stats.mean_ci_t(values)
    np.testing.assert_allclose(mean, [2.0, 3.0, 5.0])
    half = scipy_stats.t.ppf(0.975, 1) * np.sqrt(2.0) / np.sqrt(2.0)
    np.testing.assert_allclose(high - mean, [half, half, 0.0])  # one seed at the last point
    np.testing.assert_allclose(mean - low, high - mean)


# Eight continuous values per arm: with three, the bootstrap distribution is so discrete that
# different seeds often give the very same percentile endpoints.
A = np.array([3.1, 4.7, 2.2, 5.9, 4.4, 3.8, 6.3, 2.9])
B = np.array([1.2, 2.5, 3.7, 3.3, 2.0, 4.9, 2.8, 0.4])
CI_CASES = {
    "diff": (stats.diff_of_means_ci, (A, B), np.mean(A) - np.mean(B)),
    "poi": (stats.probability_of_improvement_ci, (A, B), stats.probability_of_improvement(A, B)),
    "ratio": (stats.ratio_of_means_ci, (A, B), stats.ratio_of_means(A, B)),
    "iqm": (stats.iqm_ci, (A,), stats.iqm(A)),
}


@pytest.mark.parametrize("name", sorted(CI_CASES))
def test_bootstrap_cis_are_reproducible_and_bracket_the_estimate(name: str) -> None:
    function, samples, estimate = CI_CASES[name]

    def ci(seed: int) -> tuple[float, float]:
        return function(*samples, np.random.default_rng(seed), n_resamples=500)

    first = ci(123)
    assert first == ci(123)  # same seed, same CI
    assert first != ci(124)
    assert first[0] <= estimate <= first[1]


def test_degenerate_inputs_give_nan_not_errors() -> None:
    one, three = np.array([1.0]), np.array([1.0, 2.0, 3.0])
    rng = np.random.default_rng(0)
    assert np.isnan(stats.welch_p(one, three))
    assert np.isnan(stats.hedges_g(one, three))
    assert all(np.isnan(stats.diff_of_means_ci(one, three, rng)))
    assert all(np.isnan(stats.iqm_ci(one, rng)))
    assert "too few runs" in stats.degenerate_reason(one, three)
    constant = np.full(3, 5.0)
    assert np.isnan(stats.welch_p(constant, constant))
    assert np.isnan(stats.mann_whitney_p(constant, constant))
    assert np.isnan(stats.hedges_g(constant, constant))
    assert "every run of both arms scored 5" in stats.degenerate_reason(constant, constant)
    assert stats.degenerate_reason(three, three + 1) is None
    assert np.isnan(stats.min_detectable_effect(1))


def test_primary_test_says_what_stands_in_for_an_undefined_welch() -> None:
    ceiling, other = np.full(5, 500.0), np.full(5, 312.0)
    # scipy answers t = inf, p = 0 here: a claim no test supports with 5 runs per arm.
    result = stats.primary_test(ceiling, other)
    assert result.test == "Mann-Whitney" and result.p == pytest.approx(2 / 252)
    assert "Welch's t is undefined" in result.note and "500 vs 312" in result.note
    same = stats.primary_test(ceiling, ceiling)
    assert same.test == "none" and np.isnan(same.p) and "no difference" in same.note
    few = stats.primary_test(np.array([1.0]), other)
    assert few.test == "none" and "too few runs" in few.note
    x, y = np.array([1.0, 2.0, 4.0]), np.array([0.0, 0.5, 0.7])
    normal = stats.primary_test(x, y)
    assert normal == stats.TestResult(stats.welch_p(x, y), "Welch", "")
    # One constant arm is no obstacle to Welch (the other arm's variance is the SE).
    assert stats.primary_test(ceiling, y).test == "Welch"


def test_percentile_bootstrap_below_the_minimum_n_under_covers() -> None:
    # Why no bootstrap CI is printed below MIN_BOOTSTRAP_N: at n = 3 per arm, under no
    # difference, the 95% CI of the difference excludes 0 far more often than 5%.
    rng = np.random.default_rng(11)
    n = stats.MIN_BOOTSTRAP_N - 2
    excluded = 0
    for _ in range(300):
        low, high = stats.diff_of_means_ci(rng.normal(size=n), rng.normal(size=n), rng, 400)
        excluded += not (low <= 0 <= high)
    assert excluded / 300 > 0.12
