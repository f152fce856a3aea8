"""The answer table and the sentences built from it, on hand-made per-run scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import summary


def _scores(separate: list[float], coupled: list[float], failed: int = 0) -> pd.DataFrame:
    rows = []
    for arm, returns in (("separate", separate), ("coupled", coupled)):
        for seed, value in enumerate(returns):
            rows.append((arm, seed, "FINISHED", value))
    rows += [("coupled", 10 + k, "FAILED", np.nan) for k in range(failed)]
    frame = pd.DataFrame(rows, columns=["arm", "seed", "status", "final_return"])
    frame["run_name"] = frame["arm"] + "-seed" + frame["seed"].astype(str)
    frame["auc_return"] = frame["final_return"] / 2
    frame["updates_per_s"] = np.where(frame["arm"] == "coupled", 2.0, 1.0) + 0.01 * frame["seed"]
    frame["h_dispersion"] = 1.0 + 0.01 * frame["seed"]
    return frame


def test_compare_arms_is_reproducible_and_complete() -> None:
    scores = _scores([10.0, 12.0, 14.0], [11.0, 13.0, 16.0])
    first = summary.compare_arms(scores, np.random.default_rng(5), n_resamples=300)
    again = summary.compare_arms(scores, np.random.default_rng(5), n_resamples=300)
    pd.testing.assert_frame_equal(first, again)
    assert list(first["arm"]) == ["separate", "coupled"]
    coupled = first.set_index("arm").loc["coupled"]
    assert coupled["diff"] == pytest.approx(4 / 3)
    assert coupled["speed_ratio"] == pytest.approx(2.01 / 1.01)
    assert coupled["final_return_p_holm"] >= coupled["final_return_p"]
    assert coupled["n"] == 3


def test_verdict_says_no_significant_difference_unless_holm_p_is_small() -> None:
    rng = np.random.default_rng(0)
    close = summary.compare_arms(_scores([10, 12, 14], [11, 13, 15]), rng, n_resamples=200)
    assert summary.verdict(close).startswith("No significant difference in final return")
    far = summary.compare_arms(_scores([10, 11, 12], [50, 51, 52.5]), rng, n_resamples=200)
    assert summary.verdict(far).startswith("Significant difference in final return: coupled")


def test_single_seed_arms_do_not_crash() -> None:
    table = summary.compare_arms(_scores([10.0], [11.0]), np.random.default_rng(0))
    coupled = table.set_index("arm").loc["coupled"]
    assert np.isnan(coupled["final_return_p"]) and "too few runs" in coupled["note"]
    assert "p-values are NaN" in summary.verdict(table)
    assert "no test is possible" in summary.power_note(1)


def test_problems_note_lists_failed_runs() -> None:
    note = summary.problems_note(_scores([1, 2], [3, 4], failed=2))
    assert note.startswith("2 of 6 runs did not finish")
    assert "coupled-seed10 (FAILED)" in note and "coupled-seed11 (FAILED)" in note
    assert summary.problems_note(_scores([1, 2], [3, 4])) == ""


def test_problems_note_lists_missing_arm_seed_pairs() -> None:
    scores = _scores([1, 2, 3], [4, 5])  # coupled has no seed 2
    assert summary.missing_runs(scores) == ["coupled-seed2"]
    assert "1 expected runs are missing: coupled-seed2." in summary.problems_note(scores)
