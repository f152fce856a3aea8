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
from analysis.summary import REFERENCE_ARM, RETURN_METRIC, ordered_arms

# Okabe-Ito colour-blind-safe palette; line styles keep arms apart when printed grey.
ARM_COLORS = {
    "separate": "#0072B2",
    "coupled": "#D55E00",
    "separate_all": "#56B4E9",
    "coupled_all": "#E69F00",
}
ARM_LINESTYLES = {"separate": "-", "coupled": "--", "separate_all": "-.", "coupled_all": ":"}
FALLBACK_COLORS = ("#009E73", "#CC79A7", "#F0E442", "#000000")
PHASES = ("collect", "wm", "starts", "imagine", "ac")
PHASE_COLORS = ("#999999", "#0072B2", "#56B4E9", "#E69F00", "#D55E00")
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


def _band(ax, runs: list[tuple[np.ndarray, np.ndarray]], arm: str) -> None:
    """Thin per-seed lines plus the mean with a 95% t-CI band over the seeds' common range.

    ``runs``: per seed ``(x, y)``, each ``(n_points,)`` sorted by x.
    """
    color, style = arm_color(arm), ARM_LINESTYLES.get(arm, "-")
    for x, y in runs:
        ax.plot(x, y, color=color, linewidth=0.6, alpha=0.35, linestyle=style)
    start = max(x[0] for x, _ in runs)
    end = min(x[-1] for x, _ in runs)
    grid = np.unique(np.concatenate([x for x, _ in runs]))
    grid = grid[(grid >= start) & (grid <= end)]
    if grid.size == 0:
        return
    # Interpolate onto shared x so seeds logged at different steps/clock times can be averaged.
    values = np.stack([np.interp(grid, x, y) for x, y in runs])  # (n_seeds, n_grid)
    mean, low, high = stats.mean_ci_t(values)
    label = f"{arm} (n={len(runs)})"
    ax.plot(grid, mean, color=color, linewidth=2.0, linestyle=style, label=label)
    ax.fill_between(grid, low, high, color=color, alpha=0.2, linewidth=0)


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
    for arm, runs in curves.items():
        _band(ax, [(cx / scale, cy) for cx, cy in runs], arm)
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
        sns.stripplot(
            data=finished, x="arm", y="final_return", hue="arm", order=arms, palette=palette,
            ax=ax, size=7, edgecolor="black", linewidth=0.8, jitter=0.12, legend=False,
        )  # fmt: skip
    ax.set_ylabel("final eval return (last 10% of training)")
    ax.set_xlabel("")
    ax.set_title("Final return per seed")
    _style(ax)
    return figure


def time_breakdown(metrics: pd.DataFrame) -> Figure:
    """Stacked bars: mean seconds per training iteration by phase, per arm.

    Per run, each ``time/<phase>`` is averaged over its log points, then averaged over the
    arm's runs; a phase an arm never logs (``time/starts`` under ``coupled``) counts as 0.
    """
    timing = metrics[metrics["metric"].isin([f"time/{phase}" for phase in PHASES])]
    per_run = timing.groupby(["arm", "run_id", "metric"])["value"].mean()
    per_arm = per_run.groupby(["arm", "metric"]).mean().unstack("metric")
    arms = ordered_arms(per_arm.index) if not per_arm.empty else []
    figure = _figure(6.5, 4.0)
    ax = figure.subplots()
    bottom = np.zeros(len(arms))
    for phase, color in zip(PHASES, PHASE_COLORS, strict=True):
        column = f"time/{phase}"
        if column not in per_arm:
            continue
        heights = per_arm[column].reindex(arms).fillna(0.0).to_numpy()
        ax.bar(arms, heights, bottom=bottom, color=color, label=phase, edgecolor="black",
               linewidth=0.5)  # fmt: skip
        bottom += heights
    for index, total in enumerate(bottom):
        ax.annotate(f"{total:.3g} s", (index, total), ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("seconds per training iteration")
    ax.set_title("Where the time goes (mean over seeds)")
    if arms:
        ax.legend(title="phase", frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
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
        for arm, runs in _curves(metrics, name, "step").items():
            _band(ax, runs, arm)
        ax.set_title(name.removeprefix("diversity/"), fontsize=10)
        ax.set_xlabel("env steps", fontsize=8)
        ax.tick_params(labelsize=8)
        _style(ax)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    if names:
        handles, labels = axes[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", ncols=4, frameon=False)
    figure.suptitle("AC start-state diversity over training (mean, 95% CI)")
    return figure


def effect_panel(table: pd.DataFrame, reference: str = REFERENCE_ARM) -> Figure:
    """Per arm vs the reference: P(improvement) and difference of means, both with 95% CIs.

    ``table``: ``analysis.summary.compare_arms`` output.
    """
    others = table[table["arm"] != reference].reset_index(drop=True)
    figure = _figure(9.0, 1.2 + 0.6 * max(1, len(others)))
    left, right = figure.subplots(1, 2, sharey=True)
    positions = np.arange(len(others))
    for position, row in zip(positions, others.itertuples(), strict=True):
        color = arm_color(row.arm)
        for ax, value, low, high in (
            (left, row.poi, row.poi_ci_low, row.poi_ci_high),
            (right, row.diff, row.diff_ci_low, row.diff_ci_high),
        ):
            ax.plot([low, high], [position, position], color=color, linewidth=3, alpha=0.6)
            ax.plot([value], [position], "o", color=color, markeredgecolor="black")
        right.annotate(f"g = {row.hedges_g:.2f}", (row.diff, position), xytext=(0, 8),
                       textcoords="offset points", ha="center", fontsize=8)  # fmt: skip
    left.axvline(0.5, color="black", linewidth=0.8, linestyle="--")
    right.axvline(0.0, color="black", linewidth=0.8, linestyle="--")
    left.set_xlim(-0.02, 1.02)
    left.set_yticks(positions, list(others["arm"]))
    left.set_ylim(-0.6, max(0.6, len(others) - 0.4))
    left.set_xlabel(f"P(arm > {reference}) (bootstrap 95% CI)")
    right.set_xlabel(f"final return: arm - {reference} (bootstrap 95% CI)")
    for ax in (left, right):
        _style(ax)
    figure.suptitle("Effect sizes versus the reference arm")
    return figure
