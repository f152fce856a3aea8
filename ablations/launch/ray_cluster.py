"""The ``ray`` launcher: each (arm, seed) run is a Ray task on a cluster.

Imported only when ``--launcher ray`` is chosen, so the local launcher needs no Ray. Same
contract (:mod:`ablations.launch.jobs`) as :func:`ablations.launch.local.run_local`: same
``on_done`` calls, same progress bar, same result. A task whose worker process or node
dies is retried by Ray (``max_retries``); the retried worker resumes from the run's
checkpoint, so give workers that share no disk with each other the ``mlflow`` checkpoint
store (the default with a tracking server). A training error is not retried: the run is
marked FAILED, as locally.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any

import ray
from ray.exceptions import RayError, RayTaskError

from ablations.integrity.leases import LeaseHeldError, LeaseLostError
from ablations.launch.jobs import (
    FAILED,
    FINISHED,
    TAKEN,
    LauncherError,
    LaunchPlan,
    OnDone,
    Resources,
    WorkerJob,
)
from ablations.launch.progress import Progress, RunsBar
from ablations.launch.worker import run_worker
from agent.cli import describe

MAX_RETRIES = 3
"""Times a run is restarted after its worker dies (the process, or the node under it)."""
CONNECT_TIMEOUT_S = 5.0


def plan(resources: Resources) -> LaunchPlan:
    """Connect to ``$RAY_ADDRESS`` (or start Ray here) and size the runs to the cluster.

    Raises :class:`LauncherError` when the cluster cannot be reached or can never fit one
    run; the TCP probe first keeps an unreachable address to seconds, not Ray's minutes.
    """
    if resources.seed_batch not in (None, 1, "auto"):
        raise LauncherError("SEED_BATCH is for local processes; a Ray task trains one run")
    address = os.environ.get("RAY_ADDRESS", "").strip()
    if address:
        _probe(address)
    try:
        if address:
            # An adaptive ablation plans each interim again in the same process.
            ray.init(address=address, logging_level=logging.WARNING, ignore_reinit_error=True)
        else:
            # "local" starts a fresh instance even when another one runs on this machine.
            ray.init(
                address="local",
                num_cpus=os.cpu_count() or 1,
                include_dashboard=False,
                logging_level=logging.WARNING,
                ignore_reinit_error=True,
            )
    except Exception as error:  # noqa: BLE001 - any failure here means "cannot use Ray"
        where = address or "this machine"
        hint = ""
        if address and "RAY_AUTH_MODE" not in os.environ:
            hint = " (a cluster with token authentication needs RAY_AUTH_MODE=token here too)"
        raise LauncherError(f"cannot start Ray at {where}: {describe(error)}{hint}") from None
    cluster = ray.cluster_resources()
    cpus = resources.cpus_per_run or 1
    gpus = resources.gpus_per_run
    if gpus is None:
        gpus = 1 if cluster.get("GPU", 0) > 0 else 0
    if cpus > cluster.get("CPU", 0) or gpus > cluster.get("GPU", 0):
        raise LauncherError(
            f"a run asks for {cpus} CPU(s) and {gpus} GPU(s) but the Ray cluster has "
            f"{cluster.get('CPU', 0):g} CPU(s) and {cluster.get('GPU', 0):g} GPU(s)"
        )
    launch = functools.partial(run_ray, cpus_per_run=cpus, gpus_per_run=gpus)
    where = (
        f"Ray at {address or 'this machine'} ({cluster.get('CPU', 0):g} CPUs, "
        f"{cluster.get('GPU', 0):g} GPUs), {cpus} CPU + {gpus:g} GPU per run"
    )
    return LaunchPlan(
        launch=launch,
        parallel=resources.jobs or sys.maxsize,  # Ray queues the rest by resources
        threads=cpus,
        # Ray sets CUDA_VISIBLE_DEVICES to the task's own GPUs, so the first is its own.
        devices=("cuda",) if gpus else ("cpu",),
        where=where,
    )


def run_ray(
    jobs: Sequence[WorkerJob],
    max_parallel: int,
    on_done: OnDone,
    total: int,
    already_done: int = 0,
    *,
    cpus_per_run: int = 1,
    gpus_per_run: float = 0,
    max_retries: int = MAX_RETRIES,
) -> dict[str, str]:
    """Run ``jobs`` as Ray tasks, at most ``max_parallel`` submitted at once; returns
    name -> outcome. Ctrl-C cancels the tasks; their runs resume on the next invocation.
    Ray ends the tasks of a driver that dies."""
    board = _ProgressBoard.remote()
    options = {
        "num_cpus": cpus_per_run,
        "num_gpus": gpus_per_run,
        "max_retries": max_retries,
        "retry_exceptions": False,  # a training error would fail again; only lost workers retry
    }
    pending = list(jobs)
    active: dict[ray.ObjectRef, WorkerJob] = {}
    results: dict[str, str] = {}
    bar = RunsBar(jobs, total, already_done)
    try:
        while pending or active:
            while pending and len(active) < max_parallel:
                job = pending.pop(0)
                task = _train.options(name=job.run.name, **options)
                active[task.remote(job, _Progress(board))] = job
            done, _ = ray.wait(list(active), num_returns=1, timeout=0.5)
            for ref in done:
                job = active.pop(ref)
                outcome = _outcome(ref, job, max_retries)
                results[job.run.name] = outcome
                on_done(job, outcome)
                bar.run_ended()
            bar.show((job.run.name for job in active.values()), ray.get(board.snapshot.remote()))
    except KeyboardInterrupt:
        for ref in active:
            ray.cancel(ref, force=True)
        raise
    finally:
        bar.close()
    return results


def _outcome(ref: ray.ObjectRef, job: WorkerJob, max_retries: int) -> str:
    """How the task ended; if not well, one line on stderr, as the local worker prints."""
    try:
        ray.get(ref)
        return FINISHED
    except RayTaskError as error:  # the training raised; the worker marked the run FAILED
        cause = getattr(error, "cause", None) or error
        if isinstance(cause, (LeaseHeldError, LeaseLostError)):
            print(f"{job.run.name} skipped: {cause}", file=sys.stderr)
            return TAKEN
        reason = describe(cause)
    except RayError as error:  # the worker or its node died more than max_retries times
        reason = f"its Ray worker was lost {max_retries + 1} times ({type(error).__name__})"
    print(f"{job.run.name} failed: {reason}", file=sys.stderr)
    return FAILED


@ray.remote
def _train(job: WorkerJob, progress: _Progress) -> None:
    run_worker(job, progress)


@ray.remote(num_cpus=0)
class _ProgressBoard:
    """Latest ``(env_steps, wm_updates)`` per run, for the driver's progress bar."""

    def __init__(self) -> None:
        self.steps: dict[str, Progress] = {}

    def put(self, item: tuple[str, Progress]) -> None:
        name, reported = item
        self.steps[name] = reported

    def snapshot(self) -> dict[str, Progress]:
        return dict(self.steps)


class _Progress:
    """The queue-like ``progress`` that :func:`run_worker` expects; ``put`` does not wait."""

    def __init__(self, board: Any) -> None:
        self.board = board

    def put(self, item: tuple[str, Progress]) -> None:
        self.board.put.remote(item)


def _probe(address: str) -> None:
    """Raise :class:`LauncherError` unless a gRPC server (Ray's GCS) answers at ``address``.

    ``ray.init`` would retry an address that is closed, or open but not Ray, for minutes,
    logging from C++ all the while; these checks take seconds.
    """
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise LauncherError(f"RAY_ADDRESS must be host:port, got '{address}'")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise LauncherError(
            f"cannot reach the Ray cluster at RAY_ADDRESS={address}: {error.strerror or error}"
        ) from None
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return  # a plain-text handshake would fail against TLS; leave it to ray.init
    import grpc  # a dependency of ray[default]

    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=CONNECT_TIMEOUT_S)
    except grpc.FutureTimeoutError:
        raise LauncherError(
            f"RAY_ADDRESS={address} answers but is not a Ray cluster (no gRPC handshake)"
        ) from None
    finally:
        channel.close()
