"""What the report's method page says: arms, definitions, tests, pairing, confounds, setup.

Every number on that page is computed here from the ablation's own runs and config (never
tabulated), so that each sentence can be tested against an independent computation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import aggregate, paired, stats, summary
from analysis.load import AblationData

SCHEDULE_DESCRIPTIONS = {
    "separate": "collect; n WM updates; then n AC updates, each imagining from a fresh replay "
    "batch filtered through the iteration's last WM (phases, as IRIS and DIAMOND).",
    "coupled": "collect; n times: one WM update, then one AC update imagining from that "
    "batch's posteriors, computed by the WM before its step (the seed plan's proposal).",
    "interleaved": "collect; n times: one WM update, then one AC update imagining from a fresh "
    "replay batch filtered through the updated WM (as STORM).",
    "joint": "collect; n times: the WM and AC losses of one batch, both optimisers stepping "
    "together; the AC imagines from the batch's posteriors in the WM before its step (as the "
    "official DreamerV3 code of 2024 and r2dreamer).",
}
"""One line per schedule of ``agent.trainer.SCHEDULES``, naming who uses it."""
STARTS_DESCRIPTIONS = {
    "last": "the last posterior step of each sequence (B starts)",
    "all": "every posterior step (B x T starts, as the official DreamerV3)",
}
ARM_DESCRIPTIONS = {
    "coupled_refiltered": "as coupled, but the batch is filtered again through the updated WM "
    "before imagining (control: coupled's data, posteriors as fresh as separate's).",
    "coupled_refiltered_all": "as coupled_refiltered, imagining from every posterior step.",
}
"""Arms beyond a schedule and a start set (the controls)."""
STALENESS_METRIC = "staleness/start_h_shift"
"""How far coupled's starts are from the updated WM's (logged by the refiltered arms)."""
DIVERSITY_DEFINITIONS = (
    "h dispersion: mean over dimensions of the std of the starts' deterministic state h",
    "distinct starts: fraction of starts at distinct replay positions",
    "latent entropy: entropy (nats) of the starts' class usage per latent, averaged",
    "replay age: mean agent steps since each start was stored",
    "imagined h dispersion: the same dispersion over all imagined states",
)


def eval_points_in_window(data: AblationData, fraction: float = 0.1) -> tuple[int, int]:
    """Fewest and most ``eval/return`` points a FINISHED run has in its final-return window
    (steps >= (1 - fraction) * its last step); ``(0, 0)`` without finished runs. A run with
    none counts 0 (page 1 names it and the earlier point that stands in)."""
    metrics = data.finished_metrics
    returns = metrics[metrics["metric"] == summary.RETURN_METRIC]
    counts = [
        stats.points_in_window(
            returns.loc[returns["run_id"] == run.run_id, "step"].to_numpy(float),
            total_steps=run.final_step,
            fraction=fraction,
        )
        for run in data.finished_runs.itertuples()
    ]
    return (min(counts), max(counts)) if counts else (0, 0)


def updates_per_iteration(params: dict[str, str]) -> float:
    """``n = train_ratio * collect_every / (B * T)`` from a run's flattened config."""
    try:
        return (
            float(params["train.train_ratio"])
            * float(params["train.collect_every"])
            / (float(params["train.batch_size"]) * float(params["train.seq_len"]))
        )
    except (KeyError, ValueError, ZeroDivisionError):
        return float("nan")


def world_model_lag(n: float) -> float:
    """Mean number of WM updates a coupled AC update has not seen, against separate's: AC
    update k of n follows WM update k, separate's all follow update n, so ``(n - 1) / 2``."""
    return (n - 1) / 2 if np.isfinite(n) and n >= 1 else float("nan")


def updates_per_iteration_values(data: AblationData, schedule: str = "coupled") -> list[float]:
    """The distinct finite ``n`` of the FINISHED runs' configs (every run's when none
    finished), ascending; arms or a grid can differ in it. Only the runs of ``schedule``
    count where any ran it (the WM lag is the coupled runs'). Falls back to ``data.params``
    when the runs' own configs were not loaded."""
    runs = data.finished_runs if not data.finished_runs.empty else data.runs
    configs = [data.run_params[r] for r in runs["run_id"] if r in data.run_params]
    of_schedule = [params for params in configs if params.get("train.schedule") == schedule]
    values = {updates_per_iteration(params) for params in (of_schedule or configs or [data.params])}
    return sorted(n for n in values if np.isfinite(n))


def metric_median(data: AblationData, metric: str, arms: tuple[str, ...]) -> float:
    """Median over FINISHED runs of ``arms`` of each run's mean of ``metric``; NaN if none."""
    metrics = data.finished_metrics
    selected = metrics[(metrics["metric"] == metric) & metrics["arm"].isin(arms)]
    if selected.empty:
        return float("nan")
    return float(selected.groupby("run_id")["value"].mean().median())


def refilter_share(phases: pd.DataFrame) -> tuple[float, float]:
    """The refiltered arms' refilter seconds per iteration and its share of their training
    time, both medians over their runs; NaN, NaN when no refiltered arm was timed."""
    rows = phases[phases["arm"].str.contains("refiltered")] if not phases.empty else phases
    if rows.empty or "refilter" not in rows:
        return float("nan"), float("nan")
    return float(rows["refilter"].median()), float((rows["refilter"] / rows["total"]).median())


def refilter_cost(phases: pd.DataFrame) -> str:
    """The control arms' refilter time as a share of their training time (medians)."""
    seconds, share = refilter_share(phases)
    if not np.isfinite(seconds):
        return "its extra filter pass per update was not timed here (no refiltered arm ran)"
    return (
        f"its extra filter pass per update costs {seconds:.3g} s per "
        f"iteration, {100 * share:.0f}% of those arms' training time (median over their runs)"
    )


def _refiltered(arms: list[str]) -> tuple[str, ...]:
    return tuple(arm for arm in arms if "refilt" in arm)


def _staleness_text(shift: float) -> str:
    if not np.isfinite(shift):
        return "not measured in this ablation (run coupled_refiltered to measure and control it)"
    return f"median {shift:.3g}"


def _lag_text(ns: list[float]) -> str:
    if not ns:
        return "(n - 1) / 2 WM updates fewer on average (n is not in the logged config)"
    if len(ns) == 1:
        return (
            f"with n = {ns[0]:g} updates per iteration, {world_model_lag(ns[0]):g} WM updates "
            "fewer on average ((n - 1) / 2, from the config)"
        )
    return (
        f"with n = {ns[0]:g} to {ns[-1]:g} updates per iteration (the runs' configs differ), "
        f"{world_model_lag(ns[0]):g} to {world_model_lag(ns[-1]):g} WM updates fewer on "
        "average ((n - 1) / 2, from each run's config)"
    )


def _window_count(data: AblationData) -> str:
    fewest, most = eval_points_in_window(data)
    return f"{fewest}" if fewest == most else f"{fewest}-{most}"


def by_task(fragments: dict[str, str]) -> str:
    """``{task: text}`` as one clause, tasks with the same text named together:
    ``'on every task: X'`` or ``'a, b: X; c: Y'``."""
    groups: dict[str, list[str]] = {}
    for task, text in fragments.items():
        groups.setdefault(text, []).append(task)
    if len(groups) == 1 and len(fragments) > 1:
        return f"on every task: {next(iter(groups))}"
    return "; ".join(f"{', '.join(tasks)}: {text}" for text, tasks in groups.items())


def arm_params(data: AblationData) -> dict[str, dict[str, str]]:
    """Each arm's recorded config (one of its runs'; arm -> flattened params)."""
    by_arm: dict[str, dict[str, str]] = {}
    for run_id, arm in zip(data.runs["run_id"], data.runs["arm"], strict=True):
        if arm not in by_arm and run_id in data.run_params:
            by_arm[arm] = data.run_params[run_id]
    return by_arm


def _arm_lines(arms: list[str], configs: dict[str, dict[str, str]]) -> list[str]:
    """One line per schedule the arms use (who uses it), then one per arm: its schedule and
    start set, from its recorded config (``configs`` maps arm -> params; missing -> the
    built-in description, or 'not a built-in arm')."""
    lines = ["Schedules (n = updates per iteration):"]
    used = [
        s
        for s in SCHEDULE_DESCRIPTIONS
        if any(c.get("train.schedule") == s for c in configs.values())
    ]
    lines += [f"  {name}: {SCHEDULE_DESCRIPTIONS[name]}" for name in used]
    lines.append("Arms:")
    for arm in arms:
        params = configs.get(arm, {})
        if arm in ARM_DESCRIPTIONS:
            text = ARM_DESCRIPTIONS[arm]
        elif params.get("train.schedule") in SCHEDULE_DESCRIPTIONS:
            starts = STARTS_DESCRIPTIONS.get(params.get("train.starts", ""), "starts not recorded")
            text = f"{params['train.schedule']} schedule, imagining from {starts}."
        else:
            text = "not a built-in arm"
        lines.append(f"  {arm}: {text}")
    return lines


SPEED_DEFINITION = (
    "  speed: WM updates / training seconds (collect + updates; evaluation and logging "
    "excluded), per run at its end; the console summary, page 1 and the speed page all use "
    "it, and the per-phase times (incl. 'other') add up to it."
)


def pairing_lines(table: pd.DataFrame) -> list[str]:
    """The method page's pairing section: learning unpaired; speed paired where the arms'
    runs of a seed trained side by side, with the pairs this ablation had. ``table``:
    :func:`summary.compare_arms` or the suite's per-task table (``speed_pairs*`` columns)."""
    # The comparisons: every row but the references' (which have no pair counts).
    others = table[table["speed_pairs"].notna()] if "speed_pairs" in table else table.iloc[0:0]
    total = int(others["speed_pairs"].sum()) if len(others) else 0
    together = int(others["speed_pairs_side_by_side"].sum()) if len(others) else 0
    paired_rows = others.get("updates_per_s_test", pd.Series(dtype=str)) == summary.PAIRED_TEST
    if paired_rows.any():
        here = (
            f"Here {together} of {total} pairs trained side by side, and speed is paired "
            f"for {int(paired_rows.sum())} of the {len(others)} comparisons."
        )
    else:
        here = f"Here no comparison had {paired.MIN_PAIRS}+ such pairs: speed is unpaired too."
    return [
        "Pairing:",
        "  Arms share seeds 0..k-1: the same initial weights and prefill. Their learning is "
        "not paired: the random streams diverge from the first updates (separate draws twice "
        "the replay batches), so the tests of return and diversity treat the arms as "
        "independent samples.",
        "  Speed is paired where the two arms' runs of a (task, seed) trained side by side: "
        "their training windows ([max(start, end - training seconds), end]) overlap for at "
        f"least {paired.SIDE_BY_SIDE_SHARE:.0%} of the shorter, so both met the same machine "
        "load. Then each pair's ratio of updates/s is one observation: the speed ratio is "
        "their geometric mean with a Student-t 95% CI on the log ratios, and the Wilcoxon "
        "signed-rank p (two-sided, log ratios) is the family's updates/s test. " + here,
    ]


def _confound_lines(staleness: str, lag: str, refilter: str) -> list[str]:
    return [
        "Built-in confounds of the schedules:",
        "  1. coupled imagines from posteriors the WM computed before its optimiser step, with "
        "the updated weights (separate filters and imagines with the same weights); its size, "
        "measured in the refiltered arms as the relative change of the starts' h (latents drawn "
        f"afresh included) when the batch is filtered again: {staleness}.",
        "  2. In separate every AC update sees the iteration's last WM; in coupled AC update k "
        f"sees WM update k: {lag}.",
        "  3. separate samples 2n replay batches per iteration (n for the WM, n for the starts), "
        "coupled n: the coupled arms reuse the WM's data. coupled_refiltered removes confound 1 "
        f"but keeps 2 and 3; {refilter}.",
    ]


def _setup_lines(data: AblationData) -> list[str]:
    runs = data.finished_runs if not data.finished_runs.empty else data.runs

    def distinct(column: str) -> str:
        values = sorted({str(v) for v in runs[column] if str(v)}) if column in runs else []
        return ", ".join(values) or "not recorded"

    return [
        "Setup:",
        f"  env: {distinct('env')}; preset: {distinct('preset')}; commit: {distinct('git_commit')}",
        f"  hardware: {distinct('hardware')}; device: {distinct('device')}; GPU: {distinct('gpu')}"
        f"; CPUs: {distinct('cpu_count')}; torch: {distinct('torch_version')}",
    ]


MANN_WHITNEY_TWO_SIDED = (
    "twice the smaller one-sided p, capped at 1 (scipy's definition; with ties it can "
    "differ from the share of splits whose U lies as far from n m / 2 as the observed one)"
)
"""How :func:`stats.mann_whitney_p` makes a p two-sided, on every path."""


def _test_lines(reference: str, unit: str, family: str) -> list[str]:
    return [
        "Tests and error control:",
        f"  Welch's t-test per {unit} vs {reference} for final return, return AUC, updates/s "
        "(Wilcoxon signed-rank where speed is paired, below) and h dispersion. "
        f"{family} Where Welch is undefined (zero variance in both arms) the exact "
        "Mann-Whitney p stands in, and the table says so.",
        "  Mann-Whitney U (exact without ties, permutation with ties) as a robustness check, "
        f"its two-sided p {MANN_WHITNEY_TWO_SIDED}; "
        f"bootstrap percentile CIs descriptive, not shown below {stats.MIN_BOOTSTRAP_N} runs "
        "per arm; Hedges' g and P(improvement) as effect sizes.",
    ]


def method_lines(data: AblationData, table: pd.DataFrame, phases: pd.DataFrame) -> list[str]:
    """The method page of a one-task ablation as text lines (a heading ends with ':'),
    every number computed. ``table``: :func:`summary.compare_arms`; ``phases``:
    :func:`summary.phase_seconds` of the FINISHED runs."""
    arms = summary.ordered_arms(data.runs["arm"], data.reference, data.arm_order)
    m = summary.holm_family_size(table)
    shift = metric_median(data, STALENESS_METRIC, _refiltered(arms))
    return [
        *_arm_lines(arms, arm_params(data)),
        "",
        "Definitions:",
        "  final return: mean eval return over the last 10% of a run's training steps; the "
        f"window holds {_window_count(data)} eval point"
        f"{'' if eval_points_in_window(data)[1] == 1 else 's'} per run here.",
        "  return AUC: trapezoid area under the eval-return curve over env steps, divided by "
        "the step range (in return units).",
        SPEED_DEFINITION,
        *(f"  {line}." for line in DIVERSITY_DEFINITIONS),
        "",
        *_test_lines(data.reference, "arm", summary.holm_family_sentence(m, False)),
        "",
        *pairing_lines(table),
        "",
        *_confound_lines(
            _staleness_text(shift),
            _lag_text(updates_per_iteration_values(data)),
            refilter_cost(phases),
        ),  # fmt: skip
        "",
        *_setup_lines(data),
    ]


def suite_method_lines(
    data: AblationData, per_task: pd.DataFrame, phases: pd.DataFrame
) -> list[str]:
    """The method page of a multi-task ablation: the one-task page's sections, with every
    number computed per task (tasks differ in config and cost) and the suite's aggregates
    defined. ``per_task``: :func:`analysis.suite.per_task_tables`; ``phases``:
    :func:`summary.phase_seconds` of the FINISHED runs with a ``task`` column."""
    arms = summary.ordered_arms(data.runs["arm"], data.reference, data.arm_order)
    tasks = [task for task in data.tasks if (data.runs["task"] == task).any()]
    views = {task: data.for_task(task) for task in tasks}
    m = summary.holm_family_size(per_task)
    windows = {task: _window_count(view) for task, view in views.items()}
    staleness = {
        task: _staleness_text(metric_median(view, STALENESS_METRIC, _refiltered(arms)))
        for task, view in views.items()
    }
    lags = {task: _lag_text(updates_per_iteration_values(view)) for task, view in views.items()}
    task_phases = {
        task: phases[phases["task"] == task] if "task" in phases else phases.iloc[0:0]
        for task in tasks
    }
    shares = {task: refilter_share(frame) for task, frame in task_phases.items()}
    if any(np.isfinite(seconds) for seconds, _ in shares.values()):
        costs = "its extra filter pass per update costs, per iteration and as a share of those "
        costs += "arms' training time (medians over their runs), " + by_task(
            {
                task: f"{seconds:.3g} s, {100 * share:.0f}%"
                if np.isfinite(seconds)
                else "not timed"
                for task, (seconds, share) in shares.items()
            }
        )
    else:
        costs = refilter_cost(phases.iloc[0:0])
    return [
        *_arm_lines(arms, arm_params(data)),
        "",
        f"Tasks ({len(tasks)}): {', '.join(tasks)}; every statistic compares arms within a "
        "task, and each task's numbers below come from its own runs and config.",
        "",
        "Definitions:",
        "  final return: mean eval return over the last 10% of a run's training steps; eval "
        f"points per run in that window, {by_task(windows)}.",
        "  normalised score: (final return - random) / (best - random) with the task's score "
        "references (page 1); aggregates per arm over the tasks with references: IQM, mean, "
        "median and optimality gap, with stratified bootstrap 95% CIs (runs resampled within "
        "each task, tasks fixed); P(arm > reference) = per-task Mann-Whitney U / (n m), averaged "
        "over tasks.",
        "  task weights: the IQM pools every run of every task (a task with more finished runs "
        "weighs more, as in rliable); the mean, median and optimality gap (1 - mean of "
        "min(score, 1)) take each task's mean over its runs first, so every task weighs the "
        "same whatever its run count (rliable does so for the mean and median but pools all "
        "runs for the optimality gap; the two agree when every task has as many runs).",
        f"  no interval (n/a) and no call below {aggregate.MIN_RUNS_PER_TASK} finished runs per "
        "task and arm: with one, every bootstrap resample repeats the data and the interval "
        "collapses onto the estimate.",
        "  return AUC: trapezoid area under the eval-return curve over env steps, divided by "
        "the step range (in return units).",
        SPEED_DEFINITION,
        "  suite speed and diversity ratios: geometric mean over tasks of each task's "
        "mean(arm) / mean(reference); speeds are never pooled across tasks, whose costs differ "
        "(a paired speed ratio pools the unitless per-pair ratios of every task instead: "
        "Pairing, below).",
        *(f"  {line}." for line in DIVERSITY_DEFINITIONS),
        "",
        *_test_lines(data.reference, "task and arm", summary.holm_family_sentence(m, True)),
        "",
        *pairing_lines(per_task),
        "",
        *_confound_lines(by_task(staleness), by_task(lags), costs),
        "",
        *_setup_lines(data),
    ]
