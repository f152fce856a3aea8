"""A synthetic suite ablation in a real MLflow store, for the suite report's tests: the parent
run as the runner records it, and child runs carrying the runner's tags."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from mlflow.tracking import MlflowClient
from pypdf import PdfReader

from reports.build import build_report

EXPERIMENT = "suite"


def new_suite(
    root: Path, reference: str, arms: Sequence[str], tasks: Sequence[str]
) -> tuple[MlflowClient, str, str, str]:
    """An SQLite store under ``root`` holding the suite's parent run; returns
    ``(client, uri, experiment_id, parent_run_id)``."""
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment(EXPERIMENT, artifact_location=str(root / "artifacts"))
    tags = {"ablation.role": "parent", "reference": reference, "arms": ",".join(arms)}
    tags["tasks"] = ",".join(tasks)
    parent = client.create_run(experiment_id, run_name=EXPERIMENT, tags=tags)
    return client, uri, experiment_id, parent.info.run_id


def child_tags(parent_id: str, task: str, arm: str, seed: int) -> dict[str, str]:
    """The tags the runner gives a suite's child run (debug preset)."""
    tags = {"mlflow.parentRunId": parent_id, "ablation.role": "child", "arm": arm}
    return tags | {"seed": str(seed), "env": task, "task": task, "preset": "debug"}


def report_pages(uri: str, root: Path, n_resamples: int) -> dict:
    """Build the suite's PDF; its pages' text (whitespace collapsed), tables folder and URI."""
    pdf = build_report(EXPERIMENT, tracking_uri=uri, out_dir=root / "out", n_resamples=n_resamples)
    pages = [re.sub(r"\s+", " ", page.extract_text()) for page in PdfReader(pdf).pages]
    return {"pages": pages, "tables": root / "out" / EXPERIMENT / "tables", "uri": uri}
