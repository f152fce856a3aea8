"""End to end: a real MLflow store with a tiny synthetic ablation -> frames -> PDF + artifacts."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from pypdf import PdfReader

from analysis import stats, summary
from analysis.load import AblationDataError, latest_ablation, load_ablation
from reports.build import build_report, report_pages
from tests.test_report_audit import outside_the_page

EXPERIMENT = "tiny-ablation"
STEPS = np.arange(0, 1001, 100)  # (11,) env steps of each log point
FAILED_RUN = "coupled-seed3"
REPO_ROOT = Path(__file__).resolve().parents[1]


def _log_run(
    client: MlflowClient,
    experiment_id: str,
    parent_id: str,
    arm: str,
    seed: int,
    rng: np.random.Generator,
    return_offset: float,
    last_step: int = 1000,
    status: str = "FINISHED",
) -> str:
    schedule, starts = arm.split("_")[0], ("all" if arm.endswith("_all") else "last")
    tags = {
        "mlflow.parentRunId": parent_id,
        "ablation.role": "child",
        "arm": arm,
        "schedule": schedule,
        "starts": starts,
        "seed": str(seed),
        "env": "cartpole",
        "preset": "debug",
        "git_commit": "abc1234",
        "device": "cpu",
        "torch_version": "2.13.0",
        "hardware": "test-cpu x2",
        "cpu_count": "2",
        "gpu": "none",
    }
    run = client.create_run(experiment_id, run_name=f"{arm}-seed{seed}", tags=tags)
    run_id = run.info.run_id
    params = {"train.steps": "1000", "train.batch_size": "16", "train.schedule": schedule}
    params |= {"train.seq_len": "64", "train.train_ratio": "512", "train.collect_every": "16"}
    # Coupled skips the starts phase and so runs faster; returns overlap between arms (the
    # per-seed offsets interleave), so the verdict must be "no significant difference".
    phases = {"collect": 0.05, "wm": 0.4, "imagine": 0.1, "ac": 0.2}
    if schedule == "separate":
        phases["starts"] = 0.15
    per_iteration = sum(phases.values())
    now = int(time.time() * 1000)
    metrics = []
    for index, step in enumerate(map(int, STEPS)):
        if step > last_step:
            break
        values = {
            "progress/iterations": 10.0 * index,
            "progress/wm_updates": 10.0 * index,
            "time/other": 0.01,
            "eval/return": 300 * (1 - np.exp(-step / 300)) + return_offset + rng.normal(0, 5),
            "eval/return_std": 20.0,
            "episode/return": 250 * (1 - np.exp(-step / 300)),
            "episode/length": 100.0,
            "time/total": 10 * index * (per_iteration + 0.01),
            "speed/updates_per_s": 1 / per_iteration * (1 + 0.05 * rng.normal()),
            "speed/env_steps_per_s": 2.5,
            "diversity/h_dispersion": (1.0 if schedule == "separate" else 0.7)
            + 0.05 * rng.random(),
            "diversity/distinct_starts": 16.0 if schedule == "separate" else 12.0,
            "diversity/latent_entropy": 3.0 + 0.1 * rng.random(),
            "loss/wm": 5.0 * np.exp(-step / 500),
        }
        values.update(
            {f"time/{phase}": sec * (1 + 0.1 * rng.random()) for phase, sec in phases.items()}
        )
        metrics += [Metric(key, float(value), now, step) for key, value in values.items()]
    metrics.append(Metric("system/load_avg_mean", 1.0 + 0.1 * rng.random(), now, last_step))
    client.log_batch(run_id, metrics=metrics, params=[Param(k, v) for k, v in params.items()])
    client.set_terminated(run_id, status=status)
    return run_id


@pytest.fixture(scope="module")
def ablation(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A real SQLite MLflow store: parent + 2 arms x 3 seeds finished + 1 failed run."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment(EXPERIMENT, artifact_location=str(root / "artifacts"))
    parent = client.create_run(experiment_id, run_name=EXPERIMENT, tags={"ablation.role": "parent"})
    parent_id = parent.info.run_id
    rng = np.random.default_rng(7)
    offsets = {"separate": (-30.0, 0.0, 30.0), "coupled": (-20.0, 5.0, 20.0)}
    for seed in range(3):  # seed by seed, arms interleaved, as the runner trains them
        for arm, arm_offsets in offsets.items():
            _log_run(client, experiment_id, parent_id, arm, seed, rng, arm_offsets[seed])
    _log_run(
        client, experiment_id, parent_id, "coupled", 3, rng, 0.0, last_step=400, status="FAILED"
    )
    client.set_terminated(parent_id, status="FINISHED")
    # An experiment with only a parent run: the loader must refuse it clearly.
    empty_id = client.create_experiment("empty-ablation", artifact_location=str(root / "empty"))
    client.create_run(empty_id, run_name="empty-ablation", tags={"ablation.role": "parent"})

    out = root / "out"
    pdf = build_report(EXPERIMENT, tracking_uri=uri, out_dir=out, n_resamples=500)
    return {"uri": uri, "client": client, "parent_id": parent_id, "out": out, "pdf": pdf}


def _pdf_text(path: Path) -> str:
    text = " ".join(page.extract_text() for page in PdfReader(path).pages)
    return re.sub(r"\s+", " ", text)


def test_loader_builds_tidy_frames(ablation: dict) -> None:
    data = load_ablation(EXPERIMENT, ablation["uri"])
    assert data.parent_run_id == ablation["parent_id"]
    assert len(data.runs) == 7
    assert len(data.finished_runs) == 6
    assert list(data.problem_runs["run_name"]) == [FAILED_RUN]
    failed = data.runs.set_index("run_name").loc[FAILED_RUN]
    assert failed["final_step"] == 400
    assert list(data.metrics.columns) == [
        "run_id",
        "arm",
        "seed",
        "metric",
        "step",
        "value",
        "wall_clock",
    ]
    # wall_clock is time/total at the same (or nearest earlier) step.
    run_metrics = data.metrics[data.metrics["run_id"] == data.runs["run_id"].iloc[0]]
    clock = run_metrics[run_metrics["metric"] == "time/total"].set_index("step")["value"]
    returns = run_metrics[run_metrics["metric"] == "eval/return"].set_index("step")
    assert np.allclose(returns["wall_clock"], clock.loc[returns.index])
    assert data.params["train.batch_size"] == "16"


def test_loader_rejects_unknown_and_empty_experiments(ablation: dict) -> None:
    with pytest.raises(AblationDataError, match="unknown experiment"):
        load_ablation("no-such-ablation", ablation["uri"])
    with pytest.raises(AblationDataError, match="no child runs"):
        load_ablation("empty-ablation", ablation["uri"])


def test_pdf_answers_the_question_and_lists_runs(ablation: dict) -> None:
    pdf = ablation["pdf"]
    assert pdf == ablation["out"] / f"{EXPERIMENT}.pdf"
    text = _pdf_text(pdf)
    for header in (
        "final return (mean ± 95% CI)",
        "Welch p (Holm-adj.)",
        "Mann-Whitney p",
        "Hedges' g",
        "P(improvement)",
        "speed ratio (updates/s)",
        "diversity ratio (h disp.)",
        "n seeds",
    ):
        assert header in text, header
    assert "No significant difference in final return" in text
    # Power at the first Holm step: one arm x four scores, Welch's test, 3 seeds per arm.
    d = stats.min_detectable_effect(3, alpha=0.05 / 4)
    assert "first Holm step tests at alpha/4 = 0.0125: there Welch's test detects only" in text
    assert f"Cohen's d >= {d:.2f}" in text
    assert "smallest possible p at 3 vs 3 runs is 0.1, so it cannot reach even alpha" in text
    assert "Updates/s: coupled x" in text and "H dispersion: coupled x" in text
    assert "not shown below 5 runs per arm (not meaningful at n = 3)" in text
    assert "not paired" in text
    assert "1 of 7 runs did not finish" in text and FAILED_RUN in text
    assert "Appendix A: every run" in text and "Appendix B: environment and config" in text
    assert "train.batch_size = 16" in text and "torch_version: 2.13.0" in text
    assert not list(pdf.parent.glob("*.tmp"))  # the atomic write left no temp file


def test_method_and_speed_pages_follow_page_one(ablation: dict) -> None:
    pages = [re.sub(r"\s+", " ", page.extract_text()) for page in PdfReader(ablation["pdf"]).pages]
    method, speed = pages[1], pages[2]
    assert method.startswith("Method: what was compared and how")
    for arm in ("separate:", "coupled:"):
        assert arm in method
    # 11 eval points at steps 0..1000: the window (steps >= 900) holds 2 of them.
    assert "the window holds 2 eval points per run here" in method
    assert summary.holm_family_sentence(4, over_tasks=False) in method
    assert "Holm family: 4 tests, every arm against the reference on each of" in method
    assert (
        "its two-sided p twice the smaller one-sided p, capped at 1 (scipy's definition" in method
    )
    assert "Their learning is not paired" in method
    # The runs were logged one after the other: no pair trained side by side.
    assert "Here no comparison had 2+ such pairs: speed is unpaired too." in method
    assert "before its optimiser step" in method
    # n = 512 * 16 / (16 * 64) = 8 updates per iteration: 3.5 WM updates behind on average.
    assert "with n = 8 updates per iteration, 3.5 WM updates fewer on average" in method
    assert "commit: abc1234" in method and "CPUs: 2" in method
    assert "Speed: training time per iteration by phase" in speed
    assert "Runs trained under comparable conditions." in speed
    data = load_ablation(EXPERIMENT, ablation["uri"])
    runs = data.finished_runs.set_index("run_name")
    # Speed per run = WM updates / training seconds at the end: separate-seed0 = 100 / 100 * 0.91.
    expected = 100 / (100 * (0.05 + 0.4 + 0.1 + 0.2 + 0.15 + 0.01))
    assert runs.loc["separate-seed0", "run_id"]
    assert f"{expected:.3g} [{expected:.3g}, {expected:.3g}]" in speed
    # Each row: arm, FINISHED runs (the failed coupled-seed3 is out), speed, and the ratio
    # page 1 gives: mean(coupled) / mean(separate), coupled lacking the 0.15 s starts phase.
    coupled = 100 / (100 * (0.05 + 0.4 + 0.1 + 0.2 + 0.01))
    assert f"separate 3 {expected:.3g} [{expected:.3g}, {expected:.3g}] reference" in speed
    assert (
        f"coupled 3 {coupled:.3g} [{coupled:.3g}, {coupled:.3g}] {coupled / expected:.3g}" in speed
    )


def test_report_is_logged_to_the_parent_run(ablation: dict) -> None:
    client, parent_id = ablation["client"], ablation["parent_id"]
    logged = {item.path for item in client.list_artifacts(parent_id, "report")}
    assert f"report/{EXPERIMENT}.pdf" in logged
    figures = {item.path for item in client.list_artifacts(parent_id, "report/figures")}
    tables = {item.path for item in client.list_artifacts(parent_id, "report/tables")}
    assert "report/figures/learning_curves_steps.png" in figures and len(figures) == 6
    assert {"report/tables/answer.csv", "report/tables/runs.csv"} <= tables


def test_latest_ablation_skips_ablations_without_runs(ablation: dict, tmp_path: Path) -> None:
    # The empty ablation started last; `make report` with no name must still pick this one.
    assert latest_ablation(ablation["uri"]) == EXPERIMENT
    with pytest.raises(AblationDataError, match="no ablation found"):
        latest_ablation(f"sqlite:///{tmp_path}/empty.db")


def test_cli_unknown_experiment_exits_2_without_writing(ablation: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [sys.executable, "-m", "reports.build", "--experiment", "no-such-ablation"]
    command += ["--tracking-uri", ablation["uri"], "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "no-such-ablation" in result.stderr
    assert not out.exists()


def test_no_text_leaves_a_one_task_reports_pages(ablation: dict) -> None:
    data = load_ablation(EXPERIMENT, ablation["uri"])
    figures, _, _ = report_pages(data, None, n_resamples=100)
    off = {index: outside_the_page(figure) for index, figure in enumerate(figures, start=1)}
    assert {index: names for index, names in off.items() if names} == {}
