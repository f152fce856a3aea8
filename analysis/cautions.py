"""Every caution an ablation's report raises, in one list: the speed cautions (page 1 shows
the first, the speed page the first few) and the runs whose final return had no eval point
in its window. ``make export`` writes the list to the results folder as ``cautions.txt``, so
none of it lives only in a PDF's truncated lines.
"""

from __future__ import annotations

import pandas as pd

from analysis import final_window, speed, summary
from analysis.load import AblationData

CAUTIONS_FILE = "cautions.txt"
CAUTIONS_WHERE = "cautions.txt of the exported results folder and tables/speed_cautions.csv"
"""Where the full list is, for the pages that show only its first lines."""


def speed_cautions(data: AblationData, scores: pd.DataFrame) -> list[str]:
    """The report's speed cautions: per task over several tasks
    (:func:`analysis.speed.suite_speed_conditions`), else :func:`analysis.speed.speed_cautions`.
    ``scores``: :func:`analysis.summary.per_run_scores` of every run."""
    arms = summary.ordered_arms(scores["arm"], data.reference, data.arm_order)
    if data.multi_task:
        tasks = [task for task in data.tasks if (scores["task"] == task).any()]
        return speed.suite_speed_conditions(scores, tasks, arms, data.reference)
    return speed.speed_cautions(scores, arms, data.reference)


def report_cautions(data: AblationData, scores: pd.DataFrame | None = None) -> list[str]:
    """Every caution of the report, one sentence each, prefixed by what it is about
    (``speed: ...``, ``final return: ...``)."""
    if scores is None:
        scores = summary.per_run_scores(data.runs, data.metrics)
    lines = [f"speed: {caution}" for caution in speed_cautions(data, scores)]
    substitutes = final_window.window_substitutes(scores)
    lines += [
        f"final return: {row['run_name']}: {final_window.window_cell(row)}"
        for _, row in substitutes.iterrows()
    ]
    return lines


def cautions_text(data: AblationData) -> str:
    """The text of ``cautions.txt``: a header line, then one caution a line (or ``none``);
    line breaks inside a caution (a tag's value may hold one) become spaces."""
    lines = [" ".join(caution.split()) for caution in report_cautions(data)]
    header = f"# Cautions raised by the report of {data.experiment}, one a line."
    return "\n".join([header, *(lines or ["none"])]) + "\n"
