"""The suite report on a real MLflow store holding a synthetic 3-task ablation: the numbers on
page 1 equal an independent computation, the reference arm is the parent's, a task without
score references is reported raw and left out of the aggregates."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric
from scipy import stats as scipy_stats

from analysis import stats, suite
from analysis.load import load_ablation
from tests.suite_store import child_tags, new_suite, report_pages

# task -> (random, best) or None; final returns per arm: seeds 0..2.
REFERENCES = {"cartpole": (20.0, 500.0), "acrobot": (-500.0, 0.0), "pendulum": None}
FINALS = {
    ("cartpole", "base"): (100.0, 200.0, 300.0),
    ("cartpole", "fast"): (260.0, 380.0, 500.0),
    ("acrobot", "base"): (-400.0, -300.0, -350.0),
    ("acrobot", "fast"): (-200.0, -250.0, -100.0),
    ("pendulum", "base"): (-900.0, -800.0, -700.0),
    ("pendulum", "fast"): (-600.0, -500.0, -650.0),
}


def _child(client, experiment_id, parent_id, task, arm, seed, final) -> None:
    tags = child_tags(parent_id, task, arm, seed)
    if REFERENCES[task] is not None:
        random, best = REFERENCES[task]
        tags |= {"score.random": repr(random), "score.best": repr(best), "score.kind": "max"}
        tags["score.source"] = f"{task} test table"
    run = client.create_run(experiment_id, run_name=f"{task}/{arm}-seed{seed}", tags=tags)
    now = int(time.time() * 1000)
    speed = 10.0 if arm == "base" else 20.0
    metrics = []
    for index, step in enumerate(range(0, 1001, 100)):
        value = final * min(step / 900, 1.0)  # flat over the last 10%: the final return
        metrics += [
            Metric("eval/return", value, now, step),
            Metric("time/total", float(index), now, step),
            Metric("progress/wm_updates", speed * index, now, step),
            Metric("speed/updates_per_s", speed, now, step),
        ]
    client.log_batch(run.info.run_id, metrics=metrics)
    client.set_terminated(run.info.run_id, "FINISHED")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("suite")
    client, uri, experiment_id, parent_id = new_suite(root, "base", ("fast", "base"), REFERENCES)
    for (task, arm), finals in FINALS.items():
        for seed, final in enumerate(finals):
            _child(client, experiment_id, parent_id, task, arm, seed, final)
    return report_pages(uri, root, n_resamples=300)


def _normalised(task: str, arm: str) -> list[float]:
    random, best = REFERENCES[task]
    return [(final - random) / (best - random) for final in FINALS[(task, arm)]]


def test_page_one_aggregates_equal_an_independent_computation(report: dict) -> None:
    aggregates = pd.read_csv(report["tables"] / "aggregates.csv")
    assert list(aggregates["arm"]) == ["base", "fast"]  # the parent's reference first
    for arm in ("base", "fast"):
        row = aggregates[aggregates["arm"] == arm].iloc[0]
        cartpole, acrobot = _normalised("cartpole", arm), _normalised("acrobot", arm)
        assert row["IQM"] == pytest.approx(scipy_stats.trim_mean(cartpole + acrobot, 0.25))
        task_means = [np.mean(cartpole), np.mean(acrobot)]
        assert row["mean"] == pytest.approx(np.mean(task_means))
        assert row["median"] == pytest.approx(np.median(task_means))
        gap = 1 - np.mean([np.mean(np.minimum(x, 1)) for x in (cartpole, acrobot)])
        assert row["optimality gap"] == pytest.approx(gap)
        assert row["IQM_low"] <= row["IQM"] <= row["IQM_high"]
    fast = aggregates[aggregates["arm"] == "fast"].iloc[0]
    # Every fast run beats every base run on both tasks, but cartpole's 260 < 300 once.
    wins = {
        task: np.mean([a > b for a in FINALS[(task, "fast")] for b in FINALS[(task, "base")]])
        for task in ("cartpole", "acrobot")
    }
    assert fast["poi"] == pytest.approx(np.mean(list(wins.values())))
    assert fast["speed_ratio"] == pytest.approx(2.0)

    page = report["pages"][0]
    assert "Verdict over the suite: Over 2 task(s): fast" in page
    assert "Reference arm: base" in page and "P(arm > base)" in page
    assert "Left out of the aggregates (no score references, raw scores only): pendulum" in page
    assert "pendulum: none (raw scores only" in page
    assert f"fast 6 (3) {fast['IQM']:.2g}" in page


def test_per_task_table_holm_covers_every_task_and_arm(report: dict) -> None:
    per_task = pd.read_csv(report["tables"] / "per_task.csv")
    assert (
        list(per_task["task"]) == ["cartpole", "cartpole", "acrobot", "acrobot"] + ["pendulum"] * 2
    )
    p_columns = [c for c in per_task.columns if c.endswith("_p") and f"{c}_holm" in per_task]
    family = per_task[p_columns].to_numpy(float)
    expected = stats.holm(family.ravel()).reshape(family.shape)
    np.testing.assert_allclose(per_task[[f"{c}_holm" for c in p_columns]], expected)
    assert per_task["holm_m"].iloc[0] == np.isfinite(family).sum()
    page = report["pages"][1]
    assert "Per task: final return per arm" in page
    assert "pendulum fast 3 -583.3" in page and "raw only" in page


def test_normalised_scores_follow_the_run_tags(report: dict) -> None:
    data = load_ablation("suite", report["uri"])
    assert data.reference == "base" and data.tasks == ("cartpole", "acrobot", "pendulum")
    scores = suite.normalised_scores(
        pd.DataFrame(
            {
                "final_return": [260.0, -100.0, -600.0],
                "score_random": [20.0, -500.0, np.nan],
                "score_best": [500.0, 0.0, np.nan],
            }
        )
    )
    np.testing.assert_allclose(scores["normalised"], [0.5, 0.8, np.nan])


def test_without_any_references_the_verdict_says_so() -> None:
    verdict = suite.suite_verdict(pd.DataFrame(), "base", 0, ["pendulum"])
    assert "no task has score references" in verdict


def _store_with_runs(root: Path, runs_per_task: int) -> dict:
    """The same suite with only the first ``runs_per_task`` seeds of every task and arm."""
    client, uri, experiment_id, parent_id = new_suite(root, "base", ("fast", "base"), REFERENCES)
    for (task, arm), finals in FINALS.items():
        for seed, final in enumerate(finals[:runs_per_task]):
            _child(client, experiment_id, parent_id, task, arm, seed, final)
    return report_pages(uri, root, n_resamples=200)


def test_one_run_per_task_gives_no_interval_and_no_call(tmp_path: Path) -> None:
    # One run per task and arm: every bootstrap resample is the data itself, so fast's
    # P(improvement) "interval" would be [1, 1], a call from nothing.
    report = _store_with_runs(tmp_path, 1)
    aggregates = pd.read_csv(report["tables"] / "aggregates.csv").set_index("arm")
    for arm in ("base", "fast"):
        cartpole, acrobot = _normalised("cartpole", arm)[:1], _normalised("acrobot", arm)[:1]
        row = aggregates.loc[arm]
        assert row["min_runs"] == 1
        assert row["IQM"] == pytest.approx(scipy_stats.trim_mean(cartpole + acrobot, 0.25))
        assert row["mean"] == pytest.approx(np.mean(cartpole + acrobot))
        for name in ("IQM", "mean", "median", "optimality gap"):
            assert np.isnan(row[f"{name}_low"]) and np.isnan(row[f"{name}_high"]), name
    fast = aggregates.loc["fast"]
    # One run each, fast above base on both tasks: P(improvement) 1, with no interval.
    assert fast["poi"] == 1.0 and np.isnan(fast["poi_low"]) and np.isnan(fast["poi_high"])

    page = report["pages"][0]
    assert "beats" not in page and "worse than" not in page and "told apart" not in page
    assert "[1.00, 1.00]" not in page
    assert (
        "no call on fast against base (P(improvement) 1.00, no interval: a task has only 1 "
        "finished run of one of them, and an interval needs 2+ per task and arm)" in page
    )
    assert (
        "With fewer than 2 runs per task and arm (as few as 1 here), no interval is reported "
        "(n/a) and no call is made there" in page
    )
    assert f"fast 2 (1) {fast['IQM']:.2g} [n/a]" in page
    assert "[n/a]: no interval." in page and "fewest per task here: base (1), fast (1)" in page
    per_task = report["pages"][1]
    assert "cartpole fast 1 260.0 (1 run, no CI)" in per_task and "± 0.0" not in per_task
    profiles = next(page for page in report["pages"] if "Performance profiles" in page)
    assert "no band for base, fast: fewer than 2 runs on a task" in profiles
    method = next(page for page in report["pages"] if page.startswith("Method"))
    assert "no interval (n/a) and no call below 2 finished runs per task and arm" in method


def test_two_runs_per_task_make_the_call(tmp_path: Path) -> None:
    # The minimum: two runs per task and arm; fast is above base in every pair on both
    # tasks, so every resample gives P(improvement) 1 and the interval lies above 0.5.
    report = _store_with_runs(tmp_path, 2)
    aggregates = pd.read_csv(report["tables"] / "aggregates.csv").set_index("arm")
    fast = aggregates.loc["fast"]
    assert fast["min_runs"] == 2 and aggregates.loc["base", "min_runs"] == 2
    wins = [
        np.mean([a > b for a in FINALS[(task, "fast")][:2] for b in FINALS[(task, "base")][:2]])
        for task in ("cartpole", "acrobot")
    ]
    assert wins == [1.0, 1.0]
    assert (fast["poi"], fast["poi_low"], fast["poi_high"]) == (1.0, 1.0, 1.0)
    for name in ("IQM", "mean", "median", "optimality gap"):
        assert fast[f"{name}_low"] <= fast[name] <= fast[f"{name}_high"], name
    page = report["pages"][0]
    assert "fast beats base (P(improvement) 1.00, 95% CI [1.00, 1.00] above 0.5)" in page
    assert "no call" not in page and "[n/a]" not in page
    assert "With as few as 2 run(s) per task and arm" in page and "provisional" in page


def test_the_verdict_makes_no_call_for_an_arm_short_of_runs_on_one_task() -> None:
    # fast has 3 runs per task but the reference only 1 on acrobot: no P(improvement) interval.
    rows = []
    for task, ref_runs in (("cartpole", 3), ("acrobot", 1)):
        for arm, count in (("base", ref_runs), ("fast", 3)):
            for seed in range(count):
                rows.append((task, arm, seed, 0.1 * seed + (0.5 if arm == "fast" else 0.0)))
    scores = pd.DataFrame(rows, columns=["task", "arm", "seed", "normalised"])
    scores = scores.assign(status="FINISHED", updates_per_s=1.0, h_dispersion=np.nan)
    table = suite.suite_aggregates(
        scores, ["base", "fast"], ["cartpole", "acrobot"], "base", np.random.default_rng(0), 100
    )
    fast = table.set_index("arm").loc["fast"]
    assert np.isfinite(fast["IQM_low"])  # fast's own intervals: 3 runs on every task
    assert np.isfinite(fast["poi"]) and np.isnan(fast["poi_low"])
    verdict = suite.suite_verdict(table, "base", 2, [])
    assert "no call on fast against base" in verdict and "only 1 finished run of" in verdict
