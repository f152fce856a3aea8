"""The answer over a suite of tasks: normalised scores, per-arm aggregates with stratified
bootstrap CIs and per-task comparisons with one Holm family across tasks.

Uses :mod:`analysis.aggregate` for the suite statistics and :mod:`analysis.summary` for each
task's single-task statistics. A task's normalised score is ``(final return - random) /
(best - random)`` with the references its runs carry (tags ``score.random``, ``score.best``);
tasks without them are kept out of the aggregates and reported on raw scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis import aggregate, paired, stats, summary

PROFILE_TAUS = np.linspace(0.0, 1.5, 31)
"""Thresholds of the performance profiles, in normalised score."""


def normalised_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """``scores`` (:func:`summary.per_run_scores` output with the ``task`` and
    ``score_random``/``score_best`` columns) plus ``normalised``: NaN for a task without
    references."""
    span = scores["score_best"] - scores["score_random"]
    out = scores.copy()
    out["normalised"] = (scores["final_return"] - scores["score_random"]) / span.where(span != 0)
    return out


def tasks_with_references(scores: pd.DataFrame, tasks: Sequence[str]) -> list[str]:
    """The tasks (in ``tasks`` order) whose finished runs all have finite normalised scores."""
    finished = scores[scores["status"] == "FINISHED"]
    keep = []
    for task in tasks:
        rows = finished[finished["task"] == task]
        if len(rows) and np.isfinite(rows["normalised"].to_numpy(float)).all():
            keep.append(task)
    return keep


def arm_matrix(scores: pd.DataFrame, arm: str, tasks: Sequence[str], column: str) -> np.ndarray:
    """One arm's FINISHED runs as ``(runs, tasks)`` of ``column``, NaN-padded."""
    finished = scores[(scores["status"] == "FINISHED") & (scores["arm"] == arm)]
    values = {
        task: finished.loc[finished["task"] == task, column].dropna().tolist() for task in tasks
    }
    return aggregate.score_matrix(values, list(tasks))


def _runnable(matrix: np.ndarray) -> bool:
    return matrix.size > 0 and bool(np.isfinite(matrix).any(0).all())


def _geometric_ratio(arm: np.ndarray, reference: np.ndarray) -> float:
    """Geometric mean over tasks of the ratio of per-task means; NaN unless every task has
    a positive finite ratio. Both ``(runs, tasks)``."""
    if arm.size == 0 or reference.size == 0:
        return float("nan")
    with np.errstate(all="ignore"):
        ratios = np.nanmean(arm, 0) / np.nanmean(reference, 0)
    if not (np.isfinite(ratios).all() and (ratios > 0).all()):
        return float("nan")
    return float(np.exp(np.mean(np.log(ratios))))


def suite_aggregates(
    scores: pd.DataFrame,
    arms: Sequence[str],
    tasks: Sequence[str],
    reference: str,
    rng: np.random.Generator,
    n_resamples: int = stats.DEFAULT_RESAMPLES,
) -> pd.DataFrame:
    """One row per arm (``arms`` order, reference first): ``runs`` and ``min_runs`` (the
    fewest finished runs on any task), each of :data:`aggregate.AGGREGATES` of the
    normalised final scores over ``tasks`` with its stratified 95% CI (``<name>``,
    ``<name>_low``, ``<name>_high``), P(arm > reference) with its CI (``poi``...), and the
    speed and diversity ratios: the geometric mean over all tasks of mean(arm) /
    mean(reference) updates/s (``speed_ratio``) and h dispersion (``diversity_ratio``).
    NaN where an arm lacks a finished run on some task; NaN bounds (the value kept) where a
    task has fewer than :data:`aggregate.MIN_RUNS_PER_TASK` runs of the arm (or, for
    P(improvement), of the reference). Where the arms' runs of a (task, seed) trained side
    by side, the speed ratio is instead the paired one over all tasks' pairs
    (:mod:`analysis.paired`), with its 95% CI (``speed_low``, ``speed_high``), its Wilcoxon
    signed-rank p (``speed_p``) and its pair counts (``speed_pairs``,
    ``speed_pairs_side_by_side``, ``speed_faster``); NaN bounds and p when unpaired."""
    scores = normalised_scores(scores) if "normalised" not in scores else scores
    all_tasks = list(dict.fromkeys(scores["task"]))
    base = arm_matrix(scores, reference, tasks, "normalised")
    rows = []
    for arm in arms:
        matrix = arm_matrix(scores, arm, tasks, "normalised")
        counts = np.isfinite(matrix).sum(0)
        row: dict[str, object] = {
            "arm": arm,
            "runs": int(counts.sum()),
            "min_runs": int(counts.min()) if counts.size else 0,
        }
        for name, statistic in aggregate.AGGREGATES.items():
            value = low = high = np.nan
            if _runnable(matrix):
                value, low, high = aggregate.aggregate_ci(matrix, statistic, rng, n_resamples)
            row[name], row[f"{name}_low"], row[f"{name}_high"] = value, low, high
        row["poi"] = row["poi_low"] = row["poi_high"] = np.nan
        if arm != reference and _runnable(matrix) and _runnable(base):
            row["poi"], row["poi_low"], row["poi_high"] = aggregate.probability_of_improvement_ci(
                matrix, base, rng, n_resamples
            )
        for name, column in (("speed", "updates_per_s"), ("diversity", "h_dispersion")):
            row[f"{name}_ratio"] = _geometric_ratio(
                arm_matrix(scores, arm, all_tasks, column),
                arm_matrix(scores, reference, all_tasks, column),
            )
        if arm != reference and paired.trained_apart(scores, arm, reference):
            row["speed_ratio"] = np.nan
        row.update(_paired_speed(scores, arm, reference))
        rows.append(row)
    return pd.DataFrame(rows)


def _paired_speed(scores: pd.DataFrame, arm: str, reference: str) -> dict[str, object]:
    """The suite's speed columns where the arms' runs trained side by side: the paired
    comparison over every task's (task, seed) pairs (their ratios are unitless, so they
    pool), replacing the geometric mean of per-task ratios of means."""
    speed = paired.comparison(scores, arm, reference) if arm != reference else None
    row: dict[str, object] = {"speed_low": np.nan, "speed_high": np.nan, "speed_p": np.nan}
    row |= {"speed_pairs": 0, "speed_pairs_side_by_side": 0, "speed_faster": 0}
    if speed is None:
        return row
    row |= {"speed_pairs": speed.pairs, "speed_pairs_side_by_side": speed.side_by_side}
    if speed.paired:
        row |= {"speed_ratio": speed.ratio, "speed_low": speed.low, "speed_high": speed.high}
        row |= {"speed_p": speed.p, "speed_faster": speed.faster}
    return row


def per_task_tables(
    scores: pd.DataFrame,
    tasks: Sequence[str],
    reference: str,
    rng: np.random.Generator,
    n_resamples: int = stats.DEFAULT_RESAMPLES,
    order: Sequence[str] = (),
) -> pd.DataFrame:
    """Each task's :func:`summary.compare_arms` table stacked (column ``task``), with every
    primary p-value Holm-adjusted again as one family over all tasks x arms x scores
    (``*_p_holm``; its size in ``holm_m``)."""
    tables = []
    for task in tasks:
        rows = scores[scores["task"] == task]
        if (rows["status"] == "FINISHED").any():
            table = summary.compare_arms(rows, rng, reference, n_resamples, order)
            table.insert(0, "task", task)
            tables.append(table)
    if not tables:
        return pd.DataFrame(columns=["task", "arm", "n"])
    table = pd.concat(tables, ignore_index=True)
    p_columns = [f"{c}_p" for c in summary.TESTED_SCORES if f"{c}_p" in table]
    if p_columns:
        family = table[p_columns].to_numpy(float)  # (tasks x arms, scores)
        adjusted = stats.holm(family.ravel()).reshape(family.shape)
        for index, column in enumerate(p_columns):
            table[f"{column}_holm"] = adjusted[:, index]
        table["holm_m"] = int(np.isfinite(family).sum())
    return table


def suite_verdict(
    aggregates: pd.DataFrame, reference: str, n_tasks: int, excluded: Sequence[str]
) -> str:
    """The answer over the suite in sentences, honest about how much the runs can say: a
    call (beats, worse, cannot be told apart) only from a P(improvement) interval, so none
    where a task has fewer than :data:`aggregate.MIN_RUNS_PER_TASK` runs of either arm."""
    if n_tasks == 0:
        return (
            "No aggregate over tasks: no task has score references, so every task is "
            "reported on raw scores only (per-task table below)."
        )
    others = aggregates[aggregates["arm"] != reference]
    if others.empty:
        return f"No comparison possible: no arm besides {reference} has finished runs."
    fewest = aggregate.MIN_RUNS_PER_TASK
    base = aggregates.loc[aggregates["arm"] == reference, "min_runs"]
    base_runs = int(base.iloc[0]) if len(base) else 0
    parts = []
    for row in others.itertuples():
        runs = min(int(row.min_runs), base_runs)
        if not np.isfinite(row.poi):
            parts.append(f"{row.arm}: not every task has a finished run of both arms")
        elif runs < fewest:
            parts.append(
                f"no call on {row.arm} against {reference} (P(improvement) {row.poi:.2f}, no "
                f"interval: a task has only {runs} finished run{'' if runs == 1 else 's'} of "
                f"one of them, and an interval needs {fewest}+ per task and arm)"
            )
        elif row.poi_low > 0.5:
            parts.append(
                f"{row.arm} beats {reference} (P(improvement) {row.poi:.2f}, 95% CI "
                f"[{row.poi_low:.2f}, {row.poi_high:.2f}] above 0.5)"
            )
        elif row.poi_high < 0.5:
            parts.append(
                f"{row.arm} is worse than {reference} (P(improvement) {row.poi:.2f}, 95% CI "
                f"[{row.poi_low:.2f}, {row.poi_high:.2f}] below 0.5)"
            )
        else:
            parts.append(
                f"{row.arm} cannot be told apart from {reference} (P(improvement) "
                f"{row.poi:.2f}, 95% CI [{row.poi_low:.2f}, {row.poi_high:.2f}] includes 0.5)"
            )
    runs = int(aggregates["min_runs"].min())
    if runs < fewest:
        power = (
            f"With fewer than {fewest} runs per task and arm (as few as {runs} here), no "
            "interval is reported (n/a) and no call is made there: with one run per task "
            "every stratified bootstrap resample repeats the data, and the interval would "
            f"collapse onto the estimate. Rerun with {fewest}+ seeds per task."
        )
    elif runs < 5:
        power = (
            f"With as few as {runs} run(s) per task and arm, the stratified bootstrap "
            f"resamples only {runs} value(s) per task, so its intervals understate the "
            "uncertainty: treat any call as provisional (Agarwal et al. 2021 suggest 5+ runs "
            "per task)."
        )
    else:
        power = f"{runs}+ runs per task and arm: the stratified intervals are usable."
    left_out = (
        f" Left out of the aggregates (no score references, raw scores only): "
        f"{', '.join(excluded)}."
        if excluded
        else ""
    )
    return f"Over {n_tasks} task(s): " + "; ".join(parts) + ". " + power + left_out
