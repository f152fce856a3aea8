"""Load one ablation's MLflow runs into tidy pandas frames.

The contract (written by ``ablations/``): one experiment per ablation; a parent run tagged
``ablation.role=parent``; child runs tagged ``ablation.role=child`` (and ``mlflow.parentRunId``)
with tags ``arm, schedule, starts, seed, env, preset, git_commit, device, torch_version,
hardware``, ``task`` (the env stands in for runs recorded before it), the task's score
references ``score.random, score.best, score.kind, score.source`` (where it has them) and the
machine's conditions ``cpu_count, gpu, load_avg_start`` (empty for runs recorded before
them); every metric stepped by agent env steps; ``time/total`` is cumulative training
seconds (collect + updates, evaluation excluded). Curves come from ``get_metric_history``
(``search_runs`` only keeps the latest value of each metric). The parent's tags
``reference``, ``arms`` and ``tasks`` name the arm the others are compared with, the arms'
order and the tasks' order; its tag ``planned_seeds`` the runs planned (absent on
ablations recorded before it).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from analysis.names import (
    PLANNED_SEEDS_TAG,
    RUN_TAGS,
    SCORE_TAGS,
    WALL_CLOCK_METRIC,
    parse_planned_seeds,
)

DEFAULT_REFERENCE = "separate"
"""The reference arm of ablations recorded before the parent run named its own."""
RUNS_COLUMNS = (
    "run_id",
    "run_name",
    "arm",
    "seed",
    "status",
    *RUN_TAGS[1:],
    "score_random",
    "score_best",
    "score_kind",
    "score_source",
    "final_step",
    "wall_clock",
    "start_time",
    "end_time",
)
METRICS_COLUMNS = ("run_id", "arm", "seed", "metric", "step", "value", "wall_clock")


class AblationDataError(Exception):
    """The experiment cannot be analysed (unknown, or without child runs); one-line message."""


@dataclass
class AblationData:
    """Everything the analysis needs from one ablation experiment.

    Attributes:
        experiment: experiment (= ablation) name.
        experiment_id: MLflow experiment id.
        parent_run_id: id of the ``ablation.role=parent`` run, None when there is none.
        runs: one row per child run, columns ``RUNS_COLUMNS`` (all statuses).
        metrics: long frame, one row per logged point, columns ``METRICS_COLUMNS``.
        params: flattened config of one child run (a finished one when available).
        run_params: flattened config of every child run, by run id (arms, grids and tasks
            can differ in config, e.g. the train ratio).
        reference: the arm every other is compared with (the parent's ``reference`` tag).
        arm_order: the ablation's arms in its own order (the parent's ``arms`` tag).
        tasks: the ablation's tasks in order (the parent's ``tasks`` tag, else the runs').
        planned_seeds: seeds planned per arm, in the arms' order (the parent's
            ``planned_seeds`` tag); empty for an ablation recorded before the tag.
        provenance: for an ablation merged from published studies
            (:mod:`analysis.merge`), one line per study (what it ran, at which commit, its
            own adaptive decisions); empty otherwise.
    """

    experiment: str
    experiment_id: str
    parent_run_id: str | None
    runs: pd.DataFrame
    metrics: pd.DataFrame
    params: dict[str, str] = field(default_factory=dict)
    reference: str = DEFAULT_REFERENCE
    arm_order: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    planned_seeds: dict[str, int] = field(default_factory=dict)
    run_params: dict[str, dict[str, str]] = field(default_factory=dict)
    provenance: tuple[str, ...] = ()

    def for_task(self, task: str) -> AblationData:
        """The same ablation restricted to one task's runs and metrics; ``params`` are then
        that task's (a finished run's when available; empty when no run's are known)."""
        runs = self.runs[self.runs["task"] == task]
        finished = runs[runs["status"] == "FINISHED"]
        owners = [*finished["run_id"], *runs["run_id"]]
        params = next((self.run_params[r] for r in owners if r in self.run_params), {})
        return replace(
            self,
            runs=runs,
            metrics=self.metrics[self.metrics["run_id"].isin(runs["run_id"])],
            params=params,
            tasks=(task,),
            run_params={r: p for r, p in self.run_params.items() if r in set(runs["run_id"])},
        )

    @property
    def planned_runs(self) -> list[tuple[str, str, int]] | None:
        """Every run the ablation planned, ``(task, arm, seed)`` by task, arm and seed; None
        when its parent did not record the plan (an ablation recorded before it did)."""
        if not self.planned_seeds:
            return None
        return [
            (task, arm, seed)
            for task in self.tasks
            for arm, seeds in self.planned_seeds.items()
            for seed in range(seeds)
        ]

    @property
    def multi_task(self) -> bool:
        """An ablation over several tasks (a suite or an env list)."""
        return len(self.tasks) > 1

    @property
    def finished_runs(self) -> pd.DataFrame:
        """Child runs with status FINISHED: the only ones statistics use."""
        return self.runs[self.runs["status"] == "FINISHED"]

    @property
    def problem_runs(self) -> pd.DataFrame:
        """Child runs that are not FINISHED (FAILED, RUNNING, KILLED, ...)."""
        return self.runs[self.runs["status"] != "FINISHED"]

    @property
    def finished_metrics(self) -> pd.DataFrame:
        """Metric points of FINISHED runs only."""
        return self.metrics[self.metrics["run_id"].isin(self.finished_runs["run_id"])]


def load_ablation(experiment: str, tracking_uri: str | None = None) -> AblationData:
    """Read an ablation experiment from MLflow.

    Args:
        experiment: experiment name (the ablation's name, e.g. ``cartpole-ablation``).
        tracking_uri: any MLflow tracking URI; None uses MLflow's default resolution
            (``MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``).

    Raises:
        AblationDataError: the experiment does not exist or has no child runs.
    """
    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise AblationDataError(
            f"unknown experiment {experiment!r} at {client.tracking_uri}"
            + _did_you_mean(client, experiment)
        )
    all_runs = _search_all(client, found.experiment_id)
    parents = [run for run in all_runs if run.data.tags.get("ablation.role") == "parent"]
    parent_run_id = parents[0].info.run_id if parents else None
    children = [run for run in all_runs if _is_child(run, parent_run_id)]
    if not children:
        raise AblationDataError(f"experiment {experiment!r} has no child runs")

    metrics = concat_metrics([_run_metrics(client, run) for run in children])
    runs = _runs_frame(children, metrics)
    finished = [run for run in children if run.info.status == "FINISHED"]
    params = dict((finished or children)[0].data.params)
    tags = parents[0].data.tags if parents else {}
    seen = list(dict.fromkeys(runs["task"]))
    tasks = [task for task in tags.get("tasks", "").split(",") if task]
    tasks += [task for task in seen if task not in tasks]
    return AblationData(
        experiment,
        found.experiment_id,
        parent_run_id,
        runs,
        metrics,
        params,
        reference=tags.get("reference") or DEFAULT_REFERENCE,
        arm_order=tuple(arm for arm in tags.get("arms", "").split(",") if arm),
        tasks=tuple(tasks),
        planned_seeds=parse_planned_seeds(tags.get(PLANNED_SEEDS_TAG, "")),
        run_params={run.info.run_id: dict(run.data.params) for run in children},
    )


def require_finished(data: AblationData) -> None:
    """Raise :class:`AblationDataError` (one line) when no run of the ablation finished:
    there is nothing to report or export then."""
    if data.finished_runs.empty:
        statuses = ", ".join(sorted(set(data.runs["status"])))
        raise AblationDataError(
            f"ablation {data.experiment!r} has no finished runs yet ({len(data.runs)} "
            f"{statuses}); rerun the ablation to finish them"
        )


def parent_runs(experiment: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """The experiment's runs tagged as an ablation's parent (one in a sound ablation;
    deleted runs are not read), columns ``run_id``, ``status``; empty when the experiment
    does not exist."""
    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    runs = _search_all(client, found.experiment_id) if found is not None else []
    rows = [
        (run.info.run_id, run.info.status)
        for run in runs
        if run.data.tags.get("ablation.role") == "parent"
    ]
    return pd.DataFrame(rows, columns=["run_id", "status"])


def recent_ablations(client: MlflowClient, most: int = 1000) -> list[str]:
    """Experiment ids of the store's ablations (those with an ``ablation.role=parent`` run),
    the most recently started first; at most ``most``."""
    experiment_ids = [e.experiment_id for e in client.search_experiments(max_results=1000)]
    parents = client.search_runs(
        experiment_ids,
        "tags.`ablation.role` = 'parent'",
        order_by=["attributes.start_time DESC"],
        max_results=most,
    )
    return [parent.info.experiment_id for parent in parents]


def latest_ablation(tracking_uri: str | None = None) -> str:
    """Name of the experiment of the most recently started ablation that has runs.

    Raises:
        AblationDataError: the store holds no ablation with runs.
    """
    client = MlflowClient(tracking_uri=tracking_uri)
    for experiment_id in recent_ablations(client):
        if client.search_runs([experiment_id], "tags.`ablation.role` = 'child'", max_results=1):
            return client.get_experiment(experiment_id).name
    raise AblationDataError(f"no ablation found at {client.tracking_uri}; run make ablation first")


def _did_you_mean(client: MlflowClient, experiment: str) -> str:
    """``'; did you mean 'a' or 'b'?'`` naming the store's closest experiment names (by
    difflib's similarity ratio), or ``'; it has no ablations yet'`` / ``''``."""
    names = [e.name for e in client.search_experiments(max_results=1000) if e.name != "Default"]
    if not names:
        return "; it has no ablations yet (run make ablation first)"
    close = difflib.get_close_matches(experiment, names, n=3, cutoff=0.6)
    if not close:
        more = ", ..." if len(names) > 10 else ""
        return f"; its experiments: {', '.join(sorted(names)[:10])}{more}"
    return f"; did you mean {' or '.join(repr(name) for name in close)}?"


def _search_all(client: MlflowClient, experiment_id: str) -> list[Run]:
    # search_runs is paginated; an ablation with many seeds can exceed one page.
    runs: list[Run] = []
    page_token = None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=page_token)
        runs.extend(page)
        page_token = page.token
        if not page_token:
            return runs


def _is_child(run: Run, parent_run_id: str | None) -> bool:
    tags = run.data.tags
    if tags.get("ablation.role") == "child":
        return True
    return parent_run_id is not None and tags.get("mlflow.parentRunId") == parent_run_id


def _seed(run: Run) -> int:
    try:
        return int(run.data.tags.get("seed", ""))
    except ValueError:
        return -1  # a run without a usable seed tag still shows up in the appendix


def _run_metrics(client: MlflowClient, run: Run) -> pd.DataFrame:
    """Full history of every metric of one run, with ``wall_clock`` from ``time/total``."""
    points = [
        (key, point.step, point.value)
        for key in sorted(run.data.metrics)
        for point in client.get_metric_history(run.info.run_id, key)
    ]
    return run_metrics_frame(run.info.run_id, run.data.tags.get("arm", ""), _seed(run), points)


def run_metrics_frame(
    run_id: str, arm: str, seed: int, points: list[tuple[str, int, float]]
) -> pd.DataFrame:
    """One run's rows of ``AblationData.metrics`` from its points ``(metric, step, value)``
    (by metric name, then as logged): sorted by step and metric, ``wall_clock`` the
    ``time/total`` at the nearest logged step at or before each point (NaN without it).
    Every reader of an ablation builds its metrics frame here, so their frames agree."""
    frame = pd.DataFrame(points, columns=["metric", "step", "value"])
    frame["step"] = frame["step"].astype("int64")
    frame["value"] = frame["value"].astype(float)
    frame = frame.sort_values(["step", "metric"], kind="stable").reset_index(drop=True)

    clock = frame.loc[frame["metric"] == WALL_CLOCK_METRIC, ["step", "value"]]
    clock = clock.drop_duplicates("step", keep="last").rename(columns={"value": "wall_clock"})
    if clock.empty:
        frame["wall_clock"] = np.nan
    else:
        # The clock at the nearest logged step at or before each point.
        frame = pd.merge_asof(frame, clock, on="step", direction="backward")
    frame.insert(0, "run_id", run_id)
    frame.insert(1, "arm", arm)
    frame.insert(2, "seed", seed)
    return frame[list(METRICS_COLUMNS)]


def concat_metrics(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """``AblationData.metrics`` from the runs' :func:`run_metrics_frame` (at least one), its
    text columns as text whether or not some runs logged nothing."""
    metrics = pd.concat(frames, ignore_index=True)
    return metrics.astype({"run_id": str, "arm": str, "metric": str})


def _float(value: str | None) -> float:
    try:
        return float(value) if value else np.nan
    except ValueError:
        return np.nan


def _runs_frame(children: list[Run], metrics: pd.DataFrame) -> pd.DataFrame:
    by_run = metrics.groupby("run_id")
    final_step = by_run["step"].max()
    clock = metrics[metrics["metric"] == WALL_CLOCK_METRIC].sort_values("step")
    wall_clock = clock.groupby("run_id")["value"].last()
    rows = []
    for run in children:
        run_id = run.info.run_id
        tags = run.data.tags
        rows.append(
            {
                "run_id": run_id,
                "run_name": run.info.run_name,
                "arm": tags.get("arm", ""),
                "seed": _seed(run),
                "status": run.info.status,
                **{tag: tags.get(tag, "") for tag in RUN_TAGS[1:]},
                "task": tags.get("task") or tags.get("env", ""),
                **{column: _float(tags.get(tag)) for tag, column in SCORE_TAGS.items()},
                "score_kind": tags.get("score.kind", ""),
                "score_source": tags.get("score.source", ""),
                "final_step": final_step.get(run_id, np.nan),
                "wall_clock": wall_clock.get(run_id, np.nan),
                "start_time": run_time(run.info.start_time),
                "end_time": run_time(run.info.end_time),
            }
        )
    return runs_frame(rows)


def run_time(milliseconds: int | None) -> pd.Timestamp | None:
    """A run's start or end (MLflow's milliseconds since the epoch, UTC) as the runs
    frame holds it; None for a run that has not ended."""
    return pd.to_datetime(milliseconds, unit="ms")


def runs_frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    """``AblationData.runs`` from one dict per run (keys ``RUNS_COLUMNS``), sorted by arm,
    seed and run name. Every reader of an ablation builds its runs frame here."""
    frame = pd.DataFrame(rows, columns=list(RUNS_COLUMNS))
    return frame.sort_values(["arm", "seed", "run_name"], kind="stable").reset_index(drop=True)
