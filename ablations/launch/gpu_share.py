"""Several runs per GPU (``RUNS_PER_GPU``): device slots, the memory check, CUDA MPS.

One Dreamer run leaves a large GPU mostly idle (its update is thousands of small kernels),
so ``k`` run processes may share each card. They take *slots*: each GPU ``k`` times, a run
starting on a free one, so no card ever holds more than ``k`` runs. Before any run is
created, each run's GPU memory (measured while timing its updates, see
:mod:`ablations.plan.estimate`; :func:`check_gpu_share`) is checked against its share of
the card. While they run, CUDA MPS (where ``nvidia-cuda-mps-control`` is installed) lets
the runs' kernels execute side by side instead of taking turns: :func:`gpu_sharing` starts
its control daemon and stops it at the end, whatever the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence

import torch

from ablations.environment import environment_variables
from ablations.launch.jobs import LauncherError
from ablations.plan.estimate import RunCosts, run_costs
from ablations.plan.spec import RunSpec

MPS_CONTROL = "nvidia-cuda-mps-control"
GIB = 1024**3
PROCESS_OVERHEAD_BYTES = GIB
"""GPU memory a run process holds outside torch's allocator count: its CUDA context and
the cuBLAS/cuDNN workspaces."""
ALLOCATOR_HEADROOM = 1.1
"""The allocator reserves more than it allocates (fragmentation between block sizes)."""


def device_slots(gpus: int, runs_per_gpu: int) -> tuple[str, ...]:
    """Every GPU ``runs_per_gpu`` times, interleaved so that the first runs spread over the
    cards: ``device_slots(2, 2) == ("cuda:0", "cuda:1", "cuda:0", "cuda:1")``."""
    return tuple(f"cuda:{gpu}" for _ in range(runs_per_gpu) for gpu in range(gpus))


class SlotPool:
    """The slots of runs in flight: a starting run takes the first free slot, an ending
    one frees its own, so a device never holds more runs than it has slots."""

    def __init__(self, slots: Sequence[str]):
        self.free = list(slots)

    def take(self) -> str:
        """A free slot's device; raises ``IndexError`` when every slot is taken."""
        return self.free.pop(0)

    def release(self, device: str) -> None:
        self.free.append(device)


def run_memory_need(peak_allocated: int) -> int:
    """Bytes of GPU memory one run needs: its peak allocation with the allocator's headroom,
    plus its process's own overhead."""
    return round(peak_allocated * ALLOCATOR_HEADROOM) + PROCESS_OVERHEAD_BYTES


def share_problem(
    peak_allocated: int, card_bytes: int, runs_per_gpu: int, card: str = "GPU"
) -> str | None:
    """Why ``runs_per_gpu`` runs of ``peak_allocated`` bytes each cannot share a card of
    ``card_bytes`` (one line naming the fix), or None when each fits in its share
    ``card_bytes / runs_per_gpu``."""
    need, share = run_memory_need(peak_allocated), card_bytes / runs_per_gpu
    if need <= share:
        return None
    most = card_bytes // need
    fix = f"use RUNS_PER_GPU={most} or fewer" if most >= 1 else "a run does not fit on it alone"
    return (
        f"RUNS_PER_GPU={runs_per_gpu} gives each run {share / GIB:.1f} GiB of the {card}'s "
        f"{card_bytes / GIB:.1f} GiB, but a run needs about {need / GIB:.1f} GiB (a peak of "
        f"{peak_allocated / GIB:.1f} GiB measured in its updates, plus "
        f"{PROCESS_OVERHEAD_BYTES / GIB:.0f} GiB for its process); {fix}"
    )


@contextlib.contextmanager
def gpu_sharing(
    runs_per_gpu: int,
    cuda: bool,
    control: str | None = None,
    say: Callable[[str], None] = print,
) -> Iterator[None]:
    """While open, ``runs_per_gpu`` (> 1) run processes started from this one share each
    GPU through CUDA MPS: its control daemon (``control``, default ``nvidia-cuda-mps-control``
    on the PATH) is started here with a private pipe and log folder, which this process's
    environment hands on to the runs it starts, and told to quit on closing (after an
    error or Ctrl-C too). A daemon that is already up is used and left running. Without
    MPS (or with ``ABLATION_MPS=off`` in the environment) the runs share by time slicing.
    ``say`` gets one line saying which."""
    if runs_per_gpu <= 1 or not cuda:
        yield
        return
    if os.environ.get("ABLATION_MPS", "on") == "off":
        say(
            f"CUDA MPS off (ABLATION_MPS=off): the {runs_per_gpu} runs per GPU share it by "
            "time slicing"
        )
        yield
        return
    control = control or shutil.which(MPS_CONTROL)
    if control is None:
        say(f"{MPS_CONTROL} not found: the {runs_per_gpu} runs per GPU share it by time slicing")
        yield
        return
    pipes = os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps")
    if os.path.exists(os.path.join(pipes, "control")):
        say(f"CUDA MPS: {runs_per_gpu} runs per GPU through the daemon already running ({pipes})")
        yield
        return
    with contextlib.ExitStack() as stack:  # closed in reverse: daemon, variables, folder
        folder = tempfile.mkdtemp(prefix="ablation-mps-")
        stack.callback(shutil.rmtree, folder, ignore_errors=True)
        names = ("CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY")
        stack.enter_context(environment_variables(**dict.fromkeys(names, folder)))
        started = subprocess.run([control, "-d"], capture_output=True, text=True, check=False)
        if started.returncode != 0:
            why = (started.stderr or started.stdout).strip().splitlines()[:1] or ["no message"]
            say(
                f"CUDA MPS did not start ({why[0]}): the {runs_per_gpu} runs per GPU share it "
                "by time slicing"
            )
            yield
            return
        stack.callback(_stop_daemon, control, say)
        say(f"CUDA MPS: started its control daemon for {runs_per_gpu} runs per GPU ({folder})")
        yield


def _stop_daemon(control: str, say: Callable[[str], None]) -> None:
    subprocess.run([control], input="quit\n", text=True, capture_output=True, check=False)
    say("CUDA MPS: control daemon stopped")


def check_gpu_share(
    runs: list[RunSpec], runs_per_gpu: int, threads: int, costs: dict[str, RunCosts]
) -> None:
    """Raise :class:`LauncherError` unless each run's GPU memory (its peak while its
    updates are timed, per task and arm, kept in ``costs`` for the estimate) fits its share
    of the card with ``runs_per_gpu`` runs on it."""
    torch.set_num_threads(threads)  # time the work as a worker will run it
    print(
        f"measuring each arm's GPU memory for RUNS_PER_GPU={runs_per_gpu} "
        "(its updates timed for the estimate)...",
        flush=True,
    )
    try:
        peak = max(run_costs(run, costs).peak_memory for run in runs)
    except torch.OutOfMemoryError:
        raise LauncherError(
            "a run ran out of GPU memory while its updates were timed, alone on the card; "
            "use a smaller PRESET"
        ) from None
    card = torch.cuda.get_device_properties(0)
    problem = share_problem(peak, card.total_memory, runs_per_gpu, card.name)
    if problem:
        raise LauncherError(problem)
    share = card.total_memory / runs_per_gpu / GIB
    print(
        f"each run needs about {run_memory_need(peak) / GIB:.1f} GiB of GPU memory; "
        f"its share of the {card.name} is {share:.1f} GiB"
    )
