"""The soak's verdict on an ablation: read through :mod:`analysis` like any consumer of the
store, and compared with an uninterrupted reference ablation of the same runs.

Per planned run (``<task>/<arm>-seed<k>``), over every point of every child run of that
name that the analysis sees:

- **lost**: no child of that name ended FINISHED;
- **steps duplicated**: points beyond the first at one (metric, step);
- **steps missing**: (metric, step) pairs of the reference's run absent here;
- **differs**: the run has a (metric, step) the reference lacks, or a point whose value is
  not bitwise the reference's. Wall-clock timings (:func:`is_timing`) only need to exist at
  the same steps.

A lost run counts once, as lost, whatever else it lacks; a duplicated point whose value is
the reference's counts only as duplicated. What no count covers (two parents, a run of one
name twice, a run left RUNNING or SCHEDULED, no PDF report, an incomplete reference) is
listed as a problem.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from analysis.load import AblationData, load_ablation, parent_runs
from analysis.store import report_files

TIMING_PREFIXES = ("time/", "speed/", "system/", "tracking/")
TIMING_METRICS = ("final/updates_per_s", "final/wall_seconds")
UNSETTLED = ("RUNNING", "SCHEDULED")


def is_timing(metric: str) -> bool:
    """Whether ``metric`` measures wall-clock time or the machine (differs from run to run)."""
    return metric.startswith(TIMING_PREFIXES) or metric in TIMING_METRICS


@dataclass
class Verdict:
    """The counts of one ablation against its reference."""

    lost: int = 0
    duplicated: int = 0
    missing: int = 0
    differ: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, other: Verdict) -> None:
        self.lost += other.lost
        self.duplicated += other.duplicated
        self.missing += other.missing
        self.differ += other.differ
        self.problems += other.problems

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.missing or self.differ or self.problems)


def _points(data: AblationData, run_ids: Sequence[str]) -> pd.DataFrame:
    return data.metrics.loc[data.metrics["run_id"].isin(run_ids), ["metric", "step", "value"]]


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def compare_run(points: pd.DataFrame, reference: pd.DataFrame) -> tuple[int, int, bool]:
    """``(duplicated, missing, differs)`` of one run's points against the reference run's
    (frames with columns ``metric``, ``step``, ``value``; the reference's one per step)."""
    counts = points.groupby(["metric", "step"]).size()
    duplicated = int((counts - 1).sum())
    expected = {(m, int(s)): v for m, s, v in reference.itertuples(index=False)}
    seen = {(m, int(s)) for m, s in counts.index}
    missing = len(expected.keys() - seen)
    differs = bool(seen - expected.keys()) or any(
        not is_timing(metric) and not _same(value, expected[(metric, int(step))])
        for metric, step, value in points.itertuples(index=False)
        if (metric, int(step)) in expected
    )
    return duplicated, missing, differs


def check_ablation(
    uri: str, experiment: str, reference: AblationData, planned: Sequence[str]
) -> Verdict:
    """The :class:`Verdict` of ``experiment`` at ``uri`` against the ``reference`` ablation
    (:func:`~analysis.load.load_ablation`'s) for the ``planned`` run names."""
    verdict = Verdict()
    data = load_ablation(experiment, uri)
    verdict.problems += _parent_problems(uri, experiment)
    verdict.problems += [f"reference: {text}" for text in _run_problems(reference, planned)]
    verdict.problems += _run_problems(data, planned)
    for name in planned:
        expected = reference.runs[reference.runs["run_name"] == name]
        if not (expected["status"] == "FINISHED").any():
            verdict.problems.append(f"reference: run {name} did not finish")
        runs = data.runs[data.runs["run_name"] == name]
        if not (runs["status"] == "FINISHED").any():
            verdict.lost += 1
            continue
        if len(expected) != 1:
            continue  # a problem already
        duplicated, missing, differs = compare_run(
            _points(data, list(runs["run_id"])), _points(reference, list(expected["run_id"]))
        )
        verdict.duplicated += duplicated
        verdict.missing += missing
        verdict.differ += int(differs)
    return verdict


def _parent_problems(uri: str, experiment: str) -> list[str]:
    parents = parent_runs(experiment, uri)
    if len(parents) != 1:
        return [f"{len(parents)} parent runs"]
    (status,) = parents["status"]
    problems = [] if status == "FINISHED" else [f"the parent run is {status}"]
    files = report_files(uri, parents["run_id"].iloc[0])
    if not any(path.endswith(".pdf") for path in files):
        problems.append("no PDF report attached to the parent run")
    return problems


def _run_problems(data: AblationData, planned: Sequence[str]) -> list[str]:
    problems = []
    counts = data.runs["run_name"].value_counts()
    for name, count in counts.items():
        if name not in planned:
            problems.append(f"a run {name} that was not planned")
        elif count > 1:
            problems.append(f"{count} runs named {name}")
    for name, status in data.runs[["run_name", "status"]].itertuples(index=False):
        if status in UNSETTLED:
            problems.append(f"run {name} left {status}")
    return problems
