"""What the report's method page says: arms, definitions, tests, pairing, confounds, setup.

Every number on that page is computed here from the ablation's own runs and config (never
tabulated), so that each sentence can be tested against an independent computation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import stats, summary
from analysis.load import AblationData

ARM_DESCRIPTIONS = {
    "separate": "collect; n WM updates; then n AC updates, each imagining from a fresh replay "
    "batch filtered through the iteration's last WM (last posterior step of each sequence).",
    "coupled": "collect; n times: one WM update, then one AC update imagining from that "
    "batch's posteriors, computed by the WM before its step (last posterior step).",
    "coupled_refiltered": "as coupled, but the batch is filtered again through the updated WM "
    "before imagining (control: coupled's data, posteriors as fresh as separate's).",
    "separate_all": "as separate, imagining from every posterior step (B x T starts).",
    "coupled_all": "as coupled, imagining from every posterior step (B x T starts).",
    "coupled_refiltered_all": "as coupled_refiltered, imagining from every posterior step.",
}
DIVERSITY_DEFINITIONS = (
    "h dispersion: mean over dimensions of the std of the starts' deterministic state h",
    "distinct starts: fraction of starts at distinct replay positions",
    "latent entropy: entropy (nats) of the starts' class usage per latent, averaged",
    "replay age: mean agent steps since each start was stored",
    "imagined h dispersion: the same dispersion over all imagined states",
)


def eval_points_in_window(data: AblationData, fraction: float = 0.1) -> tuple[int, int]:
    """Fewest and most ``eval/return`` points a FINISHED run has in its final-return window
    (steps >= (1 - fraction) * its last step); ``(0, 0)`` without finished runs."""
    metrics = data.finished_metrics
    returns = metrics[metrics["metric"] == summary.RETURN_METRIC]
    counts = []
    for run in data.finished_runs.itertuples():
        steps = returns.loc[returns["run_id"] == run.run_id, "step"].to_numpy(float)
        if steps.size:
            in_window = steps >= (1 - fraction) * run.final_step
            counts.append(int(in_window.sum()) or 1)  # none in the window: the last point
        else:
            counts.append(0)
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


def metric_median(data: AblationData, metric: str, arms: tuple[str, ...]) -> float:
    """Median over FINISHED runs of ``arms`` of each run's mean of ``metric``; NaN if none."""
    metrics = data.finished_metrics
    selected = metrics[(metrics["metric"] == metric) & metrics["arm"].isin(arms)]
    if selected.empty:
        return float("nan")
    return float(selected.groupby("run_id")["value"].mean().median())


def refilter_cost(phases: pd.DataFrame) -> str:
    """The control arms' refilter time as a share of their training time (medians)."""
    rows = phases[phases["arm"].str.contains("refiltered")] if not phases.empty else phases
    if rows.empty or "refilter" not in rows:
        return "its extra filter pass per update was not timed here (no refiltered arm ran)"
    share = (rows["refilter"] / rows["total"]).median()
    return (
        f"its extra filter pass per update costs {rows['refilter'].median():.3g} s per "
        f"iteration, {100 * share:.0f}% of those arms' training time (median over their runs)"
    )


def method_lines(data: AblationData, table: pd.DataFrame, phases: pd.DataFrame) -> list[str]:
    """The method page as text lines (a heading ends with ':'), every number computed."""
    arms = summary.ordered_arms(data.runs["arm"], data.reference, data.arm_order)
    fewest, most = eval_points_in_window(data)
    n = updates_per_iteration(data.params)
    m = summary.holm_family_size(table)
    shift = metric_median(data, "staleness/start_h_shift", tuple(a for a in arms if "refilt" in a))
    shift_text = (
        f"measured in the refiltered arms as the relative change of the starts' h when the batch "
        f"is filtered again: median {shift:.3g} (latents are drawn afresh, so this includes "
        "that resampling)"
        if np.isfinite(shift)
        else "not measured in this ablation (run coupled_refiltered to measure and control it)"
    )
    runs = data.finished_runs if not data.finished_runs.empty else data.runs

    def distinct(column: str) -> str:
        values = sorted({str(v) for v in runs[column] if str(v)}) if column in runs else []
        return ", ".join(values) or "not recorded"

    window = f"{fewest}" if fewest == most else f"{fewest}-{most}"
    lag = (
        f"with n = {n:g} updates per iteration, {world_model_lag(n):g} WM updates fewer on "
        "average ((n - 1) / 2, from the config)"
        if np.isfinite(n)
        else "(n - 1) / 2 WM updates fewer on average (n is not in the logged config)"
    )
    lines = ["Arms (one line each; n = updates per iteration):"]
    lines += [f"  {arm}: {ARM_DESCRIPTIONS.get(arm, 'not a built-in arm')}" for arm in arms]
    lines += [
        "",
        "Definitions:",
        "  final return: mean eval return over the last 10% of a run's training steps; the "
        f"window holds {window} eval point{'' if most == 1 else 's'} per run here.",
        "  return AUC: trapezoid area under the eval-return curve over env steps, divided by "
        "the step range (in return units).",
        "  speed: WM updates / training seconds (collect + updates; evaluation and logging "
        "excluded), per run at its end; the console summary, page 1 and the time pages all use "
        "it, and the per-phase times (incl. 'other') add up to it.",
        *(f"  {line}." for line in DIVERSITY_DEFINITIONS),
        "",
        "Tests and error control:",
        "  Welch's t-test per arm vs separate for final return, return AUC, updates/s and h "
        f"dispersion; Holm over that whole family ({m} tests here) at alpha {summary.ALPHA}. "
        "Where Welch is undefined (zero variance in both arms) the exact Mann-Whitney p stands "
        "in, and the table says so.",
        "  Mann-Whitney U (exact without ties, permutation with ties) as a robustness check; "
        f"bootstrap percentile CIs descriptive, not shown below {stats.MIN_BOOTSTRAP_N} runs "
        "per arm; Hedges' g and P(improvement) as effect sizes.",
        "",
        "Pairing:",
        "  Arms share seeds 0..k-1: the same initial weights and prefill. They are not paired: "
        "the random streams diverge from the first updates (separate draws twice the replay "
        "batches), so every test treats the arms as independent samples.",
        "",
        "Built-in confounds of the schedules:",
        "  1. coupled imagines from posteriors the WM computed before its optimiser step, with "
        "the updated weights (separate filters and imagines with the same weights): "
        f"{shift_text}.",
        "  2. In separate every AC update sees the iteration's last WM; in coupled AC update k "
        f"sees WM update k: {lag}.",
        "  3. separate samples 2n replay batches per iteration (n for the WM, n for the starts), "
        "coupled n: the coupled arms reuse the WM's data. coupled_refiltered removes confound 1 "
        f"but keeps 2 and 3; {refilter_cost(phases)}.",
        "",
        "Setup:",
        f"  env: {distinct('env')}; preset: {distinct('preset')}; commit: {distinct('git_commit')}",
        f"  hardware: {distinct('hardware')}; device: {distinct('device')}; GPU: {distinct('gpu')}"
        f"; CPUs: {distinct('cpu_count')}; torch: {distinct('torch_version')}",
    ]
    return lines
