"""The ablation's record in MLflow: its experiment, parent and child runs.

The layout in the store (the contract that ``analysis/`` reads):

- one experiment per ablation, tagged ``mlflow.experimentKind=custom_model_development``
  so MLflow 3's UI opens on the runs table, with a description (``mlflow.note.content``)
  saying where the answer is and a saved view of the runs grouped by arm (by task and arm
  over several tasks) that opens its charts on the learning curve
  (``mlflow.sharedViewState.arms``; :mod:`ablations.tracking.view`, whose address `make ui`
  prints);
- a parent run named after the ablation (tag ``ablation.role=parent``) whose description
  is a markdown table of arms linking every run, updated as runs finish, and says where
  the report is (updated when the ablation ends and once its report is attached); it
  carries the view's group tag ``ui.group`` (as every child does), and it also holds
  the children's leases as params ``lease.<run name>.<generation>``
  (:mod:`ablations.integrity.leases`);
  its tags ``arms`` (in the ablation's order), ``reference`` (the arm every other is
  compared with), ``tasks`` (comma list), ``suite`` (its name, or empty) and
  ``planned_seeds`` (the runs planned, ``arm:n`` per arm: seeds ``0..n-1`` on every task;
  adaptive seeding adds each interim's seeds as it plans them);
- a child run ``<arm>-seed<k>`` per run (``<task>/<arm>-seed<k>`` in an ablation over
  several tasks; tags ``ablation.role=child``, ``arm``, ``arm.overrides``, ``schedule``,
  ``starts``, ``seed``, ``env``, ``task``, ``ui.group``, ``preset``, ``git_commit``, ``device``,
  ``torch_version``, ``hardware``, ``config_hash``, and the task's score references
  ``score.random``, ``score.best``, ``score.kind``, ``score.source`` where it has them),
  the flattened config as params (so an arm's overrides are params too) and every agent
  metric stepped by agent env steps.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from mlflow.entities import Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ablations.integrity.creation import (
    child_claim_key,
    ensure_child,
    ensure_experiment,
    ensure_parent,
    settled,
)
from ablations.integrity.leases import COMMAND_ID, LeaseState, read_lease
from ablations.integrity.retries import retry_locked
from ablations.plan.arms import describe
from ablations.plan.spec import AblationSpec, RunSpec
from ablations.tracking.connection import TrackingError
from ablations.tracking.logger import log_metrics_batched
from ablations.tracking.provenance import git_commit, hardware
from ablations.tracking.view import (
    ARMS_VIEW_TAG,
    GROUP_TAG,
    NOTE,
    PARENT_GROUP,
    arms_view,
    experiment_note,
    group_label,
    parent_note,
    summary_key,
)
from agent.config import flatten
from agent.score_references import SCORE_REFERENCES
from analysis.names import (
    PLANNED_SEEDS_TAG,
    format_planned_seeds,
    parse_planned_seeds,
)
from analysis.store import report_files

EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


class AblationStore:
    """The ablation's experiment, parent run and child runs in one tracking store."""

    def __init__(self, uri: str, spec: AblationSpec):
        self.uri = uri
        self.spec = spec
        self.client = MlflowClient(uri)
        self.experiment_id = self._ensure_experiment()
        self.parent_id = self._ensure_parent()
        # What MLflow's UI shows first: the description, and a view comparing arms.
        note = experiment_note(self.spec, self.experiment_id, self.parent_id)
        retry_locked(self.client.set_experiment_tag, self.experiment_id, NOTE, note)
        view = arms_view(spec)
        retry_locked(self.client.set_experiment_tag, self.experiment_id, ARMS_VIEW_TAG, view)
        self._label_groups()
        arms = {run.data.tags.get("arm", "") for run in self.children().values()} - {""}
        order = [*spec.arms, *sorted(arms - set(spec.arms))]
        for key, value in (
            ("arms", ",".join(order)),
            ("reference", spec.reference),
            ("tasks", ",".join(spec.tasks)),
            ("suite", spec.suite),
        ):
            retry_locked(self.client.set_tag, self.parent_id, key, value)

    def _label_groups(self) -> None:
        """Tag the parent and every child with its group in the view (``ui.group``): a
        child made before the tag existed, or under another reference arm, is relabelled."""
        retry_locked(self.client.set_tag, self.parent_id, GROUP_TAG, PARENT_GROUP)
        for run in self._all_children():
            tags = run.data.tags
            if "arm" not in tags:
                continue  # not made by this runner: no arm to group it by
            label = group_label(self.spec, tags.get("task") or tags.get("env", ""), tags["arm"])
            if tags.get(GROUP_TAG) != label:
                retry_locked(self.client.set_tag, run.info.run_id, GROUP_TAG, label)

    def _ensure_experiment(self) -> str:
        experiment_id = ensure_experiment(self.client, self.spec.name)
        for key, value in EXPERIMENT_KIND.items():
            retry_locked(self.client.set_experiment_tag, experiment_id, key, value)
        return experiment_id

    def _ensure_parent(self) -> str:
        def create() -> str:
            tags = {"ablation.role": "parent", NOTE: self.spec.description()}
            run = retry_locked(
                self.client.create_run, self.experiment_id, run_name=self.spec.name, tags=tags
            )
            return run.info.run_id

        run_id = ensure_parent(self.client, self.experiment_id, create)
        # Whoever created the parent may have died before logging these (values a rerun
        # with another preset would contradict are left as the first command logged them).
        logged = retry_locked(self.client.get_run, run_id).data.params
        wanted = {"env": self.spec.env, "preset": self.spec.preset}
        missing = {key: value for key, value in wanted.items() if key not in logged}
        if missing:
            with contextlib.suppress(MlflowException):  # another command logged them first
                retry_locked(self.client.log_batch, run_id, params=_params(missing))
        retry_locked(self.client.set_terminated, run_id, "RUNNING")
        return run_id

    def record_plan(self, runs: Sequence[RunSpec]) -> None:
        """Add ``runs`` to the parent's record of the runs planned (``planned_seeds``), before
        any of them is created, so that the report can tell a run that never appeared from
        one that was never planned. The record only grows: adaptive seeding adds each
        interim's seeds of the arms it still tests, and a rerun with fewer seeds keeps what
        an earlier command planned."""
        tags = retry_locked(self.client.get_run, self.parent_id).data.tags
        planned = parse_planned_seeds(tags.get(PLANNED_SEEDS_TAG, ""))
        for run in runs:
            planned[run.arm] = max(planned.get(run.arm, 0), run.seed + 1)
        order = [*self.spec.arms, *(arm for arm in planned if arm not in self.spec.arms)]
        value = format_planned_seeds({arm: planned[arm] for arm in order if arm in planned})
        retry_locked(self.client.set_tag, self.parent_id, PLANNED_SEEDS_TAG, value)

    def children(self) -> dict[str, Any]:
        """Existing child runs by run name: the run its claim names (see
        :mod:`ablations.integrity.creation`), else the first settled one (a child made before
        claims, or whose claim its command did not live to write)."""
        claims = retry_locked(self.client.get_run, self.parent_id).data.params
        chosen: dict[str, Any] = {}
        for run in sorted(self._all_children(), key=lambda run: run.info.run_id):
            name = run.info.run_name
            claimed = claims.get(child_claim_key(name))
            if run.info.run_id == claimed or (claimed is None and settled(run)):
                chosen.setdefault(name, run)
        return chosen

    def _all_children(self) -> list[Any]:
        return retry_locked(
            self.client.search_runs,
            [self.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{self.parent_id}'",
            max_results=10_000,
        )

    def child_for(self, run: RunSpec, device: str) -> tuple[str, str]:
        """The child run for ``run``: ``(run_id, status)``, created if it does not exist
        (once, however many commands start together: :mod:`ablations.integrity.creation`).

        Raises :class:`TrackingError` if a run of that name exists with another config: a
        rerun must train the same thing, or use a new experiment name.
        """
        runs = [child for child in self._all_children() if child.info.run_name == run.name]
        config_hash = run.config_hash()
        run_id, created = ensure_child(
            self.client, self.parent_id, run.name, runs, lambda: self._create_child(run, device)
        )
        if created:
            return run_id, "SCHEDULED"
        existing = retry_locked(self.client.get_run, run_id)
        if existing.data.tags.get("config_hash") != config_hash:
            raise TrackingError(
                f"experiment '{self.spec.name}' already has run {run.name} with a different "
                "config; pass a new EXPERIMENT name to run this one"
            )
        return run_id, existing.info.status

    def _create_child(self, run: RunSpec, device: str) -> str:
        """A new child run for ``run``, set up whole: tags, config params, then SCHEDULED."""
        import torch

        config = run.config()
        tags = {
            "mlflow.parentRunId": self.parent_id,
            "mlflow.note.content": run.description(),
            "ablation.role": "child",
            "ablation.name": run.ablation,
            "arm": run.arm,
            "arm.overrides": describe(run.arm_values)[:5000],
            "schedule": config.train.schedule,
            "starts": config.train.starts,
            "seed": str(run.seed),
            "env": run.env,
            "task": run.env,
            GROUP_TAG: group_label(self.spec, run.env, run.arm),
            **score_tags(run.env),
            "preset": run.preset,
            "git_commit": git_commit(),
            "device": device,
            "torch_version": torch.__version__,
            "hardware": hardware(),
            "config_hash": run.config_hash(),
        }
        created = retry_locked(
            self.client.create_run, self.experiment_id, run_name=run.name, tags=tags
        )
        run_id = created.info.run_id
        params = _params(flatten(config))
        for start in range(0, len(params), 100):
            retry_locked(self.client.log_batch, run_id, params=params[start : start + 100])
        retry_locked(self.client.set_terminated, run_id, "SCHEDULED")
        return run_id

    def log_parent_summary(self) -> dict[str, dict[str, float]]:
        """Per-arm means of the children's final return and speed (:meth:`arm_means`),
        logged on the parent, whose description (the table of arms) it rewrites."""
        means = self.arm_means()
        metrics = {
            f"summary/{arm}/{name}": value
            for arm, row in means.items()
            for name, value in row.items()
            if name != "runs"
        }
        if metrics:
            log_metrics_batched(self.client, self.parent_id, metrics, step=0)
        self._write_parent_note(means)
        return means

    def arm_means(self) -> dict[str, dict[str, float]]:
        """Per arm (``<task>/<arm>`` over several tasks), the finished children's count and
        mean final return and updates/s, as :meth:`log_parent_summary` logs them."""
        summary: dict[str, dict[str, list[float]]] = {}
        for run in self.children().values():
            if run.info.status != "FINISHED":
                continue
            key = summary_key(run.data.tags, self.spec.multi_task)
            arm = summary.setdefault(key, {"final": [], "ups": []})
            if "final/eval_return" in run.data.metrics:
                arm["final"].append(run.data.metrics["final/eval_return"])
            if "final/updates_per_s" in run.data.metrics:
                arm["ups"].append(run.data.metrics["final/updates_per_s"])
        means: dict[str, dict[str, float]] = {}
        for arm, values in summary.items():
            means[arm] = {"runs": float(len(values["final"]) or len(values["ups"]))}
            for key, name in (("final", "final_return"), ("ups", "updates_per_s")):
                if values[key]:
                    means[arm][name] = sum(values[key]) / len(values[key])
        return means

    def refresh_parent_note(self) -> None:
        """Rewrite the parent's description as things stand now: after the report is built
        (or not), it says where the report is."""
        self._write_parent_note(self.arm_means())

    def _write_parent_note(self, means: dict[str, dict[str, float]]) -> None:
        parent = retry_locked(self.client.get_run, self.parent_id)
        report = bool(retry_locked(report_files, self.uri, self.parent_id))
        note = parent_note(
            self.spec, self.experiment_id, parent, self.children(), means, report=report
        )
        retry_locked(self.client.set_tag, self.parent_id, NOTE, note)

    def held_elsewhere(self, run_id: str, run_name: str) -> LeaseState | None:
        """The lease on a child held by another live command, if any."""
        lease = read_lease(self.client, self.parent_id, run_id, run_name)
        if lease is not None and lease.alive() and lease.command != COMMAND_ID:
            return lease
        return None

    def settle_parent(self) -> str:
        """Set the parent's status from its children's and return it: RUNNING while another
        command trains some, else FAILED if any failed, FINISHED if all finished, else
        KILLED (some were stopped)."""
        status = self._parent_status()
        retry_locked(self.client.set_terminated, self.parent_id, status)
        return status

    def _parent_status(self) -> str:
        children = self.children()
        statuses = {run.info.status for run in children.values()}
        if any(
            self.held_elsewhere(run.info.run_id, name)
            for name, run in children.items()
            if run.info.status not in ("FINISHED", "FAILED")
        ):
            status = "RUNNING"
        elif "FAILED" in statuses:
            status = "FAILED"
        elif statuses <= {"FINISHED"}:
            status = "FINISHED"
        else:
            status = "KILLED"
        return status

    def mark_killed(self) -> None:
        """After an interruption: children left SCHEDULED or RUNNING (by this command, or by
        one that is gone) become KILLED, as does the parent unless another command still
        trains some of its runs. A rerun resumes them."""
        for name, run in self.children().items():
            if run.info.status not in ("SCHEDULED", "RUNNING"):
                continue
            lease = read_lease(self.client, self.parent_id, run.info.run_id, name)
            if lease is not None and lease.alive() and lease.command != COMMAND_ID:
                continue  # another command's run
            retry_locked(self.client.set_terminated, run.info.run_id, "KILLED")
            if lease is not None and lease.command == COMMAND_ID:
                # Its worker is stopped: a rerun need not wait for the lease to go stale
                # (a worker on another machine leaves no process here to look for).
                release = str(lease.generation)
                retry_locked(self.client.set_tag, run.info.run_id, "lease.released", release)
        status = self._parent_status()
        retry_locked(
            self.client.set_terminated,
            self.parent_id,
            status if status in ("RUNNING", "FINISHED") else "KILLED",
        )


def score_tags(task: str) -> dict[str, str]:
    """The task's score references as child tags (none for a task without references)."""
    reference = SCORE_REFERENCES.get(task)
    if reference is None:
        return {}
    return {
        "score.random": repr(reference.random),
        "score.best": repr(reference.best),
        "score.kind": reference.kind,
        "score.source": reference.source[:5000],
    }


def _params(values: Mapping[str, Any]) -> list[Param]:
    return [Param(key, str(value)[:6000]) for key, value in values.items()]
