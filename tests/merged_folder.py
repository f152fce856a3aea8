"""A results folder shaped like the merge of cpu_classic (separate, coupled: starts=last) with a
study of separate_all and coupled_all (starts=all) on cartpole and pendulum: cpu_classic's
runs of those two tasks, and for each of them a starts=all copy whose every eval point is
shifted by a known amount of normalised score and whose h dispersion is scaled by a known
factor, so the factorial effects and diversity ratios are known exactly."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from analysis.results import read_results, write_results
from analysis.summary import DIVERSITY_METRIC, RETURN_METRIC

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "results" / "cpu_classic"
TASKS = ("cartpole", "pendulum")
ALL_ARMS = {"separate": "separate_all", "coupled": "coupled_all"}
SHIFTS = {  # (task, starts=all arm) -> normalised score added to each copied run
    ("cartpole", "separate_all"): 0.20,
    ("cartpole", "coupled_all"): 0.10,
    ("pendulum", "separate_all"): 0.30,
    ("pendulum", "coupled_all"): 0.30,
}
DISPERSION = {"separate_all": 1.5, "coupled_all": 1.25}
"""Factor on every logged h dispersion of the copies (the same on every task)."""


def merged_folder(out: Path, seeds: int = 10) -> Path:
    """Write the merged folder to ``out``: ``seeds`` seeds of each of the four arms on each
    of :data:`TASKS` (cpu_classic's first ``seeds`` seeds and their starts=all copies)."""
    data, _ = read_results(PUBLISHED)
    keep = data.runs["task"].isin(TASKS) & (data.runs["seed"] < seeds)
    runs = data.runs[keep]
    metrics = data.metrics[data.metrics["run_id"].isin(runs["run_id"])]
    new_runs, new_metrics, params = [runs], [metrics], dict(data.run_params)
    for run in runs.itertuples(index=False):
        arm = ALL_ARMS[run.arm]
        run_id = f"{run.run_id[:24]}a11{run.seed:05d}"
        row = run._asdict() | {"run_id": run_id, "arm": arm, "starts": "all"}
        row["run_name"] = f"{run.task}/{arm}-seed{run.seed}"
        new_runs.append(pd.DataFrame([row]))
        points = metrics[metrics["run_id"] == run.run_id].copy()
        points["run_id"], points["arm"] = run_id, arm
        span = run.score_best - run.score_random
        returns = points["metric"] == RETURN_METRIC
        points.loc[returns, "value"] += SHIFTS[(run.task, arm)] * span
        points.loc[points["metric"] == DIVERSITY_METRIC, "value"] *= DISPERSION[arm]
        new_metrics.append(points)
        params[run_id] = params[run.run_id] | {"train.starts": "all"}
    runs = pd.concat(new_runs, ignore_index=True)
    merged = dataclasses.replace(
        data,
        experiment="cpu_classic_merged",
        runs=runs,
        metrics=pd.concat(new_metrics, ignore_index=True),
        arm_order=("separate", "coupled", "separate_all", "coupled_all"),
        tasks=TASKS,
        planned_seeds={arm: seeds for arm in ("separate", "coupled", *ALL_ARMS.values())},
        run_params={r: p for r, p in params.items() if r in set(runs["run_id"])},
    )
    return write_results(merged, None, out)
