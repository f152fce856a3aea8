"""The local launcher: keeps ``jobs`` worker processes busy on this machine, each on a free
device slot, and reports how each job ended. It only starts jobs and watches them; the
MLflow runs are created beforehand by the driver (one writer creating experiments and runs
avoids SQLite's first-write races)."""

from __future__ import annotations

import dataclasses
import functools
import math
import multiprocessing as mp
import os
import queue
import time
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from ablations.launch.gpu_share import SlotPool, device_slots, gpu_sharing
from ablations.launch.group_worker import group_main
from ablations.launch.jobs import (
    FAILED,
    FINISHED,
    TAKEN,
    LauncherError,
    LaunchPlan,
    OnDone,
    Resources,
    WorkerJob,
    seed_batches,
)
from ablations.launch.progress import Progress, RunsBar
from ablations.launch.worker import EXIT_TAKEN, worker_main


def default_jobs(cpus_per_run: int | None = None) -> int:
    """Local runs at once when JOBS is not given: one per GPU, else one per ``cpus_per_run``
    cores (one when not given).

    One run per core, measured on a 2-core CPU (``make bench-throughput KS=1`` against
    ``KS=2``, two processes of one thread against one of two): the same aggregate rate at
    ``SHAPE=S``, 1.1x at ``PRESET=small`` and 1.8-2.1x at ``PRESET=debug``, where one update's
    small matrix products leave a second thread little to do."""
    if torch.cuda.is_available():
        return torch.cuda.device_count()
    return max(1, (os.cpu_count() or 1) // (cpus_per_run or 1))


def plan_local(resources: Resources) -> LaunchPlan:
    """Processes on this machine: one per GPU (``runs_per_gpu`` per GPU when given), else one
    per ``cpus_per_run`` cores (default one) unless ``jobs`` says otherwise; torch threads
    split the cores between the runs in flight unless ``cpus_per_run`` says otherwise. A run
    starts on a free device slot (each GPU ``runs_per_gpu`` times, or as often as ``jobs``
    needs)."""
    if resources.gpus_per_run is not None:
        raise LauncherError("--gpus-per-run is for --launcher ray (local runs take one GPU each)")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    share = resources.runs_per_gpu
    if share is not None and share > 1 and not gpus:
        raise LauncherError(
            f"RUNS_PER_GPU={share} shares a GPU between runs, and this machine has none; "
            "on a CPU, JOBS sets how many runs train in parallel"
        )
    if gpus and share:
        parallel = min(resources.jobs or gpus * share, gpus * share)
    else:
        parallel = resources.jobs or default_jobs(resources.cpus_per_run)
    if resources.cpus_per_run:
        cores, threads = None, resources.cpus_per_run
    else:
        cores = os.cpu_count() or 1
        threads = max(1, cores // parallel)
    devices = tuple(f"cuda:{index}" for index in range(gpus)) or ("cpu",)
    seed_batch = resources.seed_batch or 1
    # auto: the estimate picks the size, and the driver passes it to the launch.
    launch = functools.partial(run_local, seed_batch=1 if seed_batch == "auto" else seed_batch)
    if gpus:
        slots = device_slots(gpus, share or math.ceil(parallel / gpus))
        launch = functools.partial(launch, slots=slots, runs_per_gpu=share or 1)
    where = "local processes" + (f", {share} per GPU" if gpus and share else "")
    if seed_batch == "auto":
        where += ", seeds of an arm batched as the estimate says is fastest"
    elif seed_batch > 1:
        where += f", up to {seed_batch} seeds of an arm batched in each"
    return LaunchPlan(launch, parallel, threads, devices, where, share or 1, cores, seed_batch)


def run_local(
    jobs: Sequence[WorkerJob],
    max_parallel: int,
    on_done: OnDone,
    total: int,
    already_done: int = 0,
    *,
    slots: Sequence[str] | None = None,
    runs_per_gpu: int = 1,
    seed_batch: int = 1,
) -> dict[str, str]:
    """Run ``jobs`` in up to ``max_parallel`` spawned processes; returns name -> outcome.

    With ``slots`` (devices, see :func:`~ablations.launch.gpu_share.device_slots`) each job trains
    on the device of a free slot rather than its own; with ``runs_per_gpu`` above one, the
    processes share each GPU through CUDA MPS where it is installed (see
    :func:`~ablations.launch.gpu_share.gpu_sharing`). With ``seed_batch`` above one, a process
    trains up to that many seeds of one arm and task as one seed batch
    (:func:`~ablations.launch.jobs.seed_batches`); ``max_parallel`` counts processes.

    One progress bar counts finished runs (``total`` including ``already_done``); its
    postfix shows the env steps of the runs in flight. Ctrl-C stops every worker; their
    runs stay unfinished and resume from their checkpoints next time. The workers die with
    this process, even by ``kill -9`` (see :func:`~ablations.launch.worker.worker_main`).
    """
    context = mp.get_context("spawn")  # fork would share torch/MLflow state between runs
    progress = context.Queue()
    pending = seed_batches(jobs, seed_batch)
    active: dict[str, tuple[mp.process.BaseProcess, tuple[WorkerJob, ...]]] = {}
    steps: dict[str, Progress] = {}
    reported: dict[str, str] = {}  # outcomes a seed batch's process told
    results: dict[str, str] = {}
    bar = RunsBar(jobs, total, already_done)
    pool = SlotPool(slots) if slots else None
    if pool is not None:
        max_parallel = min(max_parallel, len(pool.free))
    # The runs on a GPU go through MPS while they run, and it stops after them, whatever ends them.
    with gpu_sharing(runs_per_gpu, torch.cuda.is_available(), say=tqdm.write):
        try:
            while pending or active:
                while pending and len(active) < max_parallel:
                    group = pending.pop(0)
                    if pool is not None:
                        device = pool.take()
                        group = tuple(dataclasses.replace(job, device=device) for job in group)
                    if len(group) == 1:
                        target, args = worker_main, (group[0], progress)
                    else:
                        target, args = group_main, (list(group), progress)
                    name = "+".join(job.run.name for job in group)
                    process = context.Process(target=target, args=args, name=name, daemon=False)
                    process.start()
                    active[name] = (process, group)
                    steps.update({job.run.name: (0, 0) for job in group})
                _drain(progress, steps, reported)
                for name, (process, group) in list(active.items()):
                    if process.is_alive():
                        continue
                    process.join()
                    _drain(progress, steps, reported)  # what it said before it ended
                    del active[name]
                    if pool is not None:
                        pool.release(group[0].device)
                    for job in group:
                        if len(group) == 1:
                            outcome = EXIT_OUTCOMES.get(process.exitcode, FAILED)
                        else:  # a run the batch said nothing of did not finish
                            outcome = reported.get(job.run.name, FAILED)
                        results[job.run.name] = outcome
                        steps.pop(job.run.name, None)
                        on_done(job, outcome)
                        bar.run_ended()
                in_flight = [job.run.name for _, group in active.values() for job in group]
                bar.show(in_flight, steps)
                time.sleep(0.5)
        except KeyboardInterrupt:
            for process, _ in active.values():
                process.terminate()
            for process, _ in active.values():
                process.join(timeout=10)
            raise
        finally:
            bar.close()
    return results


EXIT_OUTCOMES = {0: FINISHED, EXIT_TAKEN: TAKEN}


def _drain(progress: mp.Queue, steps: dict[str, Progress], outcomes: dict[str, str]) -> None:
    """Progress ``(env_steps, wm_updates)`` into ``steps``; a seed batch's ``(name,
    outcome)`` messages into ``outcomes``."""
    while True:
        try:
            name, message = progress.get_nowait()
        except queue.Empty:
            return
        if isinstance(message, str):
            outcomes[name] = message
        elif name in steps:
            steps[name] = message
