"""How diverse the actor-critic's imagination starts were, per task and arm, over a suite.

Each run's value of a ``diversity/*`` metric is the mean of its logged points over training
(as :func:`analysis.summary.per_run_scores` defines its ``h_dispersion``); a task and arm
give the mean over their FINISHED runs that logged it. The diversity ratio of an arm is
``mean(arm) / mean(reference)`` of the runs' h dispersion within a task; over the suite, the
geometric mean of the per-task ratios, with a stratified bootstrap interval (runs resampled
within each task and arm, tasks fixed).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis import aggregate, suite, summary

METRICS = {
    "distinct_starts": "diversity/distinct_starts",
    "h_dispersion": summary.DIVERSITY_METRIC,
    "latent_entropy": "diversity/latent_entropy",
    "replay_age": "diversity/replay_age",
}
"""Column -> the logged metric the diversity page summarises (h dispersion gives the ratio)."""
CONFIDENCE = 0.95


def run_means(scores: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """``scores`` (one row per run) plus one column per :data:`METRICS` entry: the mean of
    the run's logged points of that metric over training, NaN where it logged none."""
    out = scores.copy()
    for column, metric in METRICS.items():
        points = metrics[metrics["metric"] == metric]
        means = points.groupby("run_id")["value"].agg(lambda v: float(v.to_numpy(float).mean()))
        out[column] = out["run_id"].map(means).astype(float)
    return out


def task_arm_table(
    means: pd.DataFrame, per_task: pd.DataFrame, tasks: Sequence[str], arms: Sequence[str]
) -> pd.DataFrame:
    """One row per task and arm with finished runs: ``task, arm, runs``, the mean over its
    finished runs of each :data:`METRICS` column (NaN runs ignored; NaN when none logged
    it), and the h-dispersion ratio against the reference with its CI from ``per_task``
    (:func:`analysis.suite.per_task_tables`: ``diversity_ratio``, ``diversity_ci_low``,
    ``diversity_ci_high``)."""
    finished = means[means["status"] == "FINISHED"]
    ratios = per_task.set_index(["task", "arm"]) if len(per_task) else None
    rows = []
    for task in tasks:
        for arm in arms:
            runs = finished[(finished["task"] == task) & (finished["arm"] == arm)]
            if runs.empty:
                continue
            row: dict[str, object] = {"task": task, "arm": arm, "runs": len(runs)}
            for column in METRICS:
                values = runs[column].to_numpy(float)
                values = values[np.isfinite(values)]
                row[column] = float(values.mean()) if values.size else float("nan")
            found = ratios is not None and (task, arm) in ratios.index
            for name in ("diversity_ratio", "diversity_ci_low", "diversity_ci_high"):
                value = ratios.loc[(task, arm), name] if found and name in ratios else np.nan
                row[name] = float(value)
            rows.append(row)
    return pd.DataFrame(rows)


def _geometric_ratio(arm: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``(..., runs, tasks)`` each -> ``(...)``: the geometric mean over tasks of the ratio
    of per-task means; NaN unless every task's ratio is positive and finite."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a task no run logged it on: NaN
        ratios = np.nanmean(arm, -2) / np.nanmean(reference, -2)  # (..., tasks)
        valid = np.isfinite(ratios).all(-1) & (ratios > 0).all(-1)
        return np.where(
            valid, np.exp(np.mean(np.log(np.where(valid[..., None], ratios, 1.0)), -1)), np.nan
        )


def suite_ratios(
    scores: pd.DataFrame,
    arms: Sequence[str],
    reference: str,
    rng: np.random.Generator,
    n_resamples: int,
    column: str = "h_dispersion",
) -> pd.DataFrame:
    """Per arm (not the reference): ``arm, ratio, low, high``, the geometric mean over every
    task of mean(arm) / mean(reference) of ``column`` (page 1's diversity ratio) with its
    stratified percentile bootstrap interval. NaN bounds, and no draw, where an arm or the
    reference has fewer than ``MIN_RUNS_PER_TASK`` runs with a value on some task."""
    tasks = list(dict.fromkeys(scores["task"]))
    base = suite.arm_matrix(scores, reference, tasks, column)
    rows = []
    for arm in arms:
        if arm == reference:
            continue
        matrix = suite.arm_matrix(scores, arm, tasks, column)
        value = low = high = float("nan")
        if matrix.size and base.size:
            value = float(_geometric_ratio(matrix, base))
        if np.isfinite(value) and aggregate.enough_runs(matrix, base):
            replicates = _geometric_ratio(
                aggregate.stratified_resamples(matrix, rng, n_resamples),
                aggregate.stratified_resamples(base, rng, n_resamples),
            )  # (n_resamples,)
            tail = 100 * (1 - CONFIDENCE) / 2
            low, high = (float(b) for b in np.percentile(replicates, [tail, 100 - tail]))
        rows.append({"arm": arm, "ratio": value, "low": low, "high": high})
    return pd.DataFrame(rows, columns=["arm", "ratio", "low", "high"])
