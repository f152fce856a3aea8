"""The suite report's method and speed pages on a real MLflow store holding a synthetic 2-task
ablation: every number they print equals an independent computation from what the test
logged, per task (tasks differ in config and cost), with a task whose control arm has a
single finished run and a failed one."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from mlflow.entities import Metric, Param

from analysis import method, speed, summary
from analysis.load import load_ablation
from reports import pages
from tests.suite_store import child_tags, new_suite, report_pages

ARMS = ("separate", "coupled_refiltered")
# task -> (train ratio, last step, eval/log every, score references)
TASKS = {
    "cartpole": (512.0, 1000, 100, (20.0, 500.0)),
    "acrobot": (256.0, 600, 100, (-500.0, 0.0)),
}
# (task, arm) -> the FINISHED seeds; acrobot's control arm has one, plus a FAILED seed 1.
SEEDS = {
    ("cartpole", "separate"): (0, 1, 2),
    ("cartpole", "coupled_refiltered"): (0, 1, 2),
    ("acrobot", "separate"): (0, 1, 2),
    ("acrobot", "coupled_refiltered"): (0,),
}
FAILED = ("acrobot", "coupled_refiltered", 1)
BUSY = ("acrobot", "separate", 2)  # trained on a loaded machine: load 3 on its 2 CPUs
ITERATIONS_PER_LOG = 10.0
# Seconds per iteration of each phase; acrobot costs 3x cartpole (tasks differ in cost), and
# each seed runs 10% slower than the one before (a spread, well inside comparable conditions).
BASE_PHASES = {"collect": 0.05, "wm": 0.4, "starts": 0.15, "imagine": 0.1, "ac": 0.2, "other": 0.01}


def _phases(task: str, arm: str, seed: int) -> dict[str, float]:
    phases = dict(BASE_PHASES)
    if arm == "coupled_refiltered":
        phases["starts"] = 0.0
        phases["refilter"] = 0.12 if task == "cartpole" else 0.07
    scale = (3.0 if task == "acrobot" else 1.0) * (1 + 0.1 * seed)
    return {name: value * scale for name, value in phases.items()}


def _shift(task: str, seed: int) -> float:
    """The logged staleness/start_h_shift of a refiltered run (constant over its log)."""
    return (0.2 if task == "cartpole" else 0.05) + 0.01 * seed


def _log_run(client, experiment_id, parent_id, task, arm, seed, status) -> None:
    ratio, last, every, (random, best) = TASKS[task]
    tags = child_tags(parent_id, task, arm, seed)
    tags |= {"hardware": "test-cpu x2", "device": "cpu", "cpu_count": "2", "gpu": "none"}
    tags |= {"git_commit": "abc1234", "torch_version": "2.13.0"}
    tags |= {"score.random": repr(random), "score.best": repr(best), "score.kind": "max"}
    params = {"train.train_ratio": repr(ratio), "train.collect_every": "16"}
    params |= {"train.batch_size": "16", "train.seq_len": "64"}
    run = client.create_run(experiment_id, run_name=f"{task}/{arm}-seed{seed}", tags=tags)
    phases = _phases(task, arm, seed)
    per_iteration = sum(phases.values())
    n = ratio * 16 / (16 * 64)
    now = int(time.time() * 1000)
    metrics = []
    for index, step in enumerate(range(0, last + 1, every)):
        iterations = ITERATIONS_PER_LOG * index
        values = {
            "eval/return": random + (best - random) * step / last * (0.5 + 0.1 * seed),
            "progress/iterations": iterations,
            "progress/wm_updates": n * iterations,
            "time/total": iterations * per_iteration,
            "diversity/h_dispersion": 1.0 + 0.1 * seed,
            **{f"time/{name}": seconds for name, seconds in phases.items()},
        }
        if arm == "coupled_refiltered":
            values["staleness/start_h_shift"] = _shift(task, seed)
        metrics += [Metric(key, float(value), now, step) for key, value in values.items()]
    load = 3.0 if (task, arm, seed) == BUSY else 1.0
    metrics.append(Metric("system/load_avg_mean", load, now, last))
    client.log_batch(run.info.run_id, metrics, [Param(k, v) for k, v in params.items()])
    client.set_terminated(run.info.run_id, status)


def _speed(task: str, arm: str, seed: int) -> float:
    """Updates/s of a run, from what was logged: WM updates / training seconds at its end."""
    ratio = TASKS[task][0]
    return ratio * 16 / (16 * 64) / sum(_phases(task, arm, seed).values())


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("suite-pages")
    client, uri, experiment_id, parent_id = new_suite(root, "separate", ARMS, TASKS)
    runs = [(task, arm, seed) for (task, arm), seeds in SEEDS.items() for seed in seeds]
    # Seed by seed, arms interleaved, as the runner trains them.
    for task, arm, seed in sorted(runs, key=lambda run: run[2]):
        _log_run(client, experiment_id, parent_id, task, arm, seed, "FINISHED")
    _log_run(client, experiment_id, parent_id, *FAILED, "FAILED")
    return report_pages(uri, root, n_resamples=50)


def _spread(values: list[float], separator: str = " ") -> str:
    return f"{np.median(values):.3g}{separator}[{min(values):.3g}, {max(values):.3g}]"


def test_method_page_states_each_tasks_numbers(report: dict) -> None:
    method = report["pages"][2]
    assert method.startswith("Method: what was compared and how")
    assert "Tasks (2): cartpole, acrobot; every statistic compares arms within a task" in method
    # The window is the last 10% of steps: cartpole's 0..1000 holds 900 and 1000, acrobot's
    # 0..600 only 600.
    windows = {
        task: sum(step >= 0.9 * last for step in range(0, last + 1, every))
        for task, (_, last, every, _) in TASKS.items()
    }
    assert windows == {"cartpole": 2, "acrobot": 1}
    assert "eval points per run in that window, cartpole: 2; acrobot: 1." in method
    # Confound 2 per task: brute-force the lag (AC update k of n has seen k WM updates).
    lags = []
    for task, (ratio, *_) in TASKS.items():
        n = round(ratio * 16 / (16 * 64))
        lag = np.mean([n - k for k in range(1, n + 1)])
        lags.append(
            f"{task}: with n = {n} updates per iteration, {lag:g} WM updates fewer on average"
        )
    assert "sees WM update k: " + lags[0] + " ((n - 1) / 2, from the config); " + lags[1] in method
    # Confound 1 per task: median over the refiltered runs of each run's logged shift.
    shifts = {
        task: np.median([_shift(task, s) for s in SEEDS[(task, "coupled_refiltered")]])
        for task in TASKS
    }
    assert (
        f"filtered again: cartpole: median {shifts['cartpole']:.3g}; "
        f"acrobot: median {shifts['acrobot']:.3g}." in method
    )
    # Refilter cost per task: medians over the finished refiltered runs only (not the failed).
    costs = []
    for task in TASKS:
        runs = [_phases(task, "coupled_refiltered", s) for s in SEEDS[(task, "coupled_refiltered")]]
        seconds = np.median([r["refilter"] for r in runs])
        share = np.median([r["refilter"] / sum(r.values()) for r in runs])
        costs.append(f"{task}: {seconds:.3g} s, {100 * share:.0f}%")
    assert (
        "its extra filter pass per update costs, per iteration and as a share of those arms' "
        "training time (medians over their runs), " + "; ".join(costs) + "." in method
    )
    # The Holm family is the per-task page's: every finite p over tasks x arms x scores.
    per_task = pd.read_csv(report["tables"] / "per_task.csv")
    tested = [c for c in per_task if c.endswith("_p") and f"{c}_holm" in per_task]
    assert len(tested) == len(summary.TESTED_SCORES)
    m = int(np.isfinite(per_task[tested].to_numpy(float)).sum())
    family = f"Holm family: {m} tests, every task x arm against the reference on each of"
    assert family in method and family in report["pages"][1] and family in report["pages"][0]
    assert "Welch's t-test per task and arm vs separate" in method
    assert "its two-sided p twice the smaller one-sided p, capped at 1" in method
    assert (
        "the mean, median and optimality gap (1 - mean of min(score, 1)) take each task's mean "
        "over its runs first, so every task weighs the same whatever its run count" in method
    )
    assert "never pooled across tasks" in method and "Their learning is not paired" in method
    assert "env: acrobot, cartpole" in method and "CPUs: 2" in method


def test_an_arm_with_one_run_on_a_task_gets_no_interval_and_no_call(report: dict) -> None:
    # acrobot's control arm finished one run (its other failed): no interval for that arm
    # or its P(improvement), while separate (3 runs on each task) keeps its intervals.
    aggregates = pd.read_csv(report["tables"] / "aggregates.csv").set_index("arm")
    control, reference = aggregates.loc["coupled_refiltered"], aggregates.loc["separate"]
    assert control["min_runs"] == 1 and reference["min_runs"] == 3
    for name in ("IQM", "mean", "median", "optimality gap"):
        assert np.isnan(control[f"{name}_low"]) and np.isfinite(control[name]), name
        assert reference[f"{name}_low"] <= reference[name] <= reference[f"{name}_high"], name
    assert np.isfinite(control["poi"]) and np.isnan(control["poi_low"])
    page = report["pages"][0]
    assert "no call on coupled_refiltered against separate" in page
    assert "fewest per task here: coupled_refiltered (1)" in page


def test_speed_page_gives_each_task_and_arm_its_own_medians(report: dict) -> None:
    page = report["pages"][3]
    assert "Speed: training time per iteration by phase (median [min, max] over runs)" in page
    header = "task arm runs updates/s median [min, max] speed ratio vs separate"
    assert header in page
    table = pd.read_csv(report["tables"] / "speed.csv")
    assert list(zip(table["task"], table["arm"], strict=True)) == list(SEEDS)
    ratios = {}
    for (task, arm), seeds in SEEDS.items():
        speeds = [_speed(task, arm, s) for s in seeds]  # FINISHED runs only
        reference = [_speed(task, "separate", s) for s in SEEDS[(task, "separate")]]
        ratio = np.mean(speeds) / np.mean(reference)
        cell = "reference" if arm == "separate" else f"{ratio:.3g}"
        collect = _spread([_phases(task, arm, s)["collect"] for s in seeds])
        row = f"{task} {arm} {len(seeds)} {_spread(speeds)} {cell} {collect}"
        assert row in page, row
        for phase in ("wm", "total"):
            values = [
                sum(_phases(task, arm, s).values())
                if phase == "total"
                else _phases(task, arm, s)[phase]
                for s in seeds
            ]
            assert _spread(values) in page, (task, arm, phase)
        if arm != "separate":
            ratios[task] = ratio
    # The degenerate cell: one finished run gives median = min = max; the failed run is out.
    single = _speed("acrobot", "coupled_refiltered", 0)
    assert f"acrobot coupled_refiltered 1 {single:.3g} [{single:.3g}, {single:.3g}]" in page
    # Page 1's suite speed ratio is the geometric mean of the per-task ratios shown here.
    aggregates = pd.read_csv(report["tables"] / "aggregates.csv").set_index("arm")
    geometric = np.exp(np.mean(np.log(list(ratios.values()))))
    assert aggregates.loc["coupled_refiltered", "speed_ratio"] == pytest.approx(geometric)
    assert "never pooled across tasks" in page
    # One acrobot run trained at load 1.5 per core against 0.5 for the others: that task is
    # flagged, on this page and on page 1, and cartpole is not.
    loads = [
        (3.0 if (task, arm, seed) == BUSY else 1.0) / 2  # logged load / the 2 CPUs
        for (task, arm), seeds in SEEDS.items()
        for seed in seeds
        if task == "acrobot"
    ]
    caution = (
        f"acrobot: Machine load differed between runs: mean load per core "
        f"{min(loads):.2f} to {max(loads):.2f} (highest: "
        f"{BUSY[0]}/{BUSY[1]}-seed{BUSY[2]}); speed ratios are distorted."
    )
    assert "Caution: " + caution in page
    assert "Speed caution: " + caution in report["pages"][0]
    assert "cartpole:" not in page.split("Caution: ")[1]
    # acrobot trains 3x slower than cartpole by design: checked within each task, no run is
    # an outlier, while one pooled check would call the acrobot runs speed outliers.
    assert "outlier in speed" not in page
    scores = pd.DataFrame(
        {
            "run_name": [f"{t}/{a}-seed{s}" for (t, a), seeds in SEEDS.items() for s in seeds],
            "task": [t for (t, _), seeds in SEEDS.items() for _ in seeds],
            "arm": [a for (_, a), seeds in SEEDS.items() for _ in seeds],
            "status": "FINISHED",
            "updates_per_s": [_speed(t, a, s) for (t, a), seeds in SEEDS.items() for s in seeds],
            "load_per_core": 0.5,
        }
    )
    assert speed.suite_speed_conditions(scores, list(TASKS), ARMS, "separate") == []
    assert any("outlier in speed" in w for w in summary.speed_conditions(scores))


def test_suite_speed_conditions_name_the_task_a_caution_holds_for() -> None:
    scores = pd.DataFrame(
        {
            "run_name": ["a0", "a1", "a2", "b0", "b1"],
            "task": ["a", "a", "a", "b", "b"],
            "arm": ["x"] * 5,
            "status": ["FINISHED"] * 4 + ["FAILED"],
            "updates_per_s": [1.0, 1.0, 3.0, 5.0, 50.0],
            "load_per_core": [0.5] * 5,
        }
    )
    # Task a's third run is 3x its arm's median; task b's outlier failed, so it is not used.
    (warning,) = speed.suite_speed_conditions(scores, ["a", "b"], ["x"], "x")
    assert warning.startswith("a: a2 trained at 3 updates/s against its arm's median 1")
    unrecorded = scores.assign(load_per_core=np.nan, updates_per_s=1.0)
    assert speed.suite_speed_conditions(unrecorded, ["a", "b"], ["x"], "x") == [
        "Every task: No machine load was recorded for these runs: speed comparability unknown."
    ]


def test_speed_by_task_shows_an_arm_that_only_failed_as_zero_runs() -> None:
    scores = pd.DataFrame(
        {
            "task": ["a", "a", "a"],
            "arm": ["ref", "ref", "new"],
            "status": ["FINISHED", "FINISHED", "FAILED"],
            "updates_per_s": [2.0, 4.0, 9.0],
        }
    )
    phases = pd.DataFrame(
        {"run_id": ["r0", "r1"], "arm": ["ref", "ref"], "task": ["a", "a"], "wm": [0.5, 0.25]}
    )
    phases["total"], phases["iterations"] = phases["wm"], 10.0
    table = speed.speed_by_task(scores, phases, ["a", "b"], ["ref", "new"], "ref")
    assert list(table["arm"]) == ["ref", "new"]  # task b has no runs: no rows
    ref, new = table.to_dict("records")
    assert (ref["runs"], ref["speed_median"], ref["speed_low"], ref["speed_high"]) == (2, 3, 2, 4)
    assert (ref["wm_median"], ref["wm_low"], ref["wm_high"]) == (0.375, 0.25, 0.5)
    assert np.isnan(ref["speed_ratio"])
    assert new["runs"] == 0 and np.isnan(new["speed_median"]) and np.isnan(new["speed_ratio"])
    assert np.isnan(new["wm_median"])


def test_one_task_method_lines_name_the_reference_and_every_runs_n(report: dict) -> None:
    data = load_ablation("suite", report["uri"])
    acrobot = data.for_task("acrobot")
    assert set(acrobot.runs["task"]) == {"acrobot"} and len(acrobot.runs) == 5
    assert set(acrobot.metrics["run_id"]) == set(acrobot.runs["run_id"])
    assert method.updates_per_iteration(acrobot.params) == 256 * 16 / (16 * 64)
    # The reference is the ablation's, not always separate.
    view = dataclasses.replace(acrobot, reference="coupled_refiltered")
    lines = " ".join(method.method_lines(view, pd.DataFrame(), pd.DataFrame()))
    assert "Welch's t-test per arm vs coupled_refiltered" in lines
    # Arms that differ in train ratio (a grid): the lag is stated for each run's n.
    grid = dict(acrobot.run_params)
    first = acrobot.finished_runs["run_id"].iloc[0]
    grid[first] = {**grid[first], "train.train_ratio": "1024.0"}  # n = 16
    lines = " ".join(
        method.method_lines(
            dataclasses.replace(acrobot, run_params=grid), pd.DataFrame(), pd.DataFrame()
        )
    )
    assert (
        "with n = 4 to 16 updates per iteration (the runs' configs differ), 1.5 to 7.5 WM "
        "updates fewer on average" in lines
    )
    # Where the configs name their schedule, only the coupled runs' n counts: the lag is theirs.
    arm_of = dict(zip(acrobot.runs["run_id"], acrobot.runs["arm"], strict=True))
    named = {
        run_id: {**params, "train.schedule": arm_of[run_id].split("_")[0]}
        for run_id, params in grid.items()
    }
    assert arm_of[first] == "coupled_refiltered"
    assert method.updates_per_iteration_values(dataclasses.replace(acrobot, run_params=named)) == [
        16.0
    ]


def test_a_long_method_page_is_packed_onto_the_page() -> None:
    # A suite of many tasks makes long confound lines: every line must still land on the page.
    lines = ["Heading:", *[f"  line {k}: " + "word " * 40 for k in range(45)], "", "Setup:"]
    page = pages.method_page(lines)
    canvas = FigureCanvasAgg(page)
    canvas.draw()
    renderer = canvas.get_renderer()
    bottoms = [text.get_window_extent(renderer).y0 for text in page.texts]
    assert min(bottoms) >= 0, min(bottoms)  # pixels from the page's bottom edge
    assert page.texts[-1].get_text() == "Setup:"
