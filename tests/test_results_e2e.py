"""A real tiny ablation over two tasks (the runner, the debug preset, CartPole and Acrobot, the
control arm that logs staleness and refilter time), exported with `make export` and rebuilt
with `make report FROM=` in a folder without any MLflow store: the same runs, the same points
and the same report as from the store."""

from __future__ import annotations

import filecmp
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from pandas.testing import assert_frame_equal

from analysis.load import load_ablation
from analysis.results import is_curve_metric, read_results
from reports.build import build_report
from tests.test_ablations import TINY, children, run_cli
from tests.test_makefile import make
from tests.test_results_folder import pdf_pages

EXPERIMENT = "portable"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("e2e")
    args = ["--env", "cartpole,acrobot", "--seeds", "2", "--steps", "300", "--jobs", "2", *TINY]
    args += ["--arms", "separate,coupled_refiltered", "--experiment", EXPERIMENT]
    result = run_cli(root, *args)
    assert result.returncode == 0, result.stderr[-2000:]
    exported = make("export", f"EXPERIMENT={EXPERIMENT}", f"OUT=results/{EXPERIMENT}", cwd=root)
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert exported.stdout.strip().endswith(" bytes")
    return {
        "root": root,
        "uri": f"sqlite:///{root}/mlflow.db",
        "out": root / "results" / EXPERIMENT,
    }


@pytest.mark.slow
def test_the_exported_folder_reads_back_what_the_store_holds(exported: dict) -> None:
    mlflow = load_ablation(EXPERIMENT, exported["uri"])
    folder, adaptive = read_results(exported["out"])
    assert adaptive is None and folder.multi_task
    assert_frame_equal(folder.runs, mlflow.runs)
    read = mlflow.metrics[mlflow.metrics["metric"].map(is_curve_metric)].reset_index(drop=True)
    assert_frame_equal(folder.metrics, read)
    for name in ("params", "run_params", "reference", "arm_order", "tasks", "planned_seeds"):
        assert getattr(folder, name) == getattr(mlflow, name), name
    names = set(folder.metrics["metric"])
    assert {"staleness/start_h_shift", "time/refilter", "system/load_avg_mean"} <= names
    assert {"diversity/h_dispersion", "diversity/replay_age", "eval/return"} <= names


@pytest.mark.slow
def test_runs_csv_speed_is_the_workers_and_scores_follow_the_tags(exported: dict) -> None:
    """updates_per_s against the worker's own ``final/updates_per_s``; normalized_score
    against the run's score tags."""
    runs = pd.read_csv(exported["out"] / "runs.csv", keep_default_na=False, dtype=str)
    by_name = children(MlflowClient(exported["uri"]), EXPERIMENT)
    assert sorted(runs["run_name"]) == sorted(by_name) and len(runs) == 8
    for row in runs.itertuples():
        run = by_name[row.run_name]
        worker = run.data.metrics["final/updates_per_s"]
        assert float(row.updates_per_s) == pytest.approx(worker, rel=1e-9)
        random, best = float(run.data.tags["score.random"]), float(run.data.tags["score.best"])
        expected = (float(row.final_return) - random) / (best - random)
        assert float(row.normalized_score) == pytest.approx(expected, rel=1e-12)
        assert (row.task, row.arm, row.seed) == (
            run.data.tags["task"],
            run.data.tags["arm"],
            run.data.tags["seed"],
        )


@pytest.mark.slow
def test_make_report_from_the_folder_alone_is_the_report_from_the_store(
    exported: dict, tmp_path: Path
) -> None:
    shutil.copytree(exported["out"], tmp_path / "results" / EXPERIMENT)  # no store here
    built = make("report", f"FROM=results/{EXPERIMENT}", cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-2000:]
    pdf = tmp_path / "reports" / "out" / f"{EXPERIMENT}.pdf"
    assert built.stdout.strip().splitlines()[-1] == str(Path("reports/out") / f"{EXPERIMENT}.pdf")
    assert pdf.exists()
    assert sorted(os.listdir(tmp_path)) == ["reports", "results"]  # no mlflow.db, no mlruns

    store_pdf = build_report(EXPERIMENT, exported["uri"], tmp_path / "from_store")
    for kind in ("tables", "figures"):
        one = tmp_path / "from_store" / EXPERIMENT / kind
        other = tmp_path / "reports" / "out" / EXPERIMENT / kind
        names = sorted(os.listdir(one))
        assert names == sorted(os.listdir(other)) and len(names) >= 2
        same, different, errors = filecmp.cmpfiles(one, other, names, shallow=False)
        assert (different, errors) == ([], []), (kind, different, errors)
    assert pdf_pages(store_pdf) == pdf_pages(pdf)
