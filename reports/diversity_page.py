"""The suite report's diversity page: per task and arm, how diverse the actor-critic's starts
were over training (distinct starts, h dispersion, latent entropy, replay age), the
h-dispersion ratio against the reference per task and over the suite, each with its CI;
per task the diversity curves, and one figure of every run's start diversity against its
normalised score, the mechanism the seed plan names (coupled's starts could be less diverse,
and so learn less)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis import aggregate, diversity, method, plots, stats
from reports.flow import Flow
from reports.layout import format_ratio_ci, significant

TITLE = "Diversity of the actor-critic's starts per task and arm (mean over training)"
SUITE_ROW = "all tasks"
LABELS = {
    "distinct_starts": "distinct\nstarts",
    "h_dispersion": "h\ndispersion",
    "latent_entropy": "latent\nentropy (nats)",
    "replay_age": "replay age\n(agent steps)",
}


@dataclass(frozen=True)
class SuiteDiversity:
    """What the suite report takes from this page: its pages, figures and table (CSV), and
    per arm the suite ratio with its interval (``arm, ratio, low, high``) for page 1."""

    pages: list[Figure]
    figures: dict[str, Figure]
    table: pd.DataFrame
    suite: pd.DataFrame


def suite_diversity(
    scores: pd.DataFrame,
    metrics: pd.DataFrame,
    per_task: pd.DataFrame,
    tasks: Sequence[str],
    arms: Sequence[str],
    reference: str,
    seed: int,
    n_resamples: int,
) -> SuiteDiversity:
    """The diversity page of a suite. ``scores``: per-run scores with ``normalised``;
    ``metrics``: the FINISHED runs' points; ``per_task``: the per-task comparison tables
    (their h-dispersion ratios and CIs); ``seed`` seeds the suite intervals' Generator."""
    means = diversity.run_means(scores, metrics)
    table = diversity.task_arm_table(means, per_task, tasks, arms)
    suite = diversity.suite_ratios(
        scores, arms, reference, np.random.default_rng(seed), n_resamples
    )
    task_of = dict(zip(scores["run_id"], scores["task"], strict=True))
    figures = {
        "diversity_against_score": plots.diversity_against_score(means, list(arms), list(tasks))
    }
    for column, metric in diversity.METRICS.items():
        title = f"{LABELS[column]} of the AC's starts over training, per task (mean, 95% CI)"
        figures[f"diversity_{column}"] = plots.task_learning_curves(
            metrics, task_of, list(tasks), list(arms), metric, title.replace("\n", " ")
        )
    rows = suite.rename(columns={"ratio": "diversity_ratio", "low": "diversity_ci_low"})
    rows = rows.rename(columns={"high": "diversity_ci_high"}).assign(task=SUITE_ROW)
    logged = means[(means["status"] == "FINISHED") & np.isfinite(means["h_dispersion"])]
    rows["runs"] = [int((logged["arm"] == arm).sum()) for arm in rows["arm"]]
    full = pd.concat([table, rows], ignore_index=True) if len(table) else rows
    pages = _pages(table, rows, reference)
    return SuiteDiversity(pages, figures, full, suite)


def _pages(table: pd.DataFrame, suite: pd.DataFrame, reference: str) -> list[Figure]:
    flow = Flow(TITLE)
    header = [
        "task",
        "arm",
        "runs",
        *LABELS.values(),
        f"h-dispersion ratio\nvs {reference} [95% CI]",
    ]
    rows = []
    for row in table.to_dict("records"):
        cells = [row["task"], row["arm"], str(row["runs"])]
        cells += [significant(row[column]) for column in LABELS]
        if row["arm"] == reference:
            cells.append("reference")
        else:
            low, high = row["diversity_ci_low"], row["diversity_ci_high"]
            cells.append(format_ratio_ci(row["diversity_ratio"], low, high, "n/a"))
        rows.append(cells)
    for row in suite.to_dict("records"):
        low, high = row["diversity_ci_low"], row["diversity_ci_high"]
        ratio = format_ratio_ci(row["diversity_ratio"], low, high, "n/a")
        blank = [""] * len(LABELS)
        rows.append([SUITE_ROW, row["arm"], str(row["runs"]), *blank, f"{ratio} (geometric mean)"])
    flow.table(header, rows)
    flow.lines([(line, 8, "normal") for line in _notes(reference)])
    return flow.pages


def _notes(reference: str) -> list[str]:
    return [
        "Each run's value of a metric is the mean of its logged points over training; a row "
        "gives the mean over the task and arm's finished runs that logged it (n/a: none did). "
        + "; ".join(method.DIVERSITY_DEFINITIONS[:4])
        + ".",
        f"h-dispersion ratio = mean(arm) / mean({reference}) of the runs' h dispersion within a "
        "task, with a percentile bootstrap 95% CI (arms resampled apart), as page 1 of a one-task "
        f"report gives it: none ([n/a]) below {stats.MIN_BOOTSTRAP_N} runs per arm. "
        f"'{SUITE_ROW}': the geometric mean of the per-task ratios (page 1's diversity ratio), "
        "with a stratified bootstrap 95% CI (runs resampled within each task and arm, tasks "
        f"fixed): none ([n/a]) below {aggregate.MIN_RUNS_PER_TASK} runs per task and arm.",
        "Figures: each run's mean start diversity against its normalised score, every task, the "
        "seed plan's stated risk of the coupled schedule (less diverse starts) set beside what "
        "the runs scored; then each metric over training, one panel per task (mean and 95% CI "
        "over seeds).",
    ]
