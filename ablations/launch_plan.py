"""What every launcher shares with the driver: the user's resources, the plan a launcher
returns, how a job ended, and the progress bar over runs.

The local launcher and the launcher registry (:mod:`ablations.launchers`) and the Ray
launcher (:mod:`ablations.ray_launcher`) build on this module; the Ray launcher needs
nothing of the local one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from tqdm.auto import tqdm

from ablations.worker import WorkerJob

FINISHED, FAILED, TAKEN = "finished", "failed", "taken"
"""How a job ended: trained to its budget, failed, or left to another process that holds
its run's lease."""

Progress = tuple[int, int]
"""A run's ``(env_steps, wm_updates)`` as its worker reports them."""

OnDone = Callable[[WorkerJob, str], None]
"""Called in the driver when a job ends: ``(job, outcome)``, an outcome above."""

Launch = Callable[..., dict[str, str]]
"""``(jobs, max_parallel, on_done, total, already_done=0) -> {run name: outcome}``,
the signature of :func:`ablations.launchers.run_local`."""


class LauncherError(RuntimeError):
    """The launcher cannot run (missing package, unreachable cluster); one line for the user."""


@dataclass(frozen=True)
class Resources:
    """What the user asked for; ``None`` leaves the launcher's default."""

    jobs: int | None = None
    cpus_per_run: int | None = None
    gpus_per_run: float | None = None
    runs_per_gpu: int | None = None


@dataclass(frozen=True)
class LaunchPlan:
    """A launcher ready to start jobs, and how the driver should lay runs out for it."""

    launch: Launch
    parallel: int
    """Most runs in flight at once."""
    threads: int
    """Torch threads per run."""
    devices: tuple[str, ...]
    """The ``i``-th run is created for ``devices[i % len(devices)]`` (its ``device`` tag);
    the local launcher starts it on a free device slot, which its worker tags again."""
    where: str
    """Where the runs go, for the driver's opening line."""
    runs_per_gpu: int = 1
    """Run processes sharing each GPU, as the user asked (``RUNS_PER_GPU``): above one, each
    run's memory must fit its share of the card (see :mod:`ablations.gpu_share`)."""
    shared_cores: int | None = None
    """Cores the runs in flight split between them as torch threads (the user fixed no
    threads per run); None: every run gets ``threads``."""

    def device(self, index: int) -> str:
        return self.devices[index % len(self.devices)]

    def threads_for(self, runs: int) -> int:
        """Torch threads per run when ``runs`` are to train: ``threads``, or, when fewer
        runs than ``parallel`` will be in flight, the shared cores split between those, so
        that a lone run is not left one core of many."""
        if self.shared_cores is None:
            return self.threads
        return max(1, self.shared_cores // max(min(self.parallel, runs), 1))


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
