"""The MLflow store an ablation lives in: where a SQLite store's file is, whether it exists,
and the report's files attached to the ablation's parent run.

The report (:mod:`reports.build`) reaches MLflow only through :mod:`analysis`: this module
and :mod:`analysis.load`.
"""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from analysis.load import AblationDataError

SQLITE_PREFIX = "sqlite:///"

READ_ERRORS: tuple[type[Exception], ...] = (AblationDataError, MlflowException)
"""What reading an ablation can raise for a reason the user can mend (no such experiment, a
store that cannot be read); each has a message whose first line says what."""


def sqlite_file(uri: str) -> str | None:
    """The absolute path of the file of the SQLite store at ``uri``; None for other stores."""
    if not uri.startswith(SQLITE_PREFIX):
        return None
    return os.path.abspath(uri.removeprefix(SQLITE_PREFIX))


def missing_store(tracking_uri: str | None) -> str | None:
    """The file of a SQLite store that does not exist (reading it would create it, and its
    folder), else None; ``None`` means MLflow's current tracking URI."""
    path = sqlite_file(tracking_uri or mlflow.get_tracking_uri())
    return path if path is not None and not os.path.exists(path) else None


def attach_report(
    tracking_uri: str | None, parent_run_id: str, pdf_path: Path, files_dir: Path
) -> None:
    """Log the PDF under ``report/``, and ``files_dir``'s ``figures/`` and ``tables/`` under
    ``report/figures`` and ``report/tables``, as artifacts of the parent run."""
    client = MlflowClient(tracking_uri=tracking_uri)
    client.log_artifact(parent_run_id, str(pdf_path), artifact_path="report")
    for sub in ("figures", "tables"):
        client.log_artifacts(parent_run_id, str(files_dir / sub), artifact_path=f"report/{sub}")


def report_files(tracking_uri: str | None, parent_run_id: str) -> list[str]:
    """The artifact paths of the report attached to the parent run (:func:`attach_report`):
    the PDF and the folders beside it; empty when none is."""
    client = MlflowClient(tracking_uri=tracking_uri)
    return [artifact.path for artifact in client.list_artifacts(parent_run_id, "report")]
