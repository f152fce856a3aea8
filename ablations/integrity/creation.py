"""Exactly-once creation of an ablation's experiment, parent run and child runs, on any store.

Two commands starting together on one store would each find no parent run and create one
(and each child twice). SQLite stores are also serialised by a file lock
(:func:`~ablations.tracking.connection.store_creation_lock`), but a tracking server has no such
lock, and a server can commit a run whose reply was lost, so that a retried call creates a
second one. What every store does offer is a param MLflow refuses to overwrite with another
value: the first writer of a key wins, and a writer of the same value succeeds again.

- **Experiment**: its name is unique in the store; a command that loses the race to create
  it reads the winner's.
- **Parent**: each parent candidate (a run tagged ``ablation.role=parent``) carries the param
  ``ablation.parent_claim``, ``won`` or ``lost``. A command lists the candidates, marks every
  one but the smallest run id ``lost``, then that one ``won``; a candidate found ``won``
  is adopted instead (and every other marked ``lost``). Two candidates can never both be
  ``won``: each winner's command saw its candidate and marked every other it saw ``lost``
  first, so neither can have seen the other's candidate, yet each candidate existed before
  its own command listed them, an impossible order. A command creates a candidate only when
  it sees none open, so nothing depends on any command staying alive. ``lost`` candidates
  are deleted (tagged ``ablation.role=duplicate`` first): the analysis sees one parent.
- **Children**: the parent is then one known run, so each child name has one register:
  the parent's param ``child.<run name>`` = the child's run id. A command claims there a
  run it made whole (tags, config params, then SCHEDULED), or one no claim names that was
  made whole before (before claims existed, or by a command that died before claiming it),
  and adopts the claimed one when another command was first; runs of that name other than
  the claimed one (a half-made one left RUNNING by a dead command included) are deleted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ablations.integrity.retries import retry_locked

ROLE = "ablation.role"
PARENT_CLAIM = "ablation.parent_claim"
WON, LOST = "won", "lost"
DUPLICATE = "duplicate"
"""The role a losing candidate is tagged with before it is deleted."""
CHILD_CLAIM_PREFIX = "child."


def child_claim_key(run_name: str) -> str:
    """The parent's param naming the run id of child ``run_name``."""
    return f"{CHILD_CLAIM_PREFIX}{run_name}"


def ensure_experiment(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created if it does not exist (once, whoever races)."""
    experiment = retry_locked(client.get_experiment_by_name, name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return retry_locked(client.create_experiment, name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    # Another command created it between our look and our create (or our create's reply
    # was lost and its retry found the name taken).
    return retry_locked(client.get_experiment_by_name, name).experiment_id


def ensure_parent(client: MlflowClient, experiment_id: str, create: Callable[[], str]) -> str:
    """The run id of the experiment's one parent run; ``create()`` makes a candidate (a run
    tagged ``ablation.role=parent``) when none is open."""
    while True:
        found = retry_locked(
            client.search_runs,
            [experiment_id],
            filter_string=f"tags.`{ROLE}` = 'parent'",
            max_results=1000,
        )
        claims = {run.info.run_id: run.data.params.get(PARENT_CLAIM) for run in found}
        candidates = sorted(claims)
        won = [run_id for run_id in candidates if claims[run_id] == WON]
        if won:
            for run_id in candidates:
                if run_id != won[0]:
                    _close(client, run_id)
            return won[0]
        open_ = [run_id for run_id in candidates if claims[run_id] != LOST]
        if not open_:
            for run_id in candidates:  # lost ones whose command died before deleting them
                _delete_duplicate(client, run_id)
            create()
            continue
        # Every other candidate seen is marked lost before the first is marked won (see the
        # module docstring); one found won already stops this round, and is adopted next.
        first = open_[0]
        others = [run_id for run_id in candidates if run_id != first]
        if all(_close(client, run_id) for run_id in others) and _claim(
            client, first, PARENT_CLAIM, WON
        ):
            return first


def _claim(client: MlflowClient, run_id: str, key: str, value: str) -> bool:
    """Write param ``key`` = ``value`` on ``run_id``; ``False`` if it holds another value
    already, or the run was deleted (MLflow answers both with INVALID_PARAMETER_VALUE)."""
    try:
        retry_locked(client.log_param, run_id, key, value)
        return True
    except MlflowException as error:
        if error.error_code != "INVALID_PARAMETER_VALUE":
            raise
        return False


def _close(client: MlflowClient, run_id: str) -> bool:
    """Mark parent candidate ``run_id`` lost and delete it; ``False`` if it had won."""
    if not _claim(client, run_id, PARENT_CLAIM, LOST):
        run = retry_locked(client.get_run, run_id)
        if run.data.params.get(PARENT_CLAIM) == WON and run.info.lifecycle_stage == "active":
            return False
    _delete_duplicate(client, run_id)
    return True


def _delete_duplicate(client: MlflowClient, run_id: str) -> None:
    """Tag a run that lost its claim a duplicate, and delete it (the analysis lists active
    runs only); one deleted already is left as it is."""
    with contextlib.suppress(MlflowException):
        retry_locked(client.set_tag, run_id, ROLE, DUPLICATE)
        retry_locked(client.set_terminated, run_id, "KILLED")
        retry_locked(client.delete_run, run_id)


def settled(run: Any) -> bool:
    """Whether a child run's creator finished setting it up (params logged, then SCHEDULED)
    or a worker took it: MLflow creates runs RUNNING, and a command that died while
    setting one up leaves it RUNNING without a lease."""
    return run.info.status != "RUNNING" or "lease.generation" in run.data.tags


def ensure_child(
    client: MlflowClient,
    parent_id: str,
    run_name: str,
    existing: list[Any],
    create: Callable[[], str],
) -> tuple[str, bool]:
    """The run id of child ``run_name``, and whether this call created it.

    ``existing`` are the parent's active child runs of that name; ``create()`` makes one,
    fully set up, and returns its id. The claim (the parent's param ``child.<run name>``)
    goes to the first settled run of ``existing`` that no claim names yet (a child made
    before claims existed, or by a command that died before claiming it), else to a new
    run; when another command claimed first, its run is adopted. Runs of that name other
    than the claimed one are then deleted.
    """
    key = child_claim_key(run_name)
    created = None
    while True:
        claimed = retry_locked(client.get_run, parent_id).data.params.get(key)
        if claimed is None:
            ready = sorted(run.info.run_id for run in existing if settled(run))
            candidate = created or (ready[0] if ready else None) or create()
            if candidate not in ready:
                created = candidate
            if not _claim(client, parent_id, key, candidate):
                continue  # another command claimed first: adopt its run
            claimed = candidate
        strays = {run.info.run_id for run in existing} | {created}
        for run_id in strays - {None, claimed}:
            _delete_duplicate(client, run_id)
        return claimed, claimed == created
