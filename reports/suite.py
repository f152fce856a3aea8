"""The report of an ablation over several tasks: page 1 answers over the suite, then the
per-task table, the method page, the speed page (per task and arm), performance profiles and
per-task learning curves (the appendix of runs is added by :mod:`reports.build`)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis import final_window, method, paired, plots, speed, suite, summary
from analysis.cautions import speed_cautions
from analysis.config_scopes import config_scopes
from analysis.decisions import AdaptiveRecord
from analysis.load import AblationData
from reports import pages
from reports.adaptive_page import front_summary
from reports.diversity_page import suite_diversity
from reports.layout import (
    PAGE_SIZE,
    draw_table,
    format_ci,
    format_mean_ci,
    format_p,
    format_ratio_ci,
    text_page,
    write_lines,
)

TASK_ROWS_PER_PAGE = 26
SPEED_NOTE = (
    "One row per task and arm: tasks differ in cost, so speeds are summarised within a task "
    "and never pooled across tasks. Seconds per training iteration; training time = collect "
    "+ updates (evaluation and logging excluded); 'other' is training time outside the phase "
    "timers, so each run's phases add up to its training time. Speed = WM updates / training "
    "seconds per run; the per-task table's updates/s is the mean of these runs. The speed "
    "ratio: where the arms' runs of a seed trained side by side, the geometric mean of the "
    "task's per-seed ratios with its 95% CI ('paired'; page 1 pools every task's pairs); else "
    "mean(arm) / mean(reference) within the task, and page 1's the geometric mean of these "
    "over the tasks. Comparability is checked within each task (within each pair where "
    "paired)."
)


def suite_report(
    data: AblationData,
    scores: pd.DataFrame,
    rng: np.random.Generator,
    n_resamples: int,
    adaptive: AdaptiveRecord | None = None,
    seed: int = 0,
) -> tuple[list[Figure], dict[str, Figure], dict[str, pd.DataFrame]]:
    """Front pages, figures and tables (for CSV) of a multi-task ablation.

    ``scores``: :func:`analysis.summary.per_run_scores` of every run; ``adaptive``: the
    adaptive seeding record, whose decisions page 1 states; ``seed`` seeds the diversity
    page's own Generator (``rng`` draws the rest, in the same order as without that page).
    """
    reference = data.reference
    scores = suite.normalised_scores(scores)
    arms = summary.ordered_arms(scores["arm"], reference, data.arm_order)
    tasks = [task for task in data.tasks if (scores["task"] == task).any()]
    normalised = suite.tasks_with_references(scores, tasks)
    excluded = [task for task in tasks if task not in normalised]
    aggregates = suite.suite_aggregates(scores, arms, normalised, reference, rng, n_resamples)
    per_task = suite.per_task_tables(scores, tasks, reference, rng, n_resamples, data.arm_order)

    profiles = {}
    for arm in arms:
        matrix = suite.arm_matrix(scores, arm, normalised, "normalised")
        if normalised and np.isfinite(matrix).any(0).all():
            profiles[arm] = suite.aggregate.performance_profile_ci(
                matrix, suite.PROFILE_TAUS, rng, n_resamples
            )
    finished = data.finished_metrics
    task_of = dict(zip(data.runs["run_id"], data.runs["task"], strict=True))
    phases = speed.task_phase_seconds(data)  # (n_runs, phases): seconds per iteration
    speeds = speed.speed_by_task(scores, phases, tasks, arms, reference)
    cautions = speed_cautions(data, scores)
    family = summary.holm_family_sentence(summary.holm_family_size(per_task), True)
    pairing = [
        paired.pairing_sentence(paired.comparison(scores, arm, reference), arm, reference)
        for arm in arms
        if arm != reference
    ]
    diversity = suite_diversity(
        scores, finished, per_task, tasks, arms, reference, seed, n_resamples
    )
    aggregates = aggregates.merge(
        diversity.suite[["arm", "low", "high"]].rename(
            columns={"low": "diversity_ratio_low", "high": "diversity_ratio_high"}
        ),
        on="arm",
        how="left",
    )
    figures = {
        "performance_profiles": plots.performance_profiles(suite.PROFILE_TAUS, profiles),
        "task_learning_curves": plots.task_learning_curves(finished, task_of, tasks, arms),
        **diversity.figures,
    }
    tables = {
        "aggregates": aggregates,
        "per_task": per_task,
        "runs": scores.drop(columns=["start_time", "end_time"]),
        "config": config_scopes(data).long_table(),
        "speed": speeds,
        "speed_cautions": pd.DataFrame({"caution": cautions}),
        "diversity": diversity.table,
    }
    front = [
        _aggregate_page(
            data,
            aggregates,
            scores,
            tasks,
            normalised,
            excluded,
            cautions,
            adaptive,
            pairing,
            family,
        ),
        *_per_task_pages(per_task, scores, reference),
        pages.method_page(method.suite_method_lines(data, per_task, phases)),
        *pages.speed_pages(speeds, reference, cautions, SPEED_NOTE, True, pairing),
        *diversity.pages,
    ]
    return front, figures, tables


def _aggregate_rows(aggregates: pd.DataFrame, reference: str) -> tuple[list[str], list[list]]:
    header = [
        "arm",
        "runs\n(fewest per task)",
        "IQM\n[95% CI]",
        "mean\n[95% CI]",
        "median\n[95% CI]",
        "optimality gap\n[95% CI]",
        f"P(arm > {reference})\n[95% CI]",
        "speed ratio\n(updates/s) [95% CI]",
        "diversity ratio\n(h disp.) [95% CI]",
    ]
    rows = []
    for row in aggregates.to_dict("records"):
        cells = [row["arm"], f"{row['runs']} ({row['min_runs']})"]
        for name in ("IQM", "mean", "median", "optimality gap"):
            cells.append(format_ci(row[name], row[f"{name}_low"], row[f"{name}_high"], 2, "n/a"))
        if row["arm"] == reference:
            cells += ["reference", "1", "1"]
        else:
            cells.append(format_ci(row["poi"], row["poi_low"], row["poi_high"], 2, "n/a"))
            speed_cell = format_ci(row["speed_ratio"], row["speed_low"], row["speed_high"])
            cells.append(speed_cell + (" paired" if np.isfinite(row["speed_low"]) else ""))
            low, high = row.get("diversity_ratio_low", np.nan), row.get("diversity_ratio_high")
            cells.append(format_ratio_ci(row["diversity_ratio"], low, high, "n/a"))
        rows.append(cells)
    return header, rows


def _aggregate_page(
    data: AblationData,
    aggregates: pd.DataFrame,
    scores: pd.DataFrame,
    tasks: list[str],
    normalised: list[str],
    excluded: list[str],
    cautions: list[str],
    adaptive: AdaptiveRecord | None = None,
    pairing: Sequence[str] = (),
    family: str = "",
) -> Figure:
    figure = Figure(figsize=PAGE_SIZE)
    figure.text(0.04, 0.95, f"Ablation report: {data.experiment}", fontsize=16, weight="bold")
    intro = (
        f"Tasks ({len(tasks)}): {', '.join(tasks)}. Arms: {', '.join(aggregates['arm'])}. "
        f"Reference arm: {data.reference}. Final return = mean eval return over the last 10% "
        "of training steps, FINISHED runs only; normalised score = (final return - random) / "
        "(best - random), best = the human score (Atari) or the task's maximum return. "
        f"Aggregates over the {len(normalised)} task(s) with score references "
        f"({', '.join(normalised) or 'none'}): stratified bootstrap 95% CIs (runs resampled "
        "within each task, tasks fixed); P(arm > reference) = per-task Mann-Whitney U/(n m) "
        "averaged over tasks; speed ratio = the paired one over every task's (task, seed) "
        "pairs where the arms' runs trained side by side (below), else, as the diversity ratio, "
        "the geometric mean over all tasks of mean(arm) / mean(reference)."
    )
    wrapped = textwrap.fill(intro, width=150)
    figure.text(0.04, 0.93, wrapped, fontsize=9, va="top")
    header, rows = _aggregate_rows(aggregates, data.reference)
    height = 0.06 + 0.03 * len(rows)
    top = 0.93 - 0.019 * (wrapped.count("\n") + 1) - 0.04  # below the intro, however long
    draw_table(figure.add_axes((0.03, top - height, 0.94, height)), header, rows)
    verdict = suite.suite_verdict(aggregates, data.reference, len(normalised), excluded)
    references = _reference_lines(scores, tasks)
    window = final_window.window_note(scores)
    lines = [
        *_no_interval_note(aggregates),
        ("Verdict over the suite: " + verdict, 10, "bold"),
        *([(front_summary(adaptive), 9, "bold")] if adaptive is not None else []),
        *([(window, 9, "bold")] if window else []),
        (summary.problems_note(data.runs, data.planned_runs) or "All runs finished.", 9, "normal"),
        *((sentence, 8, "normal") for sentence in pairing if sentence),
        *pages.speed_caution(cautions),
        ("Score references: " + references, 8, "normal"),
        (
            "Per-task statistics (the per-task page): Welch's t-test per task and arm against the "
            "reference (updates/s: Wilcoxon signed-rank where paired). "
            + family
            + " Method, definitions and confounds: the Method page.",
            8,
            "normal",
        ),
    ]
    write_lines(figure, lines, top - height - 0.05)
    return figure


def _no_interval_note(aggregates: pd.DataFrame) -> list[tuple[str, float, str]]:
    """Why a cell reads ``[n/a]``: the arms with fewer than the minimum runs on some task."""
    fewest = suite.aggregate.MIN_RUNS_PER_TASK
    short = aggregates[aggregates["min_runs"] < fewest]
    if short.empty:
        return []
    named = ", ".join(f"{row.arm} ({row.min_runs})" for row in short.itertuples())
    return [
        (
            f"[n/a]: no interval. A stratified bootstrap interval needs {fewest}+ finished runs "
            f"per task in each arm it draws on (P(improvement): the arm and the reference); "
            f"fewest per task here: {named}. With one run per task every resample repeats "
            "the data, and the interval would collapse onto the estimate.",
            8,
            "normal",
        )
    ]


def _reference_lines(scores: pd.DataFrame, tasks: list[str]) -> str:
    parts, sources = [], []
    for task in tasks:
        rows = scores[scores["task"] == task]
        random, best = rows["score_random"].iloc[0], rows["score_best"].iloc[0]
        if not (np.isfinite(random) and np.isfinite(best)):
            parts.append(f"{task}: none (raw scores only, left out of the aggregates)")
            continue
        parts.append(f"{task}: random {random:g}, {rows['score_kind'].iloc[0]} {best:g}")
        source = rows["score_source"].iloc[0]
        if source and source not in sources:
            sources.append(source)
    return "; ".join(parts) + ". Sources: " + " | ".join(sources or ["none"]) + "."


def _per_task_pages(per_task: pd.DataFrame, scores: pd.DataFrame, reference: str) -> list[Figure]:
    header = [
        "task",
        "arm",
        "n",
        "final return\n(mean ± 95% CI)",
        "normalised\n(mean)",
        f"Δ vs {reference}\n[95% CI]",
        "Welch p\n(Holm-adj.)",
        "P(improvement)\n[95% CI]",
        "updates/s",
    ]
    means = scores[scores["status"] == "FINISHED"].groupby(["task", "arm"])["normalised"].mean()
    rows = []
    for row in per_task.to_dict("records"):
        normalised = means.get((row["task"], row["arm"]), np.nan)
        cells = [
            row["task"],
            row["arm"],
            str(row["n"]),
            format_mean_ci(row["return_mean"], row["return_ci_half"]),
            "raw only" if not np.isfinite(normalised) else f"{normalised:.3f}",
        ]
        if row["arm"] == reference:
            cells += ["reference", "–", "–"]
        else:
            p = f"{format_p(row['final_return_p'])} ({format_p(row['final_return_p_holm'])})"
            mw = " MW*" if row.get("final_return_test") == "Mann-Whitney" else ""
            cells += [
                format_ci(row["diff"], row["diff_ci_low"], row["diff_ci_high"]),
                p + mw,
                format_ci(row["poi"], row["poi_ci_low"], row["poi_ci_high"], digits=2),
            ]
        updates = row.get("updates_per_s", np.nan)
        cells.append("n/a" if not np.isfinite(updates) else f"{updates:.3g}")
        rows.append(cells)
    family = summary.holm_family_sentence(summary.holm_family_size(per_task), True)
    pages = []
    for start in range(0, max(len(rows), 1), TASK_ROWS_PER_PAGE):
        page = text_page("Per task: final return per arm (p in brackets: Holm-adjusted)")
        chunk = rows[start : start + TASK_ROWS_PER_PAGE]
        height = min(0.06 + 0.03 * len(chunk), 0.8)
        draw_table(page.add_axes((0.03, 0.9 - height, 0.94, height)), header, chunk)
        note = (
            f"{family} MW* = Welch undefined (zero variance), exact Mann-Whitney p used. CIs of "
            "differences and P(improvement) need 5+ runs per arm and are not shown below that."
        )
        write_lines(page, [(note, 8, "normal")], 0.9 - height - 0.04)
        pages.append(page)
    return pages
