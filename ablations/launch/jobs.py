"""What every launcher shares with the driver: the job a worker runs, the user's
resources, the plan a launcher returns, and how a job ended.

The local launcher (:mod:`ablations.launch.local`), the Ray launcher
(:mod:`ablations.launch.ray_cluster`) and their registry (:mod:`ablations.launch.launchers`)
build on this module, and so does the driver; it imports neither torch nor the trainer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: importing this module loads neither torch nor MLflow
    from ablations.integrity.checkpoints import CheckpointStore
    from ablations.plan.spec import RunSpec

FINISHED, FAILED, TAKEN = "finished", "failed", "taken"
"""How a job ended: trained to its budget, failed, or left to another process that holds
its run's lease."""


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
    parent_id: str
    """The ablation's parent run, which holds the runs' leases."""
    command: str
    """The id of the command that launched the job (its leases' owner)."""


def seed_batches(jobs: Sequence[WorkerJob], size: int) -> list[tuple[WorkerJob, ...]]:
    """``jobs`` in groups of at most ``size`` that may train as one seed batch (see
    :func:`~ablations.plan.spec.seed_batch_groups`)."""
    from ablations.plan.spec import seed_batch_groups

    groups = seed_batch_groups([job.run for job in jobs], size)
    return [tuple(jobs[index] for index in group) for group in groups]


OnDone = Callable[[WorkerJob, str], None]
"""Called in the driver when a job ends: ``(job, outcome)``, an outcome above."""

Launch = Callable[..., dict[str, str]]
"""``(jobs, max_parallel, on_done, total, already_done=0) -> {run name: outcome}``,
the signature of :func:`ablations.launch.local.run_local`."""


class LauncherError(RuntimeError):
    """The launcher cannot run (missing package, unreachable cluster); one line for the user."""


@dataclass(frozen=True)
class Resources:
    """What the user asked for; ``None`` leaves the launcher's default."""

    jobs: int | None = None
    cpus_per_run: int | None = None
    gpus_per_run: float | None = None
    runs_per_gpu: int | None = None
    seed_batch: int | str | None = None
    """Seeds of one arm and task trained by one process as one batched model, or ``"auto"``:
    as many as the duration estimate says is fastest."""


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
    run's memory must fit its share of the card (see :mod:`ablations.launch.gpu_share`)."""
    shared_cores: int | None = None
    """Cores the runs in flight split between them as torch threads (the user fixed no
    threads per run); None: every run gets ``threads``."""
    seed_batch: int | str = 1
    """Runs (seeds of one arm and task) per process, trained as one seed batch; ``"auto"``:
    the estimate chooses (see :func:`~ablations.plan.estimate.best_seed_batch`)."""

    def device(self, index: int) -> str:
        return self.devices[index % len(self.devices)]

    def threads_for(self, runs: int) -> int:
        """Torch threads per run when ``runs`` are to train: ``threads``, or, when fewer
        runs than ``parallel`` will be in flight, the shared cores split between those, so
        that a lone run is not left one core of many."""
        if self.shared_cores is None:
            return self.threads
        return max(1, self.shared_cores // max(min(self.parallel, runs), 1))
