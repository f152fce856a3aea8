"""Figures never silently drop data: single points, two points, unequal and disjoint grids."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from analysis import plots, summary

DIVERSITY = ("diversity/h_dispersion", "diversity/latent_entropy")


def _metrics(points: dict[str, list[list[int]]]) -> pd.DataFrame:
    """Long frame: per arm, per run, the env steps of its log points (each its own grid).

    Wall-clock grows 1 s per 10 steps, offset by 1000 s per run, so that runs' wall-clock
    ranges do not overlap.
    """
    rows = []
    for arm, runs in points.items():
        for seed, steps in enumerate(runs):
            run_id = f"{arm}-{seed}"
            for index, step in enumerate(steps):
                clock = 1000.0 * seed + step / 10
                values = {
                    "eval/return": 10.0 + step / 100 + seed,
                    "time/total": clock,
                    "progress/iterations": 10.0 * (index + 1),
                    "time/wm": 0.5,
                    "time/collect": 0.1,
                    "time/other": 0.01,
                    **{name: 1.0 + seed for name in DIVERSITY},
                }
                rows += [(run_id, arm, seed, k, step, v, clock) for k, v in values.items()]
    return pd.DataFrame(
        rows, columns=["run_id", "arm", "seed", "metric", "step", "value", "wall_clock"]
    )


CASES = {
    "one point per run": {"separate": [[600], [600]], "coupled": [[600], [600], [600]]},
    "two points per run": {"separate": [[300, 600], [300, 600]], "coupled": [[300, 600]] * 2},
    "unequal grids": {"separate": [[100, 400, 600], [250, 600]], "coupled": [[0, 600], [50]]},
}


def _drawn_colors(ax) -> set[str]:
    """Colours of lines a reader can see: two or more points joined, or marked points (a
    one-point line without a marker draws nothing)."""

    def visible(line) -> bool:
        points = len(line.get_xdata())
        has_marker = line.get_marker() not in (None, "None", "", " ")
        return (points >= 2 and line.get_linestyle() not in ("None", "")) or (
            points >= 1 and has_marker
        )

    return {to_hex(line.get_color()) for line in ax.get_lines() if visible(line)}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("x", ["step", "wall_clock"])
def test_learning_curves_draw_every_arm_with_a_legend_entry(case: str, x: str) -> None:
    metrics = _metrics(CASES[case])
    figure = plots.learning_curves(metrics, x=x)
    ax = figure.axes[0]
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    for arm in CASES[case]:
        assert any(label.startswith(f"{arm} (n=") for label in labels), (arm, labels)
        assert to_hex(plots.arm_color(arm)) in _drawn_colors(ax)
    singles = sum(len(steps) == 1 for runs in CASES[case].values() for steps in runs)
    notes = [text.get_text() for text in ax.texts]
    assert (f"{singles} run(s) with one logged point (markers)" in notes) == bool(singles)


@pytest.mark.parametrize("case", sorted(CASES))
def test_diversity_panels_are_never_blank(case: str) -> None:
    figure = plots.diversity_curves(_metrics(CASES[case]))
    panels = [ax for ax in figure.axes if ax.get_visible() and ax.get_title()]
    assert len(panels) == len(DIVERSITY)
    for ax in panels:
        assert _drawn_colors(ax) >= {to_hex(plots.arm_color(arm)) for arm in CASES[case]}


def test_time_breakdown_stacks_the_phases_to_the_training_time() -> None:
    metrics = _metrics(CASES["unequal grids"])
    figure = plots.time_breakdown(metrics)
    ax = figure.axes[0]
    tops = {}
    for patch in ax.patches:
        index = round(patch.get_x() + patch.get_width() / 2)
        tops[index] = max(tops.get(index, 0.0), patch.get_y() + patch.get_height())
    expected = summary.phase_seconds(metrics).groupby("arm")["total"].mean()
    for index, arm in enumerate(summary.ordered_arms(metrics["arm"])):
        assert tops[index] == pytest.approx(expected[arm])
    assert any(text.get_text().startswith("median 0.61 s") for text in ax.texts)


def test_effect_panel_is_a_readable_page_without_intervals() -> None:
    table = pd.DataFrame(
        [
            {"arm": "separate"},
            {"arm": "coupled", "poi": 1.0, "diff": 5.0, "hedges_g": 3.1, "ci_note": "n = 2"},
        ]
    )
    for column in ("poi_ci_low", "poi_ci_high", "diff_ci_low", "diff_ci_high"):
        table[column] = np.nan
    figure = plots.effect_panel(table)
    assert figure.get_figheight() >= 4.0
    left = figure.axes[0]
    assert [t.get_text() for t in left.get_yticklabels()] == ["coupled\ng = 3.10"]
    assert "no CI" in figure._suptitle.get_text()


def test_final_return_points_are_the_runs_and_the_figure_repeats() -> None:
    """One point per finished run at its arm's box, and the same figure on every build (the
    jitter comes from a seeded generator, not numpy's global one)."""
    scores = pd.DataFrame(
        {
            "arm": ["coupled", "separate", "separate", "coupled", "coupled"],
            "status": ["FINISHED", "FINISHED", "FINISHED", "FINISHED", "FAILED"],
            "final_return": [3.0, 1.0, 2.0, 4.0, 99.0],
        }
    )
    pngs = []
    for draw in range(2):
        np.random.seed(draw)  # the global generator must not matter
        figure = plots.final_return_distribution(scores)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        pngs.append(buffer.getvalue())
    assert pngs[0] == pngs[1]
    ax = figure.axes[0]
    points = np.concatenate([c.get_offsets() for c in ax.collections if len(c.get_offsets())])
    labels = {round(t.get_position()[0]): t.get_text() for t in ax.get_xticklabels()}
    by_arm = {
        labels[round(x)]: sorted(y for x2, y in points if round(x2) == round(x)) for x, _ in points
    }
    assert by_arm == {"separate": [1.0, 2.0], "coupled": [3.0, 4.0]}  # not the failed run
