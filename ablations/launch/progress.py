"""Progress of an ablation's runs: each worker reports its run's env steps and updates every
second (:class:`ProgressReporter`), and the driver shows them on one bar over runs
(:class:`RunsBar`)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from ablations.launch.jobs import WorkerJob

if TYPE_CHECKING:  # the driver's side needs no torch
    from agent.trainer import Trainer

Progress = tuple[int, int]
"""A run's ``(env_steps, wm_updates)`` as its worker reports them."""


class RunsBar:
    """One progress bar over runs (``total`` including ``already_done``); its postfix shows
    the env steps of the runs in flight against their budgets, and their updates."""

    def __init__(self, jobs: Sequence[WorkerJob], total: int, already_done: int):
        self.budgets = {job.run.name: job.run.config().train.steps for job in jobs}
        self.bar = tqdm(
            total=total, initial=already_done, unit="run", desc="ablation", dynamic_ncols=True
        )

    def run_ended(self) -> None:
        self.bar.update(1)

    def show(self, in_flight: Iterable[str], progress: Mapping[str, Progress]) -> None:
        """``progress``: ``(env_steps, wm_updates)`` of runs in flight, as their workers
        last reported (every second, prefill and first updates included)."""
        cells = []
        for name in sorted(in_flight):
            steps, updates = progress.get(name, (0, 0))
            cells.append(f"{name} {steps:,}/{self.budgets[name]:,} steps, {updates:,} updates")
        self.bar.set_postfix_str(" | ".join(cells), refresh=True)

    def close(self) -> None:
        self.bar.close()


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
