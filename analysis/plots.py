"""Figures for an ablation report; every function returns a ``matplotlib.figure.Figure``.

Figures are built as ``Figure`` objects, not through ``pyplot``: nothing touches the global
figure registry or needs a display, and saving renders with Agg (PNG) or the PDF backend.
One fixed colour and line style per arm so the figures also read in grey-scale print.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from analysis import stats
from analysis.aggregate import MIN_RUNS_PER_TASK
from analysis.load import DEFAULT_REFERENCE
from analysis.summary import (
    RETURN_METRIC,
    TRAINING_PHASES,
    ordered_arms,
    phase_seconds,
)

# Okabe-Ito colour-blind-safe palette; line styles keep arms apart when printed grey.
ARM_COLORS = {
    "separate": "#0072B2",
    "coupled": "#D55E00",
    "coupled_refiltered": "#009E73",
    "separate_all": "#56B4E9",
    "coupled_all": "#E69F00",
    "coupled_refiltered_all": "#CC79A7",
}
ARM_LINESTYLES = {
    "separate": "-",
    "coupled": "--",
    "coupled_refiltered": (0, (5, 1, 1, 1)),
    "separate_all": "-.",
    "coupled_all": ":",
    "coupled_refiltered_all": (0, (1, 2)),
}
FALLBACK_COLORS = ("#F0E442", "#000000", "#882255", "#44AA99")
PHASE_COLORS = dict(
    zip(
        TRAINING_PHASES,
        ("#999999", "#0072B2", "#56B4E9", "#009E73", "#E69F00", "#D55E00", "#FFFFFF"),
        strict=True,
    )
)
DIVERSITY_METRICS = (
    "diversity/distinct_starts",
    "diversity/h_dispersion",
    "diversity/latent_entropy",
    "diversity/replay_age",
    "diversity/imagined_h_dispersion",
    "diversity/num_starts",
)


def arm_color(arm: str) -> str:
    """Fixed colour of an arm; arms outside the contract get a stable fallback colour."""
    if arm in ARM_COLORS:
        return ARM_COLORS[arm]
    return FALLBACK_COLORS[sum(map(ord, arm)) % len(FALLBACK_COLORS)]


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    return figure


def _style(ax) -> None:
    ax.grid(True, alpha=0.3, linewidth=0.5)
    ax.spines[["top", "right"]].set_visible(False)


def _time_unit(seconds: float) -> tuple[float, str]:
    if seconds > 2 * 3600:
        return 3600.0, "hours"
    if seconds > 120:
        return 60.0, "minutes"
    return 1.0, "seconds"


def _band(ax, runs: list[tuple[np.ndarray, np.ndarray]], arm: str) -> int:
    """Per-seed lines (markers where a run has under two points) and the mean with a 95%
    t-CI band; returns how many runs had a single point.

    ``runs``: per seed ``(x, y)``, each ``(n_points,)`` sorted by x. The mean is drawn where
    every run has a value (interpolated onto the union of their x); where the runs' ranges
    do not overlap, it is drawn dashed over the runs present at each x, and says so.
    """
    color, style = arm_color(arm), ARM_LINESTYLES.get(arm, "-")
    single = 0
    for x, y in runs:
        if x.size < 2:
            single += 1
        ax.plot(x, y, color=color, linewidth=0.6, alpha=0.5, linestyle=style,
                marker="o" if x.size < 3 else None, markersize=4)  # fmt: skip
    label = f"{arm} (n={len(runs)})"
    grid = np.unique(np.concatenate([x for x, _ in runs]))  # (n_grid,)
    # Interpolate onto shared x so seeds logged at different steps/clock times can be averaged;
    # NaN outside a run's own range (no extrapolation).
    values = np.stack(
        [np.where((grid >= x[0]) & (grid <= x[-1]), np.interp(grid, x, y), np.nan) for x, y in runs]
    )  # (n_seeds, n_grid)
    present = np.isfinite(values).sum(0)
    mean, low, high = stats.mean_ci_t(values)
    common = present == len(runs)
    if common.sum() >= 2:
        ax.plot(grid[common], mean[common], color=color, linewidth=2.0, linestyle=style,
                label=label)  # fmt: skip
        ax.fill_between(grid[common], low[common], high[common], color=color, alpha=0.2,
                        linewidth=0)  # fmt: skip
    elif common.sum() == 1:
        ax.plot(grid[common], mean[common], "D", color=color, markersize=7,
                markeredgecolor="black", label=f"{label}: mean at the one shared x")  # fmt: skip
    else:
        ax.plot(grid, mean, color=color, linewidth=1.5, linestyle=":", marker=".",
                label=f"{label}: ranges do not overlap, mean of runs present")  # fmt: skip
    return single


def _note_single(ax, single: int) -> None:
    if single:
        ax.text(0.01, 0.01, f"{single} run(s) with one logged point (markers)",
                transform=ax.transAxes, fontsize=7, va="bottom")  # fmt: skip


def _curves(metrics: pd.DataFrame, metric: str, x: str) -> dict[str, list]:
    """Per arm, per run ``(x, y)`` arrays of one metric (NaN x dropped, sorted by x)."""
    selected = metrics[metrics["metric"] == metric].dropna(subset=[x, "value"])
    curves: dict[str, list] = {}
    for arm in ordered_arms(selected["arm"]):
        for _, run in selected[selected["arm"] == arm].groupby("run_id"):
            run = run.sort_values(x)
            curves.setdefault(arm, []).append((run[x].to_numpy(float), run["value"].to_numpy()))
    return curves


def learning_curves(metrics: pd.DataFrame, x: str = "step", metric: str = RETURN_METRIC) -> Figure:
    """Eval return against env steps (``x="step"``) or training wall-clock (``"wall_clock"``).

    ``metrics``: long frame of FINISHED runs (``analysis.load.METRICS_COLUMNS``).
    """
    figure = _figure(7.5, 4.2)
    ax = figure.subplots()
    curves = _curves(metrics, metric, x)
    scale, unit = 1.0, ""
    if x == "wall_clock" and curves:
        scale, unit = _time_unit(max(c[0][-1] for runs in curves.values() for c in runs))
    single = sum(
        _band(ax, [(cx / scale, cy) for cx, cy in runs], arm) for arm, runs in curves.items()
    )
    _note_single(ax, single)
    if not curves:
        ax.text(0.5, 0.5, f"no {metric} logged", transform=ax.transAxes, ha="center")
    ax.set_xlabel("env steps" if x == "step" else f"training wall-clock ({unit})")
    ax.set_ylabel(metric)
    against = "env steps" if x == "step" else "wall-clock"
    ax.set_title(f"{metric} vs {against}: mean and 95% CI over seeds, thin lines = seeds")
    if curves:
        ax.legend(frameon=False)
    _style(ax)
    return figure


def final_return_distribution(scores: pd.DataFrame) -> Figure:
    """Final return per run (points) over a box per arm; ``scores`` from ``per_run_scores``."""
    finished = scores[(scores["status"] == "FINISHED") & scores["final_return"].notna()]
    arms = ordered_arms(finished["arm"])
    palette = {arm: arm_color(arm) for arm in arms}
    figure = _figure(6.0, 4.0)
    ax = figure.subplots()
    if arms:
        sns.boxplot(
            data=finished, x="arm", y="final_return", hue="arm", order=arms, palette=palette,
            ax=ax, boxprops={"alpha": 0.35}, showfliers=False, legend=False,
        )  # fmt: skip
        # The points' jitter from a seeded generator (seaborn's stripplot draws from numpy's
        # global one): the same runs give the same figure, whichever source they come from.
        rng = np.random.default_rng(0)
        for position, arm in enumerate(arms):
            values = finished.loc[finished["arm"] == arm, "final_return"].to_numpy(float)
            jitter = rng.uniform(-0.12, 0.12, values.size)
            ax.scatter(position + jitter, values, s=49, color=palette[arm], edgecolors="black",
                       linewidths=0.8, zorder=3)  # fmt: skip
    ax.set_ylabel("final eval return (last 10% of training)")
    ax.set_xlabel("")
    ax.set_title("Final return per seed")
    _style(ax)
    return figure


def time_breakdown(metrics: pd.DataFrame) -> Figure:
    """Stacked bars: seconds per training iteration by phase, mean over an arm's runs.

    Per run, each phase is weighted by the iterations of each log interval
    (:func:`analysis.summary.phase_seconds`), so a run's phases add up to its training time
    per iteration; whiskers span the arm's runs' totals (min to max); the label above each
    bar is the median total. A phase an arm never runs (``starts`` under ``coupled``) is 0.
    """
    phases = phase_seconds(metrics)
    arms = ordered_arms(phases["arm"]) if not phases.empty else []
    per_arm = phases.groupby("arm").mean(numeric_only=True).reindex(arms)
    figure = _figure(7.0, 4.2)
    ax = figure.subplots()
    bottom = np.zeros(len(arms))
    for phase in TRAINING_PHASES:
        if phase not in per_arm:
            continue
        heights = per_arm[phase].fillna(0.0).to_numpy()
        ax.bar(arms, heights, bottom=bottom, color=PHASE_COLORS[phase], label=phase,
               edgecolor="black", linewidth=0.5)  # fmt: skip
        bottom += heights
    for index, arm in enumerate(arms):
        totals = phases.loc[phases["arm"] == arm, "total"].to_numpy(float)
        ax.plot([index, index], [totals.min(), totals.max()], color="black", linewidth=1.2)
        ax.annotate(f"median {np.median(totals):.3g} s (n={totals.size})",
                    (index, max(totals.max(), bottom[index])), xytext=(0, 4),
                    textcoords="offset points", ha="center", va="bottom", fontsize=8)  # fmt: skip
    ax.set_ylabel("training seconds per iteration")
    ax.set_title("Where training time goes (bars: mean over seeds; whiskers: min-max)")
    if arms:
        ax.legend(title="phase", frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
        ax.text(0.5, 0.5, "no timing logged", transform=ax.transAxes, ha="center")
    _style(ax)
    return figure


def diversity_curves(metrics: pd.DataFrame) -> Figure:
    """Small multiples of every ``diversity/*`` metric against env steps, one panel each."""
    present = [name for name in DIVERSITY_METRICS if name in set(metrics["metric"])]
    extra = sorted(
        name
        for name in metrics["metric"].unique()
        if name.startswith("diversity/") and name not in present
    )
    names = present + extra
    columns = 3
    rows = max(1, int(np.ceil(len(names) / columns)))
    figure = _figure(10.0, 2.8 * rows + 0.6)
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False).ravel())
    for ax, name in zip(axes, names, strict=False):
        curves = _curves(metrics, name, "step")
        _note_single(ax, sum(_band(ax, runs, arm) for arm, runs in curves.items()))
        ax.set_title(name.removeprefix("diversity/"), fontsize=10)
        ax.set_xlabel("env steps", fontsize=8)
        ax.tick_params(labelsize=8)
        _style(ax)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    if names:
        handles, labels = axes[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", ncols=3, frameon=False)
    else:
        axes[0].set_visible(True)
        axes[0].text(0.5, 0.5, "no diversity metrics logged", ha="center")
    figure.suptitle("AC start-state diversity over training (mean, 95% CI)")
    return figure


TASK_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def diversity_against_score(runs: pd.DataFrame, arms: list[str], tasks: list[str]) -> Figure:
    """One point per FINISHED run: its mean h dispersion over training (x) against its
    normalised score (y), coloured by arm, one marker per task. ``runs``: per-run scores
    with ``h_dispersion`` and ``normalised``; runs lacking either are left out and counted
    in the title."""
    figure = _figure(8.0, 5.5)
    ax = figure.subplots()
    finished = runs[runs["status"] == "FINISHED"]
    shown = finished[np.isfinite(finished["h_dispersion"]) & np.isfinite(finished["normalised"])]
    for arm in arms:
        for index, task in enumerate(tasks):
            points = shown[(shown["arm"] == arm) & (shown["task"] == task)]
            if len(points):
                marker = TASK_MARKERS[index % len(TASK_MARKERS)]
                style = {"marker": marker, "s": 28, "alpha": 0.8, "edgecolors": "black"}
                x, y = points["h_dispersion"], points["normalised"]
                ax.scatter(x, y, color=arm_color(arm), linewidths=0.4, **style)
    arm_handles = [
        ax.scatter([], [], color=arm_color(arm), marker="o", edgecolors="black", linewidths=0.4)
        for arm in arms
    ]
    task_handles = [
        ax.scatter(
            [],
            [],
            color="white",
            marker=TASK_MARKERS[i % len(TASK_MARKERS)],
            edgecolors="black",
            linewidths=0.6,
        )  # fmt: skip
        for i in range(len(tasks))
    ]
    ax.legend([*arm_handles, *task_handles], [*arms, *tasks], fontsize=8, frameon=False,
              loc="upper left", bbox_to_anchor=(1.0, 1.0))  # fmt: skip
    ax.set_xlabel("start diversity: the run's mean h dispersion over training")
    ax.set_ylabel("normalised score")
    _style(ax)
    title = "Each run's start diversity against its normalised score (all tasks)"
    left_out = len(finished) - len(shown)
    if left_out:
        title += f"\n{left_out} finished run(s) left out: no h dispersion or no score references"
    figure.suptitle(title)
    return figure


def effect_panel(table: pd.DataFrame, reference: str = DEFAULT_REFERENCE) -> Figure:
    """Per arm vs the reference: P(improvement) and difference of means, with 95% CIs where
    there are enough runs for one (``stats.MIN_BOOTSTRAP_N``); Hedges' g in the arm label.

    ``table``: ``analysis.summary.compare_arms`` output.
    """
    others = table[table["arm"] != reference].reset_index(drop=True)
    figure = _figure(9.0, max(4.0, 1.6 + 0.8 * len(others)))
    left, right = figure.subplots(1, 2, sharey=True)
    positions = np.arange(len(others))
    for position, row in zip(positions, others.itertuples(), strict=True):
        color = arm_color(row.arm)
        for ax, value, low, high in (
            (left, row.poi, row.poi_ci_low, row.poi_ci_high),
            (right, row.diff, row.diff_ci_low, row.diff_ci_high),
        ):
            if np.isfinite(low) and np.isfinite(high):
                ax.plot([low, high], [position, position], color=color, linewidth=3, alpha=0.6)
            ax.plot([value], [position], "o", color=color, markeredgecolor="black", markersize=8)
    left.axvline(0.5, color="black", linewidth=0.8, linestyle="--")
    right.axvline(0.0, color="black", linewidth=0.8, linestyle="--")
    left.set_xlim(-0.02, 1.02)
    labels = [
        f"{row.arm}\ng = {row.hedges_g:.2f}" if np.isfinite(row.hedges_g) else f"{row.arm}\ng n/a"
        for row in others.itertuples()
    ]
    left.set_yticks(positions, labels)
    left.set_ylim(-0.8, max(0.8, len(others) - 0.2))
    left.set_xlabel(f"P(arm > {reference}) (bootstrap 95% CI)")
    right.set_xlabel(f"final return: arm - {reference} (bootstrap 95% CI)")
    for ax in (left, right):
        _style(ax)
    no_ci = others["ci_note"].astype(str).str.len().gt(0).any() if "ci_note" in others else False
    suffix = f" (no CI: fewer than {stats.MIN_BOOTSTRAP_N} runs per arm)" if no_ci else ""
    figure.suptitle("Effect sizes versus the reference arm" + suffix)
    return figure


def performance_profiles(
    taus: np.ndarray, profiles: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
) -> Figure:
    """Per arm, the fraction of runs with normalised score above tau, with its stratified
    bootstrap 95% band. ``profiles``: arm -> ``(value, low, high)``, each ``(len(taus),)``;
    an arm whose band is NaN (too few runs per task for one) is drawn without it, and the
    title says so."""
    figure = _figure(8.0, 5.0)
    ax = figure.subplots()
    no_band = []
    for arm, (value, low, high) in profiles.items():
        color = arm_color(arm)
        ax.plot(taus, value, color=color, linestyle=ARM_LINESTYLES.get(arm, "-"), label=arm)
        if np.isfinite(low).all() and np.isfinite(high).all():
            ax.fill_between(taus, low, high, color=color, alpha=0.2, linewidth=0)
        else:
            no_band.append(arm)
    ax.set_xlabel("normalised score tau")
    ax.set_ylabel("fraction of runs with score > tau")
    ax.set_ylim(-0.02, 1.02)
    _style(ax)
    if profiles:
        ax.legend(fontsize=8)
    title = "Performance profiles over the tasks with score references (95% CI bands)"
    if no_band:
        title += (
            f"\nno band for {', '.join(no_band)}: fewer than {MIN_RUNS_PER_TASK} runs on a task"
        )
    figure.suptitle(title)
    return figure


def task_learning_curves(
    metrics: pd.DataFrame,
    task_of: dict[str, str],
    tasks: list[str],
    arms: list[str],
    metric: str = RETURN_METRIC,
    title: str = "Eval return over agent steps per task (mean, 95% CI over seeds)",
) -> Figure:
    """Small multiples: one panel per task, ``metric`` (eval return) over agent steps, one
    colour per arm (mean and 95% t-CI over seeds, thin lines per seed). ``task_of``: run id
    -> task."""
    columns = int(np.ceil(np.sqrt(len(tasks))))
    rows = int(np.ceil(len(tasks) / columns))
    figure = _figure(3.6 * columns, 2.8 * rows)
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    selected = metrics[metrics["metric"] == metric].dropna(subset=["step", "value"])
    for ax, task in zip(axes, tasks, strict=False):
        in_task = selected[selected["run_id"].map(task_of) == task]
        for arm in arms:
            runs = [
                (run.sort_values("step")["step"].to_numpy(float),
                 run.sort_values("step")["value"].to_numpy(float))
                for _, run in in_task[in_task["arm"] == arm].groupby("run_id")
            ]  # fmt: skip
            if runs:
                _band(ax, runs, arm)
        ax.set_title(task, fontsize=9)
        ax.tick_params(labelsize=7)
        _style(ax)
    for ax in axes[len(tasks) :]:
        ax.axis("off")
    handles = [
        axes[0].plot([], [], color=arm_color(arm), linestyle=ARM_LINESTYLES.get(arm, "-"))[0]
        for arm in arms
    ]
    figure.legend(handles, arms, loc="outside lower center", ncol=min(len(arms), 6), fontsize=8)
    figure.suptitle(title)
    return figure
