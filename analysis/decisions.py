"""The adaptive seeding record of an ablation, read from its parent run in MLflow (or from
an exported results folder, :mod:`analysis.results`, through :func:`adaptive_record`).

``ablations/adaptive.py`` writes it: the rule as ``adaptive.*`` params, where the ablation
stands as the ``adaptive.status`` tag (and each arm's as ``adaptive.decision.<arm>``), and one
row per interim and compared arm in the artifact ``adaptive/decisions.csv``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
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
ADAPTIVE_PREFIX = "adaptive."
NO_INTERIM_STATUS = "no interim finished yet"


@dataclass(frozen=True)
class AdaptiveRecord:
    """Attributes:
    rule: the ``adaptive.*`` params without the prefix (``interim``, ``max_seeds``, ...).
    status: e.g. ``decided at interim 2 of 5``.
    interims: one row per interim and compared arm, columns ``DECISIONS_COLUMNS``.
    tags: the parent's ``adaptive.*`` tags without the prefix (``status``,
        ``decision.<arm>``), as recorded.
    """

    rule: dict[str, str]
    status: str
    interims: pd.DataFrame
    tags: dict[str, str] = field(default_factory=dict)

    def outcome(self) -> pd.DataFrame:
        """One row per compared arm: its last decision, the interim (1-based) it was taken
        at, and the seeds it used; columns ``arm, decision, interim, seeds``."""
        last = self.interims.groupby("arm", sort=False).tail(1)
        return last[["arm", "decision", "interim", "seeds"]].reset_index(drop=True)


def no_interims() -> pd.DataFrame:
    """The interims of an adaptive ablation before its first interim finished: none."""
    return pd.DataFrame(columns=list(DECISIONS_COLUMNS))


def adaptive_record(
    params: Mapping[str, str], tags: Mapping[str, str], interims: pd.DataFrame
) -> AdaptiveRecord | None:
    """The record from the parent run's ``params`` and ``tags`` (all of them, or only the
    ``adaptive.*`` ones) and the decisions table; None without ``adaptive.*`` params (a
    fixed-seed ablation). Every reader of the record builds it here."""
    rule = _without_prefix(params)
    if not rule:
        return None
    recorded = _without_prefix(tags)
    return AdaptiveRecord(rule, recorded.get("status", NO_INTERIM_STATUS), interims, recorded)


def _without_prefix(values: Mapping[str, str]) -> dict[str, str]:
    return {
        key.removeprefix(ADAPTIVE_PREFIX): value
        for key, value in values.items()
        if key.startswith(ADAPTIVE_PREFIX)
    }


def load_adaptive(tracking_uri: str | None, parent_run_id: str | None) -> AdaptiveRecord | None:
    """The record of an adaptive ablation; None for a fixed-seed one (no ``adaptive.*`` params)."""
    if parent_run_id is None:
        return None
    client = MlflowClient(tracking_uri)
    parent = client.get_run(parent_run_id)
    if not _without_prefix(parent.data.params):
        return None
    interims = no_interims()
    names = {a.path for a in client.list_artifacts(parent_run_id, "adaptive")}
    if DECISIONS_ARTIFACT in names:
        with tempfile.TemporaryDirectory() as folder:
            path = client.download_artifacts(parent_run_id, DECISIONS_ARTIFACT, folder)
            interims = pd.read_csv(Path(path))
    return adaptive_record(parent.data.params, parent.data.tags, interims)
