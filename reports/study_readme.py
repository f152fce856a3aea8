"""The README of a published study: the answer first, in the report's own words and numbers.

Computed from the loaded ablation (a results folder's, so that what the README says is what
its CSV files say) with the suite report's functions and bootstrap seed: each arm's IQM of
the normalised final score over all its runs (every task pooled) with its stratified 95% CI,
P(improvement) over the reference, the speed ratio (paired where the arms' runs trained side
by side), and the seeds adaptive seeding used.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import diversity, factorial, factors, paired, suite, summary
from analysis.decisions import AdaptiveRecord
from analysis.load import AblationData
from analysis.stats import DEFAULT_RESAMPLES
from reports.adaptive_page import front_summary
from reports.factorial_page import format_effect
from reports.layout import format_ci, format_p, format_ratio_ci


def answer_table(
    data: AblationData, seed: int = 0, n_resamples: int = DEFAULT_RESAMPLES
) -> tuple[pd.DataFrame, str]:
    """The suite aggregates page 1 prints (same functions, same generator seed, so the same
    numbers) and its verdict sentence."""
    rng = np.random.default_rng(seed)
    scores = suite.normalised_scores(summary.per_run_scores(data.runs, data.metrics))
    arms = summary.ordered_arms(scores["arm"], data.reference, data.arm_order)
    tasks = [task for task in data.tasks if (scores["task"] == task).any()]
    normalised = suite.tasks_with_references(scores, tasks)
    excluded = [task for task in tasks if task not in normalised]
    aggregates = suite.suite_aggregates(scores, arms, normalised, data.reference, rng, n_resamples)
    verdict = suite.suite_verdict(aggregates, data.reference, len(normalised), excluded)
    return aggregates, verdict


def seeds_per_arm(data: AblationData) -> dict[str, int]:
    """Finished seeds of each arm (a seed counts once, whatever the number of tasks)."""
    finished = data.finished_runs
    return {arm: int(rows["seed"].nunique()) for arm, rows in finished.groupby("arm")}


def readme_text(
    data: AblationData,
    adaptive: AdaptiveRecord | None,
    folder_name: str,
    study: str,
    description: str = "",
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> str:
    """The whole README.md of ``results/<folder_name>/``, the study ``study`` published."""
    aggregates, verdict = answer_table(data, seed, n_resamples)
    reference = data.reference
    seeds = seeds_per_arm(data)
    runs = data.finished_runs
    lines = [
        f"# Study `{data.experiment}`: {description or 'the schedules compared'}",
        "",
        f"**Answer.** {verdict}",
        "",
    ]
    unfinished = data.runs[data.runs["status"] != "FINISHED"]
    if len(unfinished):
        statuses = ", ".join(
            f"{count} {status}" for status, count in unfinished["status"].value_counts().items()
        )
        lines += [
            f"**{len(unfinished)} of {len(data.runs)} runs did not finish** ({statuses}) and are "
            "left out of every number here; `runs.csv` lists them, and rerunning the study "
            "resumes them.",
            "",
        ]
    lines += factor_lines(data, seed, n_resamples)
    if adaptive is not None:
        lines += [f"**{front_summary(adaptive)}**", ""]
    if data.provenance:
        lines += ["**Merged from published studies.**", ""]
        lines += [f"- {line}" for line in data.provenance] + [""]
    lines += [
        f"| arm | runs | seeds | IQM of normalised score [95% CI] | P(arm > {reference}) "
        "[95% CI] | speed ratio (updates/s) |",
        "|---|---|---|---|---|---|",
    ]
    for row in aggregates.to_dict("records"):
        arm = row["arm"]
        is_reference = arm == reference
        poi = (
            "reference" if is_reference else format_ci(row["poi"], row["poi_low"], row["poi_high"])
        )
        ratio = "1" if is_reference else _speed_cell(row)
        iqm = format_ci(row["IQM"], row["IQM_low"], row["IQM_high"])
        lines.append(f"| `{arm}` | {row['runs']} | {seeds.get(arm, 0)} | {iqm} | {poi} | {ratio} |")
    tasks = ", ".join(f"`{task}`" for task in data.tasks)
    lines += [
        "",
        f"Tasks: {tasks}; {len(runs)} finished runs. Normalised score = (final return - random) "
        "/ (best - random) with each task's references (`score_random`, `score_best` in "
        "`runs.csv`); final return = the mean evaluation return over the last 10% of training. "
        "IQM = the 25% trimmed mean of every run of the arm, all tasks pooled; intervals: "
        "stratified bootstrap (runs resampled within each task), 95%, seed 0. P(improvement) = "
        "the per-task Mann-Whitney U / (n m) averaged over tasks. "
        + _speed_words(aggregates, reference),
        "",
        "Files: `runs.csv` (one row per run: `task, arm, seed, final_return, normalized_score, "
        "updates_per_s`, ...), `curves.csv` (the evaluation curves and every other metric the "
        "report plots), `ablation.json` (reference, arms, tasks, configs, the adaptive rule), "
        "`decisions.csv` (each interim of adaptive seeding, when used), `cautions.txt` (every "
        "caution the report raises), `report.pdf`.",
        "",
        f"Rebuild the report from these files alone: `make report FROM=results/{folder_name}`. "
        + (
            f"Publish it again from its parts' folders: `make publish STUDY={study}` "
            f"(`studies/{study}.toml`)."
            if data.provenance
            else f"Reproduce the study: `make study STUDY={study}` (`studies/{study}.toml`)."
        ),
        "",
    ]
    return "\n".join(lines)


def factor_lines(
    data: AblationData, seed: int = 0, n_resamples: int = DEFAULT_RESAMPLES
) -> list[str]:
    """When the arms cross factors (:mod:`analysis.factors`): each effect over the suite, as
    the factorial page states it, then the speed of every pair of arms that trained side by
    side (:mod:`analysis.paired`) and each arm's diversity ratio; no lines otherwise."""
    design = factors.crossing(data)
    if not isinstance(design, factors.Design):
        return []
    scores = summary.per_run_scores(data.runs, data.metrics)
    tasks = [task for task in data.tasks if (scores["task"] == task).any()]
    result = factorial.analyse(design, scores, tasks, seed, n_resamples)
    scope = "suite" if len(tasks) > 1 else tasks[0]
    effects = result.effects[result.effects["scope"] == scope]
    where = f"mean over {', '.join(result.suite_tasks)}" if scope == "suite" else scope
    lines = [f"**The factors** ({where}, normalised score; stratified bootstrap 95% CIs, "
             "permutation p):", ""]  # fmt: skip
    for row in effects.to_dict("records"):
        text = format_effect(row["words"], row["estimate"], row["low"], row["high"], row["score"])
        p = "n/a" if not np.isfinite(row["p"]) else format_p(row["p"])
        lines.append(f"- {text}, p = {p} ({row['p_method']})")
    return [
        *lines,
        "",
        *_pair_speed_lines(data, scores),
        *_diversity_lines(data, scores, seed, n_resamples),
    ]


def _pair_speed_lines(data: AblationData, scores: pd.DataFrame) -> list[str]:
    arms = summary.ordered_arms(scores["arm"], data.reference, data.arm_order)
    parts = []
    for index, reference in enumerate(arms):
        for arm in arms[index + 1 :]:
            result = paired.comparison(scores, arm, reference)
            if result.paired:
                parts.append(
                    f"`{arm}` / `{reference}` {format_ci(result.ratio, result.low, result.high)} "
                    f"({arm} faster in {result.faster} of {result.side_by_side} pairs, Wilcoxon "
                    f"signed-rank p = {result.p:.2g})"
                )
    if not parts:
        return ["**Speed**: no two arms' runs trained side by side; speeds are not compared.", ""]
    return [
        "**Speed, paired** (updates per training second of runs of one task and seed that "
        "trained side by side, geometric mean of the ratios, Student-t 95% CI): "
        f"{'; '.join(parts)}. Arms whose runs trained at other times are not compared in speed.",
        "",
    ]


def _diversity_lines(
    data: AblationData, scores: pd.DataFrame, seed: int, n_resamples: int
) -> list[str]:
    arms = summary.ordered_arms(scores["arm"], data.reference, data.arm_order)
    means = diversity.run_means(suite.normalised_scores(scores), data.metrics)
    ratios = diversity.suite_ratios(
        means[means["status"] == "FINISHED"], arms, data.reference, np.random.default_rng(seed),
        n_resamples,
    )  # fmt: skip
    parts = [
        f"`{row.arm}` {format_ratio_ci(row.ratio, row.low, row.high, 'n/a')}"
        for row in ratios.itertuples()
    ]
    return [
        f"**Diversity of the starts** (h dispersion, arm / `{data.reference}`, geometric mean "
        f"over tasks of the per-task mean ratio, stratified bootstrap 95% CI): {'; '.join(parts)}.",
        "",
    ]


def _speed_cell(row: dict) -> str:
    """The speed ratio, with its 95% CI where it is paired."""
    return format_ci(row["speed_ratio"], row["speed_low"], row["speed_high"])


def _speed_words(aggregates: pd.DataFrame, reference: str) -> str:
    """How the speed ratio was computed: paired (per arm, its pairs and Wilcoxon p) where
    the arms' runs trained side by side (:mod:`analysis.paired`), else unpaired."""
    paired = aggregates[np.isfinite(aggregates["speed_low"].to_numpy(float))]
    unpaired = (
        f"geometric mean over tasks of mean(arm) / mean({reference}) updates per training second"
    )
    if paired.empty:
        return f"Speed ratio = {unpaired}."
    parts = "; ".join(
        f"`{row.arm}`: {row.speed_pairs_side_by_side} of {row.speed_pairs} pairs side by side, "
        f"faster in {row.speed_faster}, Wilcoxon signed-rank p = {row.speed_p:.2g}"
        for row in paired.itertuples()
    )
    return (
        "Speed ratio, paired: the runs of one (task, seed) trained side by side (their "
        "training windows overlapping for at least half of the shorter), so each pair's "
        f"ratio of updates per training second, arm / {reference}, shares the machine's load; "
        "the ratio is their geometric mean over every task's pairs, with a Student-t 95% CI "
        f"on the log ratios ({parts}). Arms without such pairs: {unpaired}."
    )
