"""The adaptive seeding record of an ablation, read from its parent run in MLflow.

``ablations/adaptive.py`` writes it: the rule as ``adaptive.*`` params, where the ablation
stands as the ``adaptive.status`` tag, and one row per interim and compared arm in the
artifact ``adaptive/decisions.csv``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

DECISIONS_ARTIFACT = "adaptive/decisions.csv"
DECISIONS_COLUMNS = (
    "interim",
    "arm",
    "reference",
    "seeds",
    "mean_difference",
    "boundary_on_mean_difference",
    "decision",
)


@dataclass(frozen=True)
class AdaptiveRecord:
    """Attributes:
    rule: the ``adaptive.*`` params without the prefix (``interim``, ``max_seeds``, ...).
    status: e.g. ``decided at interim 2 of 5``.
    interims: one row per interim and compared arm, columns ``DECISIONS_COLUMNS``.
    """

    rule: dict[str, str]
    status: str
    interims: pd.DataFrame

    def outcome(self) -> pd.DataFrame:
        """One row per compared arm: its last decision, the interim (1-based) it was taken
        at, and the seeds it used; columns ``arm, decision, interim, seeds``."""
        last = self.interims.groupby("arm", sort=False).tail(1)
        return last[["arm", "decision", "interim", "seeds"]].reset_index(drop=True)


def load_adaptive(tracking_uri: str | None, parent_run_id: str | None) -> AdaptiveRecord | None:
    """The record of an adaptive ablation; None for a fixed-seed one (no ``adaptive.*`` params)."""
    if parent_run_id is None:
        return None
    client = MlflowClient(tracking_uri)
    parent = client.get_run(parent_run_id)
    rule = {
        k.removeprefix("adaptive."): v
        for k, v in parent.data.params.items()
        if k.startswith("adaptive.")
    }
    if not rule:
        return None
    interims = pd.DataFrame(columns=list(DECISIONS_COLUMNS))
    names = {a.path for a in client.list_artifacts(parent_run_id, "adaptive")}
    if DECISIONS_ARTIFACT in names:
        with tempfile.TemporaryDirectory() as folder:
            path = client.download_artifacts(parent_run_id, DECISIONS_ARTIFACT, folder)
            interims = pd.read_csv(Path(path))
    status = parent.data.tags.get("adaptive.status", "no interim finished yet")
    return AdaptiveRecord(rule, status, interims)
