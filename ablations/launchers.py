"""Launchers: run an ablation's worker jobs and report how each ended.

``local`` keeps ``jobs`` worker processes busy on this machine. A launcher only starts
jobs and watches them; the MLflow runs are created beforehand by the driver (one writer
creating experiments and runs avoids SQLite's first-write races).
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from collections.abc import Callable, Sequence

from tqdm.auto import tqdm

from ablations.worker import WorkerJob, worker_main

OnDone = Callable[[WorkerJob, bool], None]
"""Called in the driver when a job ends: ``(job, succeeded)``."""


def run_local(
    jobs: Sequence[WorkerJob],
    max_parallel: int,
    on_done: OnDone,
    total: int,
    already_done: int = 0,
) -> dict[str, bool]:
    """Run ``jobs`` in up to ``max_parallel`` spawned processes; returns name -> succeeded.

    One progress bar counts finished runs (``total`` including ``already_done``); its
    postfix shows the env steps of the runs in flight. Ctrl-C stops every worker; their
    runs stay unfinished and resume from their checkpoints next time.
    """
    context = mp.get_context("spawn")  # fork would share torch/MLflow state between runs
    progress = context.Queue()
    pending = list(jobs)
    active: dict[str, tuple[mp.process.BaseProcess, WorkerJob]] = {}
    steps: dict[str, int] = {}
    budgets = {job.run.name: job.run.config().train.steps for job in jobs}
    results: dict[str, bool] = {}
    bar = tqdm(total=total, initial=already_done, unit="run", desc="ablation", dynamic_ncols=True)
    try:
        while pending or active:
            while pending and len(active) < max_parallel:
                job = pending.pop(0)
                process = context.Process(
                    target=worker_main, args=(job, progress), name=job.run.name, daemon=False
                )
                process.start()
                active[job.run.name] = (process, job)
                steps[job.run.name] = 0
            _drain(progress, steps)
            for name, (process, job) in list(active.items()):
                if process.is_alive():
                    continue
                process.join()
                succeeded = process.exitcode == 0
                results[name] = succeeded
                del active[name]
                steps.pop(name, None)
                on_done(job, succeeded)
                bar.update(1)
            bar.set_postfix_str(
                " | ".join(f"{n} {steps.get(n, 0)}/{budgets[n]}" for n in sorted(active)),
                refresh=True,
            )
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


def _drain(progress: mp.Queue, steps: dict[str, int]) -> None:
    while True:
        try:
            name, env_steps = progress.get_nowait()
        except queue.Empty:
            return
        if name in steps:
            steps[name] = env_steps


LAUNCHERS = {"local": run_local}
