"""The speed page's numbers: per arm (and per task in a suite) the runs' speed and training
time per phase, as medians with min and max over FINISHED runs, and whether the runs' machine
conditions make their speeds comparable.

Speed is the one definition of :func:`analysis.summary.per_run_scores` (WM updates /
training seconds); phase times are :func:`analysis.summary.phase_seconds`. Tasks differ in
cost, so speeds are summarised within a task and never pooled across tasks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis import paired, stats, summary
from analysis.load import AblationData

SUMMARIES = ("median", "low", "high")
"""Each summarised quantity gets ``<name>_median``, ``<name>_low`` (min), ``<name>_high`` (max)."""


def phase_names(phases: pd.DataFrame) -> list[str]:
    """The phase columns of :func:`summary.phase_seconds` output, ``total`` last."""
    return [c for c in phases.columns if c not in ("run_id", "arm", "task", "iterations")]


def _spread(values: np.ndarray) -> tuple[float, float, float]:
    values = values[np.isfinite(values)]
    if not values.size:
        return float("nan"), float("nan"), float("nan")
    return float(np.median(values)), float(values.min()), float(values.max())


def speed_by_arm(
    scores: pd.DataFrame, phases: pd.DataFrame, arms: Sequence[str], reference: str
) -> pd.DataFrame:
    """One task's speed summary, one row per arm of ``arms`` (in that order).

    Args:
        scores: :func:`summary.per_run_scores` rows of one task (all statuses; only FINISHED
            runs count).
        phases: :func:`summary.phase_seconds` of those FINISHED runs.
        arms: the arms to list, reference first.
        reference: the arm ``speed_ratio`` divides by.

    Returns:
        Columns ``arm``, ``runs`` (FINISHED runs with a speed), ``speed_median/low/high``
        (updates/s over those runs), ``speed_ratio`` with ``speed_ratio_low/high`` and
        ``speed_pairs`` (as page 1: the geometric mean of the per-seed ratios with its 95% CI
        and the side-by-side pairs it used where the arms' runs trained side by side,
        :mod:`analysis.paired`; else mean(arm) / mean(reference) of the runs' updates/s, no
        CI, 0 pairs; NaN for the reference) and, per phase of ``phases``,
        ``<phase>_median/low/high`` in seconds per iteration. NaN where an arm has no value.
    """
    finished = scores[scores["status"] == "FINISHED"]
    names = phase_names(phases)
    base = finished.loc[finished["arm"] == reference, "updates_per_s"].to_numpy(float)
    rows = []
    for arm in arms:
        speed = finished.loc[finished["arm"] == arm, "updates_per_s"].to_numpy(float)
        row: dict[str, object] = {"arm": arm, "runs": int(np.isfinite(speed).sum())}
        row.update(zip([f"speed_{s}" for s in SUMMARIES], _spread(speed), strict=True))
        row["speed_ratio"] = np.nan if arm == reference else stats.ratio_of_means(speed, base)
        row["speed_ratio_low"] = row["speed_ratio_high"] = np.nan
        row["speed_pairs"] = 0
        pairing = paired.comparison(scores, arm, reference) if arm != reference else None
        if arm != reference and paired.trained_apart(scores, arm, reference):
            row["speed_ratio"] = np.nan
        if pairing is not None and pairing.paired:
            row["speed_ratio"], row["speed_pairs"] = pairing.ratio, pairing.side_by_side
            row["speed_ratio_low"], row["speed_ratio_high"] = pairing.low, pairing.high
        own = phases[phases["arm"] == arm] if not phases.empty else phases
        for name in names:
            values = own[name].to_numpy(float) if name in own else np.empty(0)
            row.update(zip([f"{name}_{s}" for s in SUMMARIES], _spread(values), strict=True))
        rows.append(row)
    return pd.DataFrame(rows)


def task_phase_seconds(data: AblationData) -> pd.DataFrame:
    """:func:`summary.phase_seconds` of the FINISHED runs with each run's ``task`` added."""
    phases = summary.phase_seconds(data.finished_metrics)
    task_of = dict(zip(data.runs["run_id"], data.runs["task"], strict=True))
    phases.insert(2, "task", [task_of.get(run_id, "") for run_id in phases["run_id"]])
    return phases


def speed_by_task(
    scores: pd.DataFrame,
    phases: pd.DataFrame,
    tasks: Sequence[str],
    arms: Sequence[str],
    reference: str,
) -> pd.DataFrame:
    """:func:`speed_by_arm` for each task (column ``task`` first), stacked in ``tasks``
    order; a task lists the arms of ``arms`` that have any run on it (FINISHED or not, so
    a task whose arm only failed shows 0 runs). ``phases``: :func:`task_phase_seconds`."""
    frames = []
    for task in tasks:
        rows = scores[scores["task"] == task]
        present = [arm for arm in arms if (rows["arm"] == arm).any()]
        if not present:
            continue
        frame = speed_by_arm(rows, phases[phases["task"] == task], present, reference)
        frame.insert(0, "task", task)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["task"])


def speed_cautions(scores: pd.DataFrame, arms: Sequence[str], reference: str) -> list[str]:
    """The cautions on one task's speed comparisons, arm by arm against the reference
    (:mod:`analysis.paired`): an arm that trained apart from the reference is not compared,
    and says so; one whose runs trained side by side with the reference's is compared
    within pairs, and only what can distort a pair is flagged
    (:func:`analysis.paired.pair_conditions`: load that differs between pairs cancels in
    their ratios); the rest are compared unpaired, and :func:`summary.speed_conditions`
    flags the differing conditions of their runs and the reference's."""
    others = [arm for arm in arms if arm != reference]
    apart = [arm for arm in others if paired.trained_apart(scores, arm, reference)]
    pairs = {arm: paired.speed_pairs(scores, arm, reference) for arm in others if arm not in apart}
    lines = [f"{arm} {paired.TRAINED_APART.format(reference=reference)}." for arm in apart]
    paired_arms = [arm for arm, frame in pairs.items() if paired.paired_speed(frame).paired]
    lines += [w for arm in paired_arms for w in paired.pair_conditions(pairs[arm], arm, reference)]
    unpaired = [arm for arm in pairs if arm not in paired_arms]
    if unpaired or not others:
        lines += summary.speed_conditions(scores[scores["arm"].isin([reference, *unpaired])])
    return lines


def suite_speed_conditions(
    scores: pd.DataFrame, tasks: Sequence[str], arms: Sequence[str], reference: str
) -> list[str]:
    """:func:`speed_cautions` within each task (a speed ratio compares runs of one task
    only, and tasks differ in speed by design), each warning prefixed with the tasks it
    holds for: ``'cartpole, acrobot: ...'``, or ``'Every task: ...'`` (of the tasks with
    FINISHED runs; a task without any has no speed to compare)."""
    finished = scores[scores["status"] == "FINISHED"]
    checked = [task for task in tasks if (finished["task"] == task).any()]
    holds_for: dict[str, list[str]] = {}
    for task in checked:
        rows = finished[finished["task"] == task]
        present = [arm for arm in arms if (rows["arm"] == arm).any()]
        for warning in speed_cautions(rows, present, reference):
            holds_for.setdefault(warning, []).append(task)
    return [
        f"{'Every task' if len(named) == len(checked) > 1 else ', '.join(named)}: {warning}"
        for warning, named in holds_for.items()
    ]
