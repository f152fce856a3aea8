"""Suite aggregates: each statistic against a hand-computed case and a brute-force loop; the
stratified bootstrap keeps every run in its task and is reproducible from the Generator."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from analysis import aggregate

# 3 runs x 2 tasks.
SCORES = np.array([[0.0, 1.0], [2.0, 5.0], [4.0, 3.0]])


def test_hand_computed_values() -> None:
    # 6 scores sorted 0 1 2 3 4 5: IQM cuts int(1.5) = 1 from each end -> mean(1, 2, 3, 4).
    assert aggregate.iqm(SCORES) == pytest.approx(2.5)
    # Task means 2 and 3.
    assert aggregate.mean(SCORES) == pytest.approx(2.5)
    assert aggregate.median(SCORES) == pytest.approx(2.5)
    # min(x, 1): task 0 -> 0, 1, 1 (mean 2/3); task 1 -> 1, 1, 1 (mean 1); gap 1 - 5/6.
    assert aggregate.optimality_gap(SCORES) == pytest.approx(1 / 6)
    # Task 0: x = 1, 3 vs y = 0, 2, 4 -> wins (1>0) (3>0) (3>2) = 3 of 6; task 1: x = 9, 9
    # vs y = 1, 5, 3 -> 6 of 6; averaged: (0.5 + 1) / 2.
    x = np.array([[1.0, 9.0], [3.0, 9.0]])
    assert aggregate.probability_of_improvement(x, SCORES) == pytest.approx(0.75)
    # Ties count half: equal arms give 0.5.
    assert aggregate.probability_of_improvement(SCORES, SCORES) == pytest.approx(0.5)
    # Above tau = 2.5: task 0 one run of 3, task 1 two runs of 3 -> mean(1/3, 2/3).
    profile = aggregate.performance_profile(SCORES, np.array([-1.0, 2.5, 10.0]))
    np.testing.assert_allclose(profile, [1.0, 0.5, 0.0])


def _brute(scores: np.ndarray) -> dict[str, float]:
    """Loops over a NaN-padded (runs, tasks) matrix, one task column at a time."""
    columns = [[v for v in scores[:, j] if np.isfinite(v)] for j in range(scores.shape[1])]
    task_means = [sum(column) / len(column) for column in columns]
    everything = [v for column in columns for v in column]
    return {
        "IQM": float(stats.trim_mean(everything, 0.25)),
        "mean": sum(task_means) / len(task_means),
        "median": float(np.median(task_means)),
        "optimality gap": 1
        - sum(sum(min(v, 1.0) for v in c) / len(c) for c in columns) / len(columns),
    }


def test_aggregates_equal_a_brute_force_computation_with_missing_runs() -> None:
    rng = np.random.default_rng(3)
    scores = rng.normal(0.8, 0.6, size=(7, 5))
    scores[5:, 1] = np.nan  # a task with two runs fewer (failed runs)
    scores[6, 3] = np.nan
    brute = _brute(scores)
    for name, statistic in aggregate.AGGREGATES.items():
        assert statistic(scores) == pytest.approx(brute[name]), name


def test_probability_of_improvement_and_profile_equal_loops() -> None:
    rng = np.random.default_rng(4)
    x = rng.integers(0, 4, size=(4, 3)).astype(float)  # small integers: many ties
    y = rng.integers(0, 4, size=(5, 3)).astype(float)
    y[4, 2] = np.nan
    per_task = []
    for task in range(3):
        xs = [v for v in x[:, task] if np.isfinite(v)]
        ys = [v for v in y[:, task] if np.isfinite(v)]
        wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(xs, ys))
        per_task.append(wins / (len(xs) * len(ys)))
        # The same as scipy's U statistic over n m.
        u = stats.mannwhitneyu(xs, ys).statistic
        assert wins == pytest.approx(u)
    assert aggregate.probability_of_improvement(x, y) == pytest.approx(np.mean(per_task))

    taus = np.array([0.5, 1.5, 2.5])
    expected = [
        np.mean([np.mean([v > tau for v in y[:, t] if np.isfinite(v)]) for t in range(3)])
        for tau in taus
    ]
    np.testing.assert_allclose(aggregate.performance_profile(y, taus), expected)


def test_stratified_bootstrap_never_mixes_runs_across_tasks() -> None:
    # Task j's scores all lie in [100 j, 100 j + 10): a mixed resample would show it.
    rng = np.random.default_rng(0)
    scores = np.stack([100 * j + rng.uniform(0, 10, size=6) for j in range(4)], axis=1)
    scores[4:, 2] = np.nan
    resamples = aggregate.stratified_resamples(scores, np.random.default_rng(1), 500)
    assert resamples.shape == (500, 6, 4)
    for j in range(4):
        column = resamples[:, :, j]
        own = set(scores[np.isfinite(scores[:, j]), j])
        finite = column[np.isfinite(column)]
        assert set(finite) <= own
        # Each task keeps its own number of runs in every resample.
        assert (np.isfinite(column).sum(1) == len(own)).all()


def test_same_seed_same_interval_and_the_interval_holds_the_value() -> None:
    rng = np.random.default_rng(9)
    scores = rng.normal(1.0, 0.5, size=(5, 4))
    other = rng.normal(0.7, 0.5, size=(5, 4))
    for statistic in aggregate.AGGREGATES.values():
        first = aggregate.aggregate_ci(scores, statistic, np.random.default_rng(2), 400)
        again = aggregate.aggregate_ci(scores, statistic, np.random.default_rng(2), 400)
        assert first == again
        assert first[1] <= first[0] <= first[2]
    poi = aggregate.probability_of_improvement_ci(scores, other, np.random.default_rng(2), 400)
    assert poi == aggregate.probability_of_improvement_ci(
        scores, other, np.random.default_rng(2), 400
    )
    assert 0 <= poi[1] <= poi[0] <= poi[2] <= 1
    taus = np.linspace(0, 2, 5)
    value, low, high = aggregate.performance_profile_ci(scores, taus, np.random.default_rng(2), 400)
    assert (low <= value + 1e-12).all() and (value <= high + 1e-12).all()


def test_bootstrap_interval_matches_a_resampling_loop() -> None:
    # The vectorised percentile interval equals one computed resample by resample.
    scores = np.random.default_rng(5).normal(size=(4, 3))
    resamples = aggregate.stratified_resamples(scores, np.random.default_rng(6), 300)
    looped = [float(stats.trim_mean(r[np.isfinite(r)], 0.25)) for r in resamples]
    _, low, high = aggregate.aggregate_ci(scores, aggregate.iqm, np.random.default_rng(6), 300)
    assert (low, high) == pytest.approx(tuple(np.percentile(looped, [2.5, 97.5])))


def test_zero_variance_and_two_runs() -> None:
    flat = np.full((2, 3), 0.4)
    for statistic in aggregate.AGGREGATES.values():
        value, low, high = aggregate.aggregate_ci(flat, statistic, np.random.default_rng(0), 50)
        assert value == pytest.approx(low) == pytest.approx(high)
    assert aggregate.iqm(flat) == pytest.approx(0.4)
    assert aggregate.optimality_gap(flat) == pytest.approx(0.6)
