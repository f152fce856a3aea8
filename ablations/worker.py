"""One (arm, seed) run in its own process: train, checkpoint, log to its MLflow child run.

A run resumes from its checkpoint (a :class:`~ablations.checkpoints.CheckpointStore`) when
one exists, records which process trains it (tags ``worker_pid``, ``worker_host``), and ends
FINISHED (with the final models and config as artifacts) or FAILED (with the error as a tag
and the traceback as an artifact).
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from mlflow.entities import RunTag
from mlflow.tracking import MlflowClient

from ablations.checkpoints import CheckpointStore
from ablations.spec import RunSpec
from ablations.tracking import MlflowLogger, hardware, log_metrics_batched, retry_locked
from agent.config import to_dict
from agent.envs import quiet_ale_banner
from agent.trainer import Trainer


@dataclass(frozen=True)
class WorkerJob:
    """Everything a worker process needs (picklable: it crosses a spawn or Ray boundary)."""

    run: RunSpec
    run_id: str
    tracking_uri: str
    checkpoints: CheckpointStore
    checkpoint_every: int
    device: str
    threads: int


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
    wm_updates))`` every second."""
    torch.set_num_threads(job.threads)
    quiet_ale_banner()  # the driver printed it once; not once more per run
    client = MlflowClient(job.tracking_uri)
    logger = MlflowLogger(client, job.run_id)
    reporter = ProgressReporter(progress, job.run.name)
    try:
        config = job.run.config()
        config.train.device = job.device
        trainer = Trainer(config, logger)
        resumed_from = trainer.env_steps if job.checkpoints.load(trainer) else 0
        retry_locked(client.set_terminated, job.run_id, "RUNNING")
        # Where this attempt runs: on a cluster it is not the driver's machine, and a retried
        # attempt may land elsewhere.
        where = {
            "worker_pid": str(os.getpid()),
            "worker_host": socket.gethostname(),
            "hardware": hardware(),
        }
        tags = [RunTag(key, value) for key, value in where.items()]
        retry_locked(client.log_batch, job.run_id, tags=tags)
        if resumed_from:
            retry_locked(client.set_tag, job.run_id, "resumed_from_step", str(resumed_from))

        next_checkpoint = trainer.env_steps + job.checkpoint_every
        reporter.start(trainer)
        start = time.perf_counter()
        while not trainer.done:
            trainer.train_iteration()
            if trainer.env_steps >= next_checkpoint and not trainer.done:
                # Metrics first, then the checkpoint: a crash in between re-logs at most
                # this interval's points; the reverse order could lose them.
                logger.flush()
                job.checkpoints.save(trainer)
                next_checkpoint = trainer.env_steps + job.checkpoint_every
        reporter.stop()
        logger.flush()
        elapsed = time.perf_counter() - start
        summary = trainer.summary()
        log_metrics_batched(
            client,
            job.run_id,
            {
                "final/eval_return": final_return(client, job.run_id, config.train.steps),
                "final/updates_per_s": summary["wm_updates"] / max(summary["wall_seconds"], 1e-9),
                "final/wall_seconds": summary["wall_seconds"],
                "final/env_steps": summary["env_steps"],
                # Share of this session's time spent in MLflow calls.
                "tracking/overhead_fraction": logger.seconds / max(elapsed, 1e-9),
            },
            step=trainer.env_steps,
        )
        _log_final_artifacts(client, job.run_id, trainer)
        retry_locked(client.set_terminated, job.run_id, "FINISHED")
        job.checkpoints.clear()
    except Exception as error:
        reporter.stop()
        _mark_failed(client, job.run_id, error)
        raise


class ProgressReporter:
    """Puts ``(name, (env_steps, wm_updates))`` on ``progress`` every second from a thread,
    so that the driver's bar moves during the prefill and the first updates as well, which
    on a CPU can take minutes before the first iteration ends."""

    def __init__(self, progress: Any, name: str, every: float = 1.0):
        self.progress, self.name, self.every = progress, name, every
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, trainer: Trainer) -> None:
        if self.progress is not None:
            self._thread = threading.Thread(target=self._report, args=(trainer,), daemon=True)
            self._thread.start()

    def _report(self, trainer: Trainer) -> None:
        self._put(trainer)
        while not self._stopped.wait(self.every):
            self._put(trainer)
        self._put(trainer)  # the final count

    def _put(self, trainer: Trainer) -> None:
        self.progress.put((self.name, (trainer.env_steps, trainer.wm_updates)))

    def stop(self) -> None:
        """Report once more (the final count) and stop."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()


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


def _mark_failed(client: MlflowClient, run_id: str, error: BaseException) -> None:
    """Record the error on the run; never raise from here (the original error matters)."""
    try:
        message = f"{type(error).__name__}: {error}".splitlines()[0][:500]
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
    """Process entry point: exit code 0 on success, 1 on a training error."""
    import sys

    try:
        run_worker(job, progress)
    except Exception as error:  # noqa: BLE001 - already recorded on the run
        print(f"{job.run.name} failed: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
