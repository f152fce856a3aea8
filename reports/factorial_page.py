"""The factorial page: when the arms cross two or more factors (:mod:`analysis.factors`), each
factor's main effect and the interaction on the normalised score, per task and over the
suite (:mod:`analysis.factorial`), in the reader's words: ``all - last: +0.21 [0.15, 0.27]``.
Arms that vary in several factors without a full two-level crossing get a page saying why
there is no factorial analysis."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis import aggregate, factorial, factors
from analysis.load import AblationData
from reports.flow import Flow
from reports.layout import format_p

TITLE = "Factorial analysis"


def factorial_report(
    data: AblationData, scores: pd.DataFrame, seed: int, n_resamples: int
) -> tuple[list[Figure], dict[str, pd.DataFrame]]:
    """The pages and tables (for CSV) of the factorial analysis; none when the arms vary in
    fewer than two factors. ``scores``: :func:`analysis.summary.per_run_scores`."""
    design = factors.crossing(data)
    if design is None:
        return [], {}
    if isinstance(design, factors.NoDesign):
        return _no_design_pages(design), {}
    tasks = [task for task in data.tasks if (scores["task"] == task).any()]
    result = factorial.analyse(design, scores, tasks, seed, n_resamples)
    tables = {"factorial_effects": result.effects, "factorial_cells": result.cells}
    return _effect_pages(design, result, seed), tables


def format_effect(words: str, estimate: float, low: float, high: float, score: str) -> str:
    """``'all - last: +0.21 [0.15, 0.27]'``: two decimals on the normalised score, one on a
    raw return; ``[n/a]`` where there is no interval (the page says why)."""
    digits = 2 if score == factorial.SCORE_NORMALISED else 1
    if not np.isfinite(estimate):
        return f"{words}: n/a"
    if round(estimate, digits) == 0:
        estimate = 0.0  # +0.00, not -0.00, for an effect that rounds to nothing
    interval = (
        f"[{low:.{digits}f}, {high:.{digits}f}]"
        if np.isfinite(low) and np.isfinite(high)
        else "[n/a]"
    )
    return f"{words}: {estimate:+.{digits}f} {interval}"


def _p_cell(row: dict) -> str:
    if not np.isfinite(row["p"]):
        return "n/a"
    how = f"{row['p_method']}, {int(row['relabelings']):,}"
    return f"{format_p(row['p'])} ({how})"


def _design_lines(design: factors.Design) -> list[tuple[str, float, str]]:
    named = "; ".join(f"{f.name} ({f.low}, {f.high})" for f in design.factors)
    cells = "; ".join(
        f"{arm} = {design.cell_label(cell)}"
        for cell in factorial.cells_of(len(design.factors))
        for arm in [design.arm_of(cell)]
    )
    return [
        (
            f"The arms cross {len(design.factors)} two-level factors, read from their configs: "
            f"{named}. Cells: {cells}.",
            9,
            "normal",
        ),  # fmt: skip
        *((note, 8.5, "normal") for note in design.notes),
    ]


def _summary_line(result: factorial.FactorialResult) -> list[tuple[str, float, str]]:
    """The answer in one sentence: over the suite, or the one task of a one-task ablation."""
    effects = result.effects
    scope = "suite" if (effects["scope"] == "suite").any() else None
    if scope is None and effects["scope"].nunique() == 1:
        scope = effects["scope"].iloc[0]
    if scope is None:
        return []
    if scope == "suite" and not result.suite_tasks:
        return [("Over the suite: no task has score references and a finished run in every "
                 "cell, so no mean over tasks.", 10, "bold")]  # fmt: skip
    parts = []
    for row in effects[effects["scope"] == scope].to_dict("records"):
        said = format_effect(row["words"], row["estimate"], row["low"], row["high"], row["score"])
        parts.append(f"{row['effect']} {said} (p {format_p(row['p'])})")
    where = (
        f"Over the suite ({', '.join(result.suite_tasks)}; equal task weights)"
        if scope == "suite"
        else f"On {scope}"
    )
    return [(f"{where}: " + "; ".join(parts) + ".", 10, "bold")]


def _definition_lines(design: factors.Design, result: factorial.FactorialResult, seed: int):
    a, b = design.factors[0], design.factors[1]
    others = " (and averaged over the other factors' levels)" if len(design.factors) > 2 else ""
    lines = [
        "Effects are differences of cell means (the mean score of a cell's runs on a task). "
        "Main effect of a factor = mean over the other factors' levels of (its high level - "
        f"its low level); e.g. {a.name}: [({a.high}, {b.low}) - ({a.low}, {b.low}) + "
        f"({a.high}, {b.high}) - ({a.low}, {b.high})] / 2{others}. Interaction of {a.name} "
        f"and {b.name} = [({a.high}, {b.high}) - ({a.low}, {b.high})] - [({a.high}, {b.low}) - "
        f"({a.low}, {b.low})]{others}: how much {a.name}'s effect changes from {b.low} to "
        f"{b.high}, read '({a.contrast} | {b.high}) - ({a.contrast} | {b.low})'. Over the "
        "suite: the mean of the per-task effects, each task weighing the same.",
        "95% CI: stratified percentile bootstrap, runs resampled within each task and cell "
        f"(np.random.Generator seeded {seed}); no interval ([n/a]) below "
        f"{aggregate.MIN_RUNS_PER_TASK} runs in a cell"
        + (
            ", and below 5 runs per cell the interval understates the uncertainty."
            if (result.effects["fewest_runs"].between(1, 4)).any()
            else "."
        ),
        "p: two-sided permutation test. Main effect: runs relabelled between the factor's two "
        "levels within each task and level of the other factor(s), cell sizes kept (exact "
        "under the null that the factor changes no run's score). Interaction: residuals of "
        "the model without it (least squares per task) relabelled across all cells of a task "
        "(Freedman and Lane; approximate). 'exact, N' = all N distinct relabelings "
        f"enumerated (done when N <= {factorial.EXACT_LIMIT:,}); 'random, N' = N random "
        "relabelings, p = (1 + hits) / (1 + N). p-values are not adjusted for the tests on "
        "this page.",
    ]
    for task, reason in result.skipped.items():
        lines.append(f"{task}: {reason}.")
    return [(line, 8, "normal") for line in lines]


def _effect_rows(result: factorial.FactorialResult) -> list[list[str]]:
    ordered = pd.concat(
        [result.effects[result.effects["scope"] == "suite"],
         result.effects[result.effects["scope"] != "suite"]]
    )  # fmt: skip
    rows = []
    for row in ordered.to_dict("records"):
        rows.append(
            [
                row["scope"],
                row["effect"],
                row["score"],
                format_effect(row["words"], row["estimate"], row["low"], row["high"], row["score"]),
                _p_cell(row),
                str(row["fewest_runs"]),
            ]
        )
    return rows


def _cell_rows(design: factors.Design, cells: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    arms = list(design.cells)  # report order: the reference first
    labels = [f"{arm}\n({design.cell_label(design.cells[arm])})" for arm in arms]
    header = ["task", "score", *labels]
    rows = []
    for task, frame in cells.groupby("task", sort=False):
        by_arm = frame.set_index("arm")
        score = frame["score"].iloc[0]
        digits = 3 if score == factorial.SCORE_NORMALISED else 1
        row = [task, score]
        for arm in arms:
            mean, runs = by_arm.loc[arm, "mean"], int(by_arm.loc[arm, "runs"])
            row.append("no runs" if not runs else f"{mean:.{digits}f} (n={runs})")
        rows.append(row)
    return header, rows


def _effect_pages(
    design: factors.Design, result: factorial.FactorialResult, seed: int
) -> list[Figure]:
    flow = Flow(f"{TITLE}: " + " x ".join(f.name for f in design.factors))
    flow.lines([*_design_lines(design), *_summary_line(result)])
    flow.table(*_cell_rows(design, result.cells))
    header = ["scope", "effect", "score", "estimate [95% CI]", "p (permutation)",
              "fewest runs\nper cell"]  # fmt: skip
    flow.table(header, _effect_rows(result))
    flow.lines(_definition_lines(design, result, seed))
    return flow.pages


def _no_design_pages(design: factors.NoDesign) -> list[Figure]:
    lines = [
        (
            f"The arms vary in {len(design.factors)} factors ({', '.join(design.factors)}), but "
            f"no factorial analysis is given: {design.reason}",
            10,
            "bold",
        ),  # fmt: skip
        *((note, 8.5, "normal") for note in design.notes),
    ]
    flow = Flow(f"{TITLE}: none")
    flow.lines(lines)
    flow.table(["arm", *design.factors], [[a, *levels] for a, levels in design.levels.items()])
    return flow.pages
