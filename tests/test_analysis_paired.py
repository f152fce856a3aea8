"""Speed compared in pairs (analysis.paired) against independent computations: scipy's
one-sample t interval, a brute-force Wilcoxon signed-rank p over every sign assignment, and
hand-made run times whose overlaps are known."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from analysis import paired, speed, summary

T0 = pd.Timestamp("2026-12-03T10:00:00")


def _runs(speeds: dict[str, list[float]], offsets: dict[str, list[float]] | None = None):
    """One task, two arms, a run per seed; every run created at T0 (as the runner creates an
    interim's runs at once), training 100 s and ending at T0 + 200 s + its arm's offset."""
    rows = []
    for arm, values in speeds.items():
        for seed, value in enumerate(values):
            shift = (offsets or {}).get(arm, [0.0] * len(values))[seed]
            rows.append(
                {
                    "task": "cartpole",
                    "arm": arm,
                    "seed": seed,
                    "run_name": f"{arm}-seed{seed}",
                    "status": "FINISHED",
                    "updates_per_s": value,
                    "start_time": T0,
                    "end_time": T0 + pd.Timedelta(seconds=200 + shift),
                    "wall_clock": 100.0,
                    "load_per_core": 1.0,
                    "hardware": "cpu",
                    "device": "cpu",
                }
            )
    return pd.DataFrame(rows)


def _brute_force_wilcoxon(differences: np.ndarray) -> float:
    """Two-sided exact p of the signed-rank statistic: the share of the 2^n sign assignments
    whose positive rank sum is at least as far from n(n+1)/4 as the observed one (no ties)."""
    ranks = scipy_stats.rankdata(np.abs(differences))
    observed = ranks[differences > 0].sum()
    centre = len(ranks) * (len(ranks) + 1) / 4
    sums = [
        sum(r for r, s in zip(ranks, signs, strict=True) if s)
        for signs in itertools.product((0, 1), repeat=len(ranks))
    ]
    return float(np.mean([abs(t - centre) >= abs(observed - centre) - 1e-9 for t in sums]))


def test_paired_speed_equals_scipys_t_interval_and_a_brute_force_wilcoxon() -> None:
    reference = [10.0, 12.0, 9.0, 15.0, 11.0, 8.0, 14.0]
    ratios = [1.3, 1.1, 0.95, 1.25, 1.4, 1.05, 1.2]
    scores = _runs(
        {"separate": reference, "coupled": [r * x for r, x in zip(ratios, reference, strict=True)]}
    )
    result = paired.comparison(scores, "coupled", "separate")
    logs = np.log(ratios)
    interval = scipy_stats.ttest_1samp(logs, 0.0).confidence_interval(0.95)
    assert result.paired and (result.pairs, result.side_by_side, result.faster) == (7, 7, 6)
    assert result.ratio == pytest.approx(math.prod(ratios) ** (1 / 7))
    assert (result.low, result.high) == pytest.approx(
        (math.exp(interval.low), math.exp(interval.high))
    )
    assert result.p == pytest.approx(_brute_force_wilcoxon(logs))


def test_two_pairs_of_equal_ratios_give_a_collapsed_interval() -> None:
    # n = 2 with zero variance: the t interval has no width; Wilcoxon's exact p at n = 2 is
    # 2 / 2^2 (both signs positive, or both negative).
    scores = _runs({"separate": [10.0, 20.0], "coupled": [12.0, 24.0]})
    result = paired.comparison(scores, "coupled", "separate")
    assert result.paired and result.ratio == pytest.approx(1.2)
    assert result.low == pytest.approx(1.2) and result.high == pytest.approx(1.2)
    assert result.p == pytest.approx(_brute_force_wilcoxon(np.log([1.2, 1.2]))) == 0.5
    # Every pair at the same speed: no signed-rank test is defined.
    same = paired.comparison(
        _runs({"separate": [3.0, 4.0], "coupled": [3.0, 4.0]}), "coupled", "separate"
    )
    assert same.ratio == pytest.approx(1.0) and np.isnan(same.p)
    assert summary.paired_test(same).test == "none"


def test_runs_created_together_but_trained_apart_are_not_paired() -> None:
    # All runs were created at T0; coupled's ended 150 s after separate's, so its 100 s of
    # training began after separate's ended: their training windows do not overlap.
    apart = _runs({"separate": [10.0, 11.0], "coupled": [12.0, 13.0]}, {"coupled": [150.0] * 2})
    result = paired.comparison(apart, "coupled", "separate")
    assert (result.pairs, result.side_by_side, result.paired) == (2, 0, False)
    assert np.isnan(result.ratio)
    # Overlapping for 60 of their 100 s (at least half the shorter): side by side.
    close = _runs({"separate": [10.0, 11.0], "coupled": [12.0, 13.0]}, {"coupled": [40.0] * 2})
    assert paired.comparison(close, "coupled", "separate").side_by_side == 2
    # For 40 s only: not.
    far = _runs({"separate": [10.0, 11.0], "coupled": [12.0, 13.0]}, {"coupled": [60.0] * 2})
    assert paired.comparison(far, "coupled", "separate").side_by_side == 0


def test_paired_speeds_drop_the_load_cautions_that_cancel_within_pairs() -> None:
    # Seed 1's pair ran on a loaded machine, 4x slower than seed 0's: unpaired, that is an
    # outlier and a load difference; paired, both runs of each pair met the same load.
    scores = _runs({"separate": [10.0, 2.5, 9.0], "coupled": [12.0, 3.0, 11.0]})
    scores.loc[scores["seed"] == 1, "load_per_core"] = 3.0
    unpaired = summary.speed_conditions(scores)
    assert any("distorted" in caution for caution in unpaired)
    assert speed.speed_cautions(scores, ["separate", "coupled"], "separate") == []
    # A pair whose own two runs met different loads is flagged, and only that pair.
    scores.loc[scores["run_name"] == "coupled-seed2", "load_per_core"] = 2.0
    (caution,) = speed.speed_cautions(scores, ["separate", "coupled"], "separate")
    assert caution.startswith("coupled-seed2 and separate-seed2 trained side by side")


def test_the_speed_table_and_the_answer_use_the_paired_ratio() -> None:
    reference = [10.0, 12.0, 9.0, 15.0, 11.0]
    ratios = [1.3, 1.1, 0.95, 1.25, 1.4]
    scores = _runs(
        {"separate": reference, "coupled": [r * x for r, x in zip(ratios, reference, strict=True)]}
    )
    scores = scores.assign(final_return=np.arange(10.0), auc_return=1.0, h_dispersion=1.0)
    table = summary.compare_arms(scores, np.random.default_rng(0), "separate", 200)
    row = table.set_index("arm").loc["coupled"]
    geometric = math.prod(ratios) ** (1 / 5)
    assert row["speed_ratio"] == pytest.approx(geometric)
    assert row["updates_per_s_test"] == summary.PAIRED_TEST
    assert row["updates_per_s_p"] == pytest.approx(_brute_force_wilcoxon(np.log(ratios)))
    phases = pd.DataFrame(columns=["run_id", "arm", "total", "iterations"])
    speeds = speed.speed_by_arm(scores, phases, ["separate", "coupled"], "separate")
    coupled = speeds.set_index("arm").loc["coupled"]
    assert coupled["speed_ratio"] == pytest.approx(geometric) and coupled["speed_pairs"] == 5
    # Without run times (a frame from before they were recorded) nothing is paired.
    untimed = scores.drop(columns=["start_time", "end_time"])
    table = summary.compare_arms(untimed, np.random.default_rng(0), "separate", 200)
    assert table.set_index("arm").loc["coupled", "updates_per_s_test"] == "Welch"


def _on_other_days(runs: pd.DataFrame, arm: str, days: int) -> pd.DataFrame:
    """``runs`` with every run of ``arm`` created and ended ``days`` later."""
    moved = runs.copy()
    rows = moved["arm"] == arm
    for column in ("start_time", "end_time"):
        moved.loc[rows, column] = moved.loc[rows, column] + pd.Timedelta(days=days)
    return moved


def test_arms_that_trained_at_other_times_are_not_compared_in_speed() -> None:
    # Two studies' arms merged: the other arm's runs trained two days later, at half the
    # speed (another load); no ratio, no test, one caution saying why.
    runs = _runs({"separate": [10.0, 12.0, 11.0], "separate_all": [5.0, 6.0, 5.5]})
    apart = _on_other_days(runs, "separate_all", days=2)
    assert paired.trained_apart(apart, "separate_all", "separate")
    assert not paired.trained_apart(runs, "separate_all", "separate")
    # One run of the arm trained while one of the reference did: not apart.
    touching = apart.copy()
    first = touching["run_name"] == "separate_all-seed0"
    touching.loc[first, "start_time"] = T0
    touching.loc[first, "end_time"] = T0 + pd.Timedelta(seconds=250)
    assert not paired.trained_apart(touching, "separate_all", "separate")

    table = speed.speed_by_arm(apart, pd.DataFrame(), ["separate", "separate_all"], "separate")
    assert math.isnan(table.set_index("arm").loc["separate_all", "speed_ratio"])
    assert speed.speed_cautions(apart, ["separate", "separate_all"], "separate") == [
        "separate_all trained at other times than separate's runs: speed not compared."
    ]
    # Overlapping but not side by side (40 s of 100): unpaired, the plain ratio of means.
    together = speed.speed_by_arm(
        _runs(
            {"separate": [10.0, 12.0, 11.0], "separate_all": [5.0, 6.0, 5.5]},
            {"separate_all": [60, 60, 60]},
        ),
        pd.DataFrame(),
        ["separate", "separate_all"],
        "separate",
    )
    assert together.set_index("arm").loc["separate_all", "speed_ratio"] == pytest.approx(16.5 / 33)
