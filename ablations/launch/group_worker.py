"""Several seeds of one arm and task in one process, trained as a seed batch
(:class:`agent.seed_batch.SeedBatch`), each still its own MLflow child run.

Per run, everything :mod:`ablations.launch.worker` does for one: its lease and heartbeat, its
checkpoints (a member's checkpoint is its single run's, see :mod:`agent.seed_batch`), its
logger, its tags (with ``seed_batch=<K>``), FINISHED with its final metrics and artifacts,
or FAILED with its own error. What the group adds:

- a run whose lease another process holds is left to it (outcome ``taken``); the others
  train as a smaller batch, or alone when one is left;
- the members resume together when their checkpoints are at one point of training; when
  they are not (a damaged checkpoint, runs trained apart before), the batch starts over
  and each run logs only the steps the store lacks, so that resume stays exact;
- a member whose losses become non-finite fails alone, and the others go on;
- a lost lease or an error of the batch itself stops every run still training, each marked
  as the single worker marks it.

The process tells the launcher how each run ended on the progress queue, as
``(run name, outcome)``.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import torch
from mlflow.tracking import MlflowClient

from ablations.integrity.leases import Lease, LeaseHeldError, LeaseLostError
from ablations.launch.jobs import FAILED, FINISHED, TAKEN, WorkerJob
from ablations.launch.progress import ProgressReporter
from ablations.launch.worker import (
    Heartbeat,
    die_with_parent,
    finish_run,
    job_config,
    load_checkpoint,
    mark_failed,
    release_quietly,
    run_worker,
    save_checkpoint,
    start_run,
)
from ablations.tracking.logger import MlflowLogger
from agent.config import ConfigError
from agent.envs import quiet_ale_banner
from agent.seed_batch import SeedBatch
from agent.trainer import NonFiniteLossError


class _Member:
    """One run of the group: its job, lease, heartbeat, logger and progress reporter."""

    def __init__(self, job: WorkerJob, client: MlflowClient, lease: Lease, progress: Any):
        self.job, self.lease = job, lease
        self.beat = Heartbeat(lease)
        self.logger = MlflowLogger(client, job.run_id)
        self.reporter = ProgressReporter(progress, job.run.name)

    def stop(self, release: bool = True) -> None:
        self.reporter.stop()
        self.beat.stop()
        if release:
            release_quietly(self.lease)


def run_group(jobs: list[WorkerJob], progress: Any, outcomes: dict[str, str]) -> None:
    """Train ``jobs`` (seeds of one arm and task) as one seed batch; ``outcomes`` receives
    each run's outcome as it is known (see the module docstring)."""
    torch.set_num_threads(jobs[0].threads)
    quiet_ale_banner()
    client = MlflowClient(jobs[0].tracking_uri)
    claimed: list[tuple[WorkerJob, Lease]] = []
    for job in jobs:
        try:
            lease = Lease.claim(client, job.parent_id, job.run_id, job.run.name, job.command)
        except LeaseHeldError as error:
            print(f"{job.run.name} skipped: {error}", file=sys.stderr)
            outcomes[job.run.name] = TAKEN
            continue
        claimed.append((job, lease))
    if len(claimed) < 2:
        for job, lease in claimed:
            release_quietly(lease)
            _run_apart(job, progress, outcomes)
        return
    members = [_Member(job, client, lease, progress) for job, lease in claimed]
    try:
        batch = _resume(members, client)
    except BaseException:
        for member in members:
            member.stop()
        raise
    _train(batch, members, client, outcomes)


def _run_apart(job: WorkerJob, progress: Any, outcomes: dict[str, str]) -> None:
    try:
        run_worker(job, progress)
        outcomes[job.run.name] = FINISHED
    except (LeaseHeldError, LeaseLostError) as error:
        print(f"{job.run.name} skipped: {error}", file=sys.stderr)
        outcomes[job.run.name] = TAKEN
    except Exception as error:  # noqa: BLE001 - already recorded on the run
        print(f"{job.run.name} failed: {type(error).__name__}: {error}", file=sys.stderr)
        outcomes[job.run.name] = FAILED


def _resume(members: list[_Member], client: MlflowClient) -> SeedBatch:
    """The seed batch with every member resumed from its checkpoint, and each run marked
    RUNNING. When the members cannot resume together (a damaged checkpoint, or checkpoints
    at different points of training), the batch starts over: every member's checkpoints are
    deleted and each run logs nothing until it passes the steps the store holds, as a single
    run without a checkpoint does; its recomputed points are the ones it logged, bitwise."""
    configs = [job_config(m.job) for m in members]
    batch = SeedBatch(configs, [m.logger for m in members])
    pairs = zip(members, batch.members, strict=True)
    steps = [load_checkpoint(m.job, trainer) for m, trainer in pairs]
    together = all(step is not None for step in steps)
    if together:
        try:
            batch.resync()
        except ConfigError:
            together = False
    if not together:
        print(
            f"{', '.join(m.job.run.name for m in members)}: checkpoints at different points "
            f"of training ({steps}); the seed batch starts over",
            file=sys.stderr,
        )
        for member in members:
            member.job.checkpoints.clear()
        batch = SeedBatch(configs, [m.logger for m in members])
        steps = [0] * len(members)
    for member, step in zip(members, steps, strict=True):
        start_run(member.job, client, member.logger, step or 0, seed_batch=str(len(members)))
    return batch


def _train(
    batch: SeedBatch, members: list[_Member], client: MlflowClient, outcomes: dict[str, str]
) -> None:
    job = members[0].job
    next_checkpoint = batch.env_steps + job.checkpoint_every
    for member, trainer in zip(members, batch.members, strict=True):
        member.reporter.start(trainer)
    start = time.perf_counter()
    loads: list[float] = []
    failed: set[int] = set()
    try:
        while not batch.done:
            for member in members:
                member.beat.raise_if_lost()
            batch.train_iteration()
            loads.append(os.getloadavg()[0])
            for k in sorted(set(batch.failures) - failed):  # non-finite: this run alone
                failed.add(k)
                members[k].stop()
                mark_failed(client, members[k].job.run_id, NonFiniteLossError(batch.failures[k]))
                outcomes[members[k].job.run.name] = FAILED
            if batch.env_steps >= next_checkpoint and not batch.done:
                batch.metrics.settle()  # the members' means go into their checkpoints
                for k, (member, trainer) in enumerate(zip(members, batch.members, strict=True)):
                    if k not in failed:
                        save_checkpoint(member.job, member.lease, member.logger, trainer)
                next_checkpoint = batch.env_steps + job.checkpoint_every
        elapsed = time.perf_counter() - start
        for k, (member, trainer) in enumerate(zip(members, batch.members, strict=True)):
            if k in failed:
                continue
            member.reporter.stop()
            finish_run(member.job, client, member.lease, member.logger, trainer, loads, elapsed)
            outcomes[member.job.run.name] = FINISHED
    except LeaseLostError as error:
        # Another process took one run over: every run still here stops, leaving its
        # checkpoints to whichever command trains it next.
        print(f"seed batch stopped: {error}", file=sys.stderr)
        for member in members:
            outcomes.setdefault(member.job.run.name, TAKEN)
    except Exception as error:
        for member in members:
            if member.job.run.name not in outcomes:
                mark_failed(client, member.job.run_id, error)
                outcomes[member.job.run.name] = FAILED
        raise
    finally:
        for k, member in enumerate(members):
            if k not in failed:
                member.stop()


def group_main(jobs: list[WorkerJob], progress: Any) -> None:
    """Process entry point of a seed batch: each run's outcome on ``progress`` as ``(name,
    outcome)``, a run without one counted failed by the launcher; exit code 0 unless the
    batch itself failed."""
    die_with_parent()
    outcomes: dict[str, str] = {}
    code = 0
    try:
        run_group(jobs, progress, outcomes)
    except Exception as error:  # noqa: BLE001 - already recorded on its runs
        print(f"seed batch failed: {type(error).__name__}: {error}", file=sys.stderr)
        code = 1
    for name, outcome in outcomes.items():
        progress.put((name, outcome))
    sys.exit(code)
