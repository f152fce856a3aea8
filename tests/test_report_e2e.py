"""A tiny CartPole ablation with the control arm, end to end: runs -> MLflow -> PDF."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from pypdf import PdfReader

from tests.test_ablations import TINY, children, run_cli


@pytest.mark.slow
def test_tiny_ablation_report_has_the_method_page_and_one_speed(tmp_path: Path) -> None:
    args = ["--env", "cartpole", "--seeds", "1", "--steps", "300", "--jobs", "2", *TINY]
    args += ["--arms", "separate,coupled_refiltered", "--experiment", "tiny"]
    result = run_cli(tmp_path, *args, report=True)
    assert result.returncode == 0, result.stderr[-2000:]

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = children(client, "tiny")
    for name, run in runs.items():
        metrics, tags = run.data.metrics, run.data.tags
        # One speed: the worker's final/updates_per_s is WM updates / training seconds.
        assert metrics["final/updates_per_s"] == pytest.approx(
            metrics["progress/wm_updates"] / metrics["time/total"]
        ), name
        assert tags["cpu_count"] and tags["gpu"] and len(tags["load_avg_start"].split()) == 3
        assert metrics["system/load_avg_mean"] >= 0
    refiltered = runs["coupled_refiltered-seed0"]
    assert refiltered.data.params["train.refilter_starts"] == "True"
    assert "time/refilter" in refiltered.data.metrics
    assert "staleness/start_h_shift" in refiltered.data.metrics

    pages = PdfReader(tmp_path / "reports" / "out" / "tiny.pdf").pages
    text = [re.sub(r"\s+", " ", page.extract_text()) for page in pages]
    assert "Verdict:" in text[0] and "Power: with n = 1 seeds per arm" in text[0]
    method = text[1]
    assert "Method: what was compared and how" in method
    assert "coupled_refiltered: as coupled, but the batch is filtered again" in method
    assert "its extra filter pass per update costs" in method
    assert re.search(r"filtered again: median \d", method)
    assert "Speed: training time per iteration by phase" in text[2]
    # The console's per-arm updates/s and page 1's are the same numbers.
    parent = client.search_runs(
        [client.get_experiment_by_name("tiny").experiment_id], "tags.`ablation.role` = 'parent'"
    )[0]
    for arm in ("separate", "coupled_refiltered"):
        console = parent.data.metrics[f"summary/{arm}/updates_per_s"]
        # Secondary table row: arm, IQM, updates/s (mean of runs), ...
        assert re.search(rf"{arm} \S+ {re.escape(f'{console:.3g}')} ", text[0]), (arm, console)


@pytest.mark.slow
def test_tiny_ablation_with_the_joint_and_interleaved_schedules(tmp_path: Path) -> None:
    args = ["--env", "cartpole", "--seeds", "1", "--steps", "300", "--jobs", "2", *TINY]
    args += ["--arms", "joint_all,interleaved", "--experiment", "orders"]
    result = run_cli(tmp_path, *args, report=True)
    assert result.returncode == 0, result.stderr[-2000:]

    runs = children(MlflowClient(f"sqlite:///{tmp_path}/mlflow.db"), "orders")
    assert {name: run.info.status for name, run in runs.items()} == {
        "joint_all-seed0": "FINISHED",
        "interleaved-seed0": "FINISHED",
    }
    for name, schedule, starts in (
        ("joint_all-seed0", "joint", "all"),
        ("interleaved-seed0", "interleaved", "last"),
    ):
        params, metrics = runs[name].data.params, runs[name].data.metrics
        assert (params["train.schedule"], params["train.starts"]) == (schedule, starts)
        assert metrics["progress/wm_updates"] == metrics["progress/ac_updates"] > 0

    pages = PdfReader(tmp_path / "reports" / "out" / "orders.pdf").pages
    method = re.sub(r"\s+", " ", pages[1].extract_text())
    assert "joint: collect; n times: the WM and AC losses of one batch" in method
    assert "official DreamerV3" in method and "as STORM" in method
    assert "joint_all: joint schedule, imagining from every posterior step" in method
    assert "interleaved: interleaved schedule, imagining from the last posterior step" in method
