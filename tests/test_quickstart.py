"""The fast tier's one end-to-end ablation: the quick start's command, small, from the CLI to
two finished MLflow runs and the PDF report."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient
from pypdf import PdfReader

from tests.test_ablations import TINY, children, run_cli


def test_a_small_ablation_trains_both_arms_and_writes_its_report(tmp_path: Path) -> None:
    args = ["--env", "cartpole", "--seeds", "1", "--steps", "300", "--jobs", "2", *TINY]
    result = run_cli(tmp_path, *args, "--experiment", "quick", report=True)
    assert result.returncode == 0, result.stderr[-2000:]

    runs = children(MlflowClient(f"sqlite:///{tmp_path}/mlflow.db"), "quick")
    assert {name: run.info.status for name, run in runs.items()} == {
        "separate-seed0": "FINISHED",
        "coupled-seed0": "FINISHED",
    }
    for run in runs.values():
        metrics = run.data.metrics
        assert metrics["progress/wm_updates"] == metrics["progress/ac_updates"] > 0
        assert "final/eval_return" in metrics
    pages = PdfReader(tmp_path / "reports" / "out" / "quick.pdf").pages
    assert "Verdict:" in pages[0].extract_text()
