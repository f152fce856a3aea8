"""One (arm, seed) run in its own process: train, checkpoint, log to its MLflow child run.

A run first takes its lease (:class:`~ablations.integrity.leases.Lease`: one trainer per
run, even with two commands on one experiment) and keeps it alive from a thread; it resumes
from its checkpoint (a :class:`~ablations.integrity.checkpoints.CheckpointStore`) when one
exists, records which process trains it (tags ``worker_pid``, ``worker_host``), and ends
FINISHED (with the final models and config as artifacts) or FAILED (with the error as a tag
and the traceback as an artifact). A local worker dies with the command that started it.

What is logged and what is checkpointed agree: metrics are flushed right before each
checkpoint, and a resumed run drops every point at or below the last step the store holds
for that metric. A crash between a flush and its checkpoint therefore never puts a step in
the store twice; the points kept are the first attempt's, which a resume recomputes
identically anyway (the checkpoint holds the env's open episode, see
:mod:`agent.checkpoint`), so no point is lost either.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from typing import Any

import numpy as np
import torch
from mlflow.entities import RunTag
from mlflow.tracking import MlflowClient

from ablations.integrity.checkpoints import CheckpointError
from ablations.integrity.leases import Lease, LeaseHeldError, LeaseLostError, lease_stale_seconds
from ablations.integrity.retries import retry_locked
from ablations.launch.jobs import WorkerJob
from ablations.launch.progress import ProgressReporter
from ablations.tracking.logger import MlflowLogger
from ablations.tracking.provenance import hardware, machine_conditions
from agent.cli import describe
from agent.config import Config, to_dict
from agent.envs import quiet_ale_banner
from agent.trainer import Trainer

EXIT_TAKEN = 4
"""A worker process's exit code when another process holds its run's lease, so it trained
nothing (the launcher counts the run as taken; distinct from the command's EXIT_HELD)."""


def final_return(client: MlflowClient, run_id: str, total_steps: int) -> float:
    """Mean ``eval/return`` over the last 10% of training (DESIGN section 5); NaN if none."""
    history = retry_locked(client.get_metric_history, run_id, "eval/return")
    points = [(m.step, m.value) for m in history]
    if not points:
        return float("nan")
    late = [value for step, value in points if step >= 0.9 * total_steps]
    return float(np.mean(late if late else [max(points)[1]]))


def run_worker(job: WorkerJob, progress: Any = None) -> None:
    """Train ``job.run`` to its budget; ``progress`` (a queue) receives ``(name, (env_steps,
    wm_updates))`` every second.

    Raises :class:`~ablations.integrity.leases.LeaseHeldError` (nothing written) when another
    process trains the run, :class:`~ablations.integrity.leases.LeaseLostError` when it was taken
    over meanwhile (nothing more written), and the training error otherwise (the run is then
    marked FAILED).
    """
    torch.set_num_threads(job.threads)
    quiet_ale_banner()  # the driver printed it once; not once more per run
    client = MlflowClient(job.tracking_uri)
    lease = Lease.claim(client, job.parent_id, job.run_id, job.run.name, job.command)
    beat = Heartbeat(lease)
    reporter = ProgressReporter(progress, job.run.name)
    lost = False
    try:
        _train(job, client, lease, beat, reporter)
    except LeaseLostError:
        lost = True
        raise
    except Exception as error:
        mark_failed(client, job.run_id, error)
        raise
    finally:
        reporter.stop()
        beat.stop()
        if not lost:
            release_quietly(lease)


def _train(
    job: WorkerJob,
    client: MlflowClient,
    lease: Lease,
    beat: Heartbeat,
    reporter: ProgressReporter,
) -> None:
    config = job_config(job)
    logger = MlflowLogger(client, job.run_id)
    trainer = Trainer(config, logger)
    resumed_from = load_checkpoint(job, trainer)
    if resumed_from is None:
        trainer = Trainer(config, logger)  # a load that failed half-way may have changed it
    start_run(job, client, logger, resumed_from or 0)

    next_checkpoint = trainer.env_steps + job.checkpoint_every
    reporter.start(trainer)
    start = time.perf_counter()
    loads: list[float] = []  # the 1-minute load average, once per iteration
    while not trainer.done:
        beat.raise_if_lost()
        trainer.train_iteration()
        loads.append(os.getloadavg()[0])
        if trainer.env_steps >= next_checkpoint and not trainer.done:
            save_checkpoint(job, lease, logger, trainer)
            next_checkpoint = trainer.env_steps + job.checkpoint_every
    reporter.stop()
    finish_run(job, client, lease, logger, trainer, loads, time.perf_counter() - start)


def job_config(job: WorkerJob) -> Config:
    """The run's config, on the device the launcher gave the job."""
    config = job.run.config()
    config.train.device = job.device
    return config


def load_checkpoint(job: WorkerJob, trainer: Trainer) -> int | None:
    """Resume ``trainer`` from the run's newest good checkpoint: the agent step it resumed
    from (0 when there is none), or ``None`` when every checkpoint was damaged (truncated,
    overwritten): they are deleted and the run starts over, as when they are gone, rather
    than failing at every rerun until someone deletes them; ``trainer`` may then be half
    loaded, to be built afresh."""
    try:
        return trainer.env_steps if job.checkpoints.load(trainer) else 0
    except CheckpointError as error:
        print(f"{job.run.name}: {error}; deleting them", file=sys.stderr)
        job.checkpoints.clear()
        return None


def start_run(
    job: WorkerJob, client: MlflowClient, logger: MlflowLogger, resumed_from: int, **tags: str
) -> None:
    """Mark the run RUNNING with where this attempt trains (and ``tags``), after the logger
    learnt which steps the store already holds."""
    logger.skip_logged_steps()  # the store's points stand; see the module docstring
    if logger.logged_up_to and not resumed_from:
        # Its checkpoint is gone (deleted, or kept where this command does not look): the
        # run starts over, and logs nothing until it passes the steps already stored.
        last = max(logger.logged_up_to.values())
        print(f"{job.run.name}: no checkpoint found for its {last} logged steps; it starts over")
        retry_locked(client.set_tag, job.run_id, "restarted_without_checkpoint", str(last))
    retry_locked(client.set_terminated, job.run_id, "RUNNING")
    # Where this attempt runs: on a cluster it is not the driver's machine, and a retried
    # attempt may land elsewhere.
    where = {
        "worker_pid": str(os.getpid()),
        "worker_host": socket.gethostname(),
        "device": job.device,  # the launcher's free slot, maybe not the one at creation
        "hardware": hardware(),
        **machine_conditions(),
        **tags,
    }
    run_tags = [RunTag(key, value) for key, value in where.items()]
    retry_locked(client.log_batch, job.run_id, tags=run_tags)
    if resumed_from:
        retry_locked(client.set_tag, job.run_id, "resumed_from_step", str(resumed_from))


def save_checkpoint(job: WorkerJob, lease: Lease, logger: MlflowLogger, trainer: Trainer) -> None:
    """Metrics first, then the checkpoint: a crash in between leaves points the resumed run
    will not log again (see the module docstring)."""
    lease.check()  # a process presumed dead must not write over its successor
    logger.flush()
    job.checkpoints.save(trainer)


def finish_run(
    job: WorkerJob,
    client: MlflowClient,
    lease: Lease,
    logger: MlflowLogger,
    trainer: Trainer,
    loads: list[float],
    elapsed: float,
) -> None:
    """A run trained to its budget: final metrics and artifacts, FINISHED, checkpoints gone.
    ``loads`` are the load averages seen while it trained, ``elapsed`` this attempt's time."""
    config = trainer.config
    lease.check()
    logger.flush()
    summary = trainer.summary()
    # Through the logger: a rerun after a crash right here does not log them twice.
    logger.log_metrics(
        {
            "final/eval_return": final_return(client, job.run_id, config.train.steps),
            "final/updates_per_s": summary["wm_updates"] / max(summary["wall_seconds"], 1e-9),
            "final/wall_seconds": summary["wall_seconds"],
            "final/env_steps": summary["env_steps"],
            # The machine's load while this run trained: runs are comparable in speed
            # only under similar load (the report flags runs that differ).
            "system/load_avg_mean": float(np.mean(loads)) if loads else float("nan"),
            "system/load_avg_max": max(loads, default=float("nan")),
            # Share of this session's time spent in MLflow calls.
            "tracking/overhead_fraction": logger.seconds / max(elapsed, 1e-9),
        },
        trainer.env_steps,
    )
    logger.flush()
    _log_final_artifacts(client, job.run_id, trainer)
    if "error" in retry_locked(client.get_run, job.run_id).data.tags:
        retry_locked(client.delete_tag, job.run_id, "error")  # an earlier attempt's
    retry_locked(client.set_terminated, job.run_id, "FINISHED")
    job.checkpoints.clear()


class Heartbeat:
    """Renews a lease from a daemon thread, so that a long update does not let it go stale;
    :attr:`lost` is set once another process has taken the run over."""

    def __init__(self, lease: Lease):
        self.lease = lease
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(lease_stale_seconds() / 4):
            try:
                self.lease.heartbeat()
            except LeaseLostError:
                self.lost.set()
                return
            except Exception:  # noqa: BLE001 - a tracking hiccup: try again next beat
                continue

    def raise_if_lost(self) -> None:
        if self.lost.is_set():
            raise LeaseLostError(f"{self.lease.run_name} was taken over by another process")

    def stop(self) -> None:
        self._stop.set()


def release_quietly(lease: Lease) -> None:
    try:
        lease.release()
    except Exception:  # noqa: BLE001 - an unreleased lease goes stale by itself
        traceback.print_exc()


def _log_final_artifacts(client: MlflowClient, run_id: str, trainer: Trainer) -> None:
    with tempfile.TemporaryDirectory() as folder:
        config_path = os.path.join(folder, "config.json")
        with open(config_path, "w") as f:
            json.dump(to_dict(trainer.config), f, indent=2)
        model_path = os.path.join(folder, "final.pt")
        torch.save(
            {
                "world_model": trainer.world_model.state_dict(),
                "actor_critic": trainer.actor_critic.state_dict(),
                "config": to_dict(trainer.config),
                "env_steps": trainer.env_steps,
            },
            model_path,
        )
        retry_locked(client.log_artifact, run_id, config_path)
        retry_locked(client.log_artifact, run_id, model_path, "checkpoint")


def mark_failed(client: MlflowClient, run_id: str, error: BaseException) -> None:
    """Record the error on the run; never raise from here (the original error matters)."""
    try:
        message = describe(error, 500)
        retry_locked(client.set_tag, run_id, "error", message)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "error.txt")
            with open(path, "w") as f:
                f.write("".join(traceback.format_exception(error)))
            retry_locked(client.log_artifact, run_id, path)
        retry_locked(client.set_terminated, run_id, "FAILED")
    except Exception:  # noqa: BLE001
        traceback.print_exc()


def worker_main(job: WorkerJob, progress: Any) -> None:
    """Process entry point of a local worker: exit code 0 on success, 1 on a training
    error, :data:`EXIT_TAKEN` when another process trains the run."""
    die_with_parent()
    try:
        run_worker(job, progress)
    except (LeaseHeldError, LeaseLostError) as error:
        print(f"{job.run.name} skipped: {error}", file=sys.stderr)
        sys.exit(EXIT_TAKEN)
    except Exception as error:  # noqa: BLE001 - already recorded on the run
        print(f"{job.run.name} failed: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)


def die_with_parent() -> None:
    """End this process when the command that started it ends, however it ends.

    Ctrl-C reaches the whole process group; the command stops its workers itself and marks
    their runs, so SIGINT is ignored here. ``kill -9`` of the command cannot be handled by
    it: Linux's parent-death signal ends the worker at once, and a thread watching the
    parent's pid covers other systems (the lease covers whatever still slips through).
    """
    import multiprocessing

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None:
        return
    parent_pid = parent.pid
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
