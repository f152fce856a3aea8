"""Each statistic against a hand-computed case or its scipy reference."""

from __future__ import annotations

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
    expected = scipy_stats.mannwhitneyu(x, y, alternative="two-sided").pvalue
    assert stats.mann_whitney_p(x, y) == pytest.approx(expected)


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
def test_min_detectable_effect_matches_facts(n: int, expected: float) -> None:
    assert stats.min_detectable_effect(n) == pytest.approx(expected, abs=0.02)


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
    assert stats.degenerate_reason(constant, constant) == "zero variance in both arms"
    assert stats.degenerate_reason(three, three + 1) is None
    assert np.isnan(stats.min_detectable_effect(1))
