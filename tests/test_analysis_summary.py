"""The answer table and the sentences built from it, on hand-made per-run scores; the runs
missing from an ablation's plan and a metric no run logged, on a real store."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from pypdf import PdfReader

from ablations.cli import main
from ablations.plan.spec import AblationSpec
from ablations.tracking.store import AblationStore
from analysis import stats, summary
from analysis.load import load_ablation
from reports.build import build_report


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


def test_verdict_covers_speed_and_diversity_too() -> None:
    table = summary.compare_arms(_scores([10, 12, 14], [11, 13, 15]), np.random.default_rng(0))
    text = summary.verdict(table)
    coupled = table.set_index("arm").loc["coupled"]
    assert f"Updates/s: coupled x{coupled['speed_ratio']:.2f} " in text
    assert f"p = {coupled['updates_per_s_p_holm']:.2g}" in text
    assert "H dispersion: coupled x1.00 not significant" in text
    assert "Return AUC: coupled" in text


def test_zero_variance_at_a_ceiling_is_compared_by_mann_whitney_and_said_so() -> None:
    # A CartPole ceiling (500 in every run) against another constant: Welch is 0/0, but
    # complete separation of 5 vs 5 runs is Mann-Whitney's exact p = 2/252.
    table = summary.compare_arms(_scores([312.0] * 5, [500.0] * 5), np.random.default_rng(0))
    coupled = table.set_index("arm").loc["coupled"]
    assert coupled["final_return_test"] == "Mann-Whitney"
    assert coupled["final_return_p"] == pytest.approx(2 / 252)
    assert coupled["mw_p"] == pytest.approx(2 / 252)
    assert "Welch's t is undefined" in coupled["note"]
    text = summary.verdict(table)
    assert text.startswith("Significant difference in final return: coupled above separate")
    assert "Mann-Whitney, as Welch is undefined" in text and "too few" not in text
    # Equal constants: no difference, and the verdict says why no test was run.
    same = summary.compare_arms(_scores([500.0] * 3, [500.0] * 3), np.random.default_rng(0))
    assert "every run of both arms scored 500" in summary.verdict(same)


def test_single_seed_arms_do_not_crash() -> None:
    table = summary.compare_arms(_scores([10.0], [11.0]), np.random.default_rng(0))
    coupled = table.set_index("arm").loc["coupled"]
    assert np.isnan(coupled["final_return_p"]) and "too few runs" in coupled["note"]
    # One run has no t interval either: NaN, not a band of width 0.
    assert coupled["return_mean"] == 11.0 and np.isnan(coupled["return_ci_half"])
    assert "no test is defined (coupled: too few runs" in summary.verdict(table)
    assert "no test is possible" in summary.power_note(1)


def test_no_bootstrap_interval_below_the_minimum_n() -> None:
    # n = 2: P(improvement) is 1 with complete separation, but a CI "[1, 1]" would claim
    # certainty the data cannot give.
    table = summary.compare_arms(_scores([10.0, 11.0], [20.0, 21.0]), np.random.default_rng(0))
    coupled = table.set_index("arm").loc["coupled"]
    assert coupled["poi"] == 1.0
    for column in ("poi_ci_low", "diff_ci_low", "speed_ci_low", "diversity_ci_low", "iqm_ci_low"):
        assert np.isnan(coupled[column]), column
    assert coupled["ci_note"] == "not meaningful at n = 2"
    assert coupled["mw_min_p"] == pytest.approx(1 / 3)
    five = summary.compare_arms(
        _scores(list(range(5)), list(range(2, 7))), np.random.default_rng(0)
    )
    assert np.isfinite(five.set_index("arm").loc["coupled", "diff_ci_low"])


def test_each_bootstrap_interval_counts_its_own_runs() -> None:
    # Five runs per arm, but one coupled run never logged h dispersion: its ratio CI would
    # rest on 4 runs, below the minimum, while final return and speed have 5.
    scores = _scores([10.0, 12.0, 14.0, 11.0, 13.0], [11.0, 13.0, 16.0, 12.0, 15.0])
    scores.loc[(scores["arm"] == "coupled") & (scores["seed"] == 0), "h_dispersion"] = np.nan
    coupled = summary.compare_arms(scores, np.random.default_rng(0), n_resamples=200)
    coupled = coupled.set_index("arm").loc["coupled"]
    assert stats.MIN_BOOTSTRAP_N == 5 and coupled["h_dispersion_runs"] == 4
    assert np.isfinite(coupled["diff_ci_low"]) and np.isfinite(coupled["speed_ci_low"])
    assert np.isnan(coupled["diversity_ci_low"]) and np.isnan(coupled["diversity_ci_high"])
    assert np.isfinite(coupled["diversity_ratio"])


def _log_child(client, experiment_id, parent_id, arm, seed, diversity: bool) -> None:
    """A finished child run as the runner logs it, with or without diversity/h_dispersion."""
    tags = {"mlflow.parentRunId": parent_id, "ablation.role": "child", "arm": arm}
    tags |= {"seed": str(seed), "env": "cartpole", "preset": "debug"}
    run = client.create_run(experiment_id, run_name=f"{arm}-seed{seed}", tags=tags)
    now = int(time.time() * 1000)
    metrics = []
    for index, step in enumerate(range(0, 1001, 100)):
        values = {
            "eval/return": 100.0 + 10 * seed + (5.0 if arm == "coupled" else 0.0),
            "time/total": 2.0 * index,
            "progress/wm_updates": 10.0 * index,
            "progress/iterations": 5.0 * index,
        }
        if diversity:
            values["diversity/h_dispersion"] = 1.0 + 0.1 * seed
        metrics += [Metric(key, value, now, step) for key, value in values.items()]
    client.log_batch(run.info.run_id, metrics=metrics)
    client.set_terminated(run.info.run_id, "FINISHED")


def _ablation(client: MlflowClient, name: str, root: Path, logs_diversity: dict) -> None:
    experiment_id = client.create_experiment(name, artifact_location=str(root / name))
    parent = client.create_run(experiment_id, run_name=name, tags={"ablation.role": "parent"})
    for seed in range(3):  # seed by seed, arms interleaved, as the runner trains them
        for arm, diversity in logs_diversity.items():
            _log_child(client, experiment_id, parent.info.run_id, arm, seed, diversity)


def test_a_metric_no_run_logged_is_said_to_be_missing(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/store.db"
    client = MlflowClient(uri)
    _ablation(client, "no-diversity", tmp_path, {"separate": False, "coupled": False})
    _ablation(client, "half-diversity", tmp_path, {"separate": True, "coupled": False})

    data = load_ablation("no-diversity", uri)
    assert not (data.metrics["metric"] == summary.DIVERSITY_METRIC).any()
    scores = summary.per_run_scores(data.runs, data.metrics)
    table = summary.compare_arms(scores, np.random.default_rng(0), n_resamples=100)
    assert (table["h_dispersion_runs"] == 0).all() and (table["final_return_runs"] == 3).all()
    text = summary.verdict(table)
    assert "H dispersion: diversity/h_dispersion was not logged by any run." in text
    assert "nan" not in text and "n=0" not in text
    # The other scores were logged and are still tested.
    assert "Updates/s: coupled x1.00 " in text and "Return AUC: coupled" in text
    pdf = build_report("no-diversity", uri, tmp_path / "out", n_resamples=100)
    page = re.sub(r"\s+", " ", PdfReader(pdf).pages[0].extract_text())
    assert "H dispersion: diversity/h_dispersion was not logged by any run." in page
    assert "xnan" not in page

    # Logged by the reference's runs only: the arm is untested, and the sentence says why.
    data = load_ablation("half-diversity", uri)
    table = summary.compare_arms(
        summary.per_run_scores(data.runs, data.metrics), np.random.default_rng(0), n_resamples=100
    )
    text = summary.verdict(table)
    assert (
        "H dispersion: coupled untested (diversity/h_dispersion was not logged by its runs)."
        in text
    )


def test_a_score_no_run_has_is_named_by_its_metrics() -> None:
    # No run logged eval/return or time/total: final return, AUC and speed say which metrics.
    scores = _scores([10.0, 12.0, 14.0], [11.0, 13.0, 15.0])
    scores[["final_return", "auc_return", "updates_per_s"]] = np.nan
    text = summary.verdict(summary.compare_arms(scores, np.random.default_rng(0)))
    assert text.startswith("Final return: eval/return was not logged by any run.")
    assert "Return AUC: eval/return was not logged by any run." in text
    assert "Updates/s: progress/wm_updates and time/total were not both logged by any run." in text
    assert "H dispersion: coupled x1.00 not significant" in text


def test_power_note_uses_the_holm_first_step_alpha() -> None:
    note = summary.power_note(5, family_size=4)
    d = stats.min_detectable_effect(5, alpha=0.05 / 4)
    assert "alpha/4 = 0.0125" in note and f"d >= {d:.2f}" in note and d > 2.64
    assert f"d >= {stats.min_detectable_effect(5):.2f} at the last step's alpha 0.05" in note
    assert "smallest possible p at 5 vs 5 runs is 0.00794, below" in note
    assert "at 3 vs 3 runs is 0.1, so it cannot reach even alpha = 0.05" in summary.power_note(3, 8)
    assert "alpha/1 = 0.05" in summary.power_note(3, 0)  # no finite p: a family of one


def test_holm_family_counts_the_finite_p_values() -> None:
    table = summary.compare_arms(_scores([10, 12, 14], [11, 13, 15]), np.random.default_rng(0))
    assert summary.holm_family_size(table) == 4  # one arm x four scores


def test_phase_seconds_weights_each_interval_by_its_iterations() -> None:
    # Two log points: 10 iterations at (wm 1.0, other 0.1) s each, then 30 at (wm 2.0, other 0).
    rows = []
    for step, iterations, wm, other in ((100, 10, 1.0, 0.1), (400, 40, 2.0, 0.0)):
        rows += [
            ("r1", "coupled", "time/wm", step, wm),
            ("r1", "coupled", "time/other", step, other),
            ("r1", "coupled", "progress/iterations", step, iterations),
        ]
    metrics = pd.DataFrame(rows, columns=["run_id", "arm", "metric", "step", "value"])
    (row,) = summary.phase_seconds(metrics).to_dict("records")
    assert row["wm"] == pytest.approx((10 * 1.0 + 30 * 2.0) / 40)
    assert row["other"] == pytest.approx(1.0 / 40)
    assert row["total"] == pytest.approx(71.0 / 40) and row["iterations"] == 40


def test_problems_note_lists_failed_runs() -> None:
    note = summary.problems_note(_scores([1, 2], [3, 4], failed=2))
    assert note.startswith("2 of 6 runs did not finish")
    assert "coupled-seed10 (FAILED)" in note and "coupled-seed11 (FAILED)" in note
    assert summary.problems_note(_scores([1, 2], [3, 4])) == ""


def test_problems_note_lists_missing_arm_seed_pairs() -> None:
    scores = _scores([1, 2, 3], [4, 5, 6])
    scores = scores[scores["run_name"] != "coupled-seed1"]  # a gap in coupled's seeds
    assert summary.missing_runs(scores) == ["coupled-seed1"]
    assert "1 expected runs are missing: coupled-seed1." in summary.problems_note(scores)
    # Without a recorded plan, an arm's seeds are its own 0..last: coupled stopping at seed
    # 1 (adaptive seeding decided it) is not missing seed 2; the recorded plan says more.
    shorter = _scores([1, 2, 3], [4, 5])
    assert summary.missing_runs(shorter) == []
    planned = [("", arm, seed) for arm in ("separate", "coupled") for seed in range(3)]
    assert summary.missing_runs(shorter.assign(task=""), planned) == ["coupled-seed2"]


def test_the_runner_records_its_plan_and_a_planned_seed_no_arm_has_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing the runner writes lands in the checkout
    uri = f"sqlite:///{tmp_path}/store.db"
    spec = AblationSpec("cartpole", 2, ("separate", "coupled"), "debug", name="plan")
    store = AblationStore(uri, spec)
    client = MlflowClient(uri)
    ids = {}
    for run in spec.runs():  # all finished already: the runner below trains nothing
        ids[run.name] = store.child_for(run, "cpu")[0]
        client.log_metric(ids[run.name], "final/eval_return", 1.0, step=300)
        client.set_terminated(ids[run.name], "FINISHED")
    args = ["--env", "cartpole", "--seeds", "2", "--preset", "debug", "--experiment", "plan"]
    assert main([*args, "--tracking-uri", uri, "--no-report"]) == 0

    # Seed 1 of every arm never appeared: a grid inferred from the runs cannot see it.
    client.delete_run(ids["separate-seed1"])
    client.delete_run(ids["coupled-seed1"])
    data = load_ablation("plan", uri)
    assert data.planned_seeds == {"separate": 2, "coupled": 2}
    assert summary.missing_runs(data.runs) == []
    assert summary.missing_runs(data.runs, data.planned_runs) == [
        "separate-seed1",
        "coupled-seed1",
    ]


def test_missing_runs_over_several_tasks_are_named_with_their_task() -> None:
    frame = pd.DataFrame(
        [("a", "separate", 0), ("a", "coupled", 0), ("b", "separate", 0)],
        columns=["task", "arm", "seed"],
    )
    planned = [(task, arm, 0) for task in ("a", "b") for arm in ("separate", "coupled")]
    assert summary.missing_runs(frame, planned) == ["b/coupled-seed0"]
    assert summary.missing_runs(frame.iloc[:1], planned[:2]) == ["coupled-seed0"]


def test_phase_seconds_of_runs_without_iteration_counts_is_the_plain_mean() -> None:
    rows = [("r1", "separate", "time/wm", step, value) for step, value in ((100, 1.0), (200, 3.0))]
    metrics = pd.DataFrame(rows, columns=["run_id", "arm", "metric", "step", "value"])
    (row,) = summary.phase_seconds(metrics).to_dict("records")
    assert row["wm"] == pytest.approx(2.0) and row["total"] == pytest.approx(2.0)
