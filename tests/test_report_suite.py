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


def test_single_run_per_task_still_builds(tmp_path: Path) -> None:
    # A degenerate suite: one run per task and arm; intervals collapse, nothing crashes.
    scores = pd.DataFrame(
        {
            "task": ["cartpole", "cartpole", "acrobot", "acrobot"],
            "arm": ["base", "fast", "base", "fast"],
            "status": ["FINISHED"] * 4,
            "final_return": [100.0, 200.0, -300.0, -200.0],
            "score_random": [20.0, 20.0, -500.0, -500.0],
            "score_best": [500.0, 500.0, 0.0, 0.0],
            "updates_per_s": [1.0, 2.0, 1.0, 2.0],
            "h_dispersion": [np.nan] * 4,
        }
    )
    table = suite.suite_aggregates(
        scores, ["base", "fast"], ["cartpole", "acrobot"], "base", np.random.default_rng(0), 100
    )
    fast = table[table["arm"] == "fast"].iloc[0]
    assert fast["poi"] == 1.0 and fast["poi_low"] == fast["poi_high"] == 1.0
    assert np.isnan(fast["diversity_ratio"]) and fast["speed_ratio"] == pytest.approx(2.0)
