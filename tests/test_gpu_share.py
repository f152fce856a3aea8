"""RUNS_PER_GPU: device slots, the memory check, CUDA MPS's daemon, and mistakes as one line.

The slot and memory arithmetic are pure and checked by hand and by simulation; the daemon's
start and stop are checked with a stand-in ``nvidia-cuda-mps-control`` (a real executable
that records how it was called), since no GPU is needed to follow that protocol. The
memory measurement itself needs a GPU and runs where one is present.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ablations.launch.gpu_share import (
    GIB,
    SlotPool,
    device_slots,
    gpu_sharing,
    run_memory_need,
    share_problem,
)
from ablations.launch.jobs import LauncherError, Resources
from ablations.launch.launchers import plan_ray
from ablations.launch.local import plan_local
from tests.test_makefile import make

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only answer")
no_system_mps = pytest.mark.skipif(
    Path("/tmp/nvidia-mps/control").exists(), reason="an MPS daemon already runs here"
)


def test_slots_hold_every_gpu_k_times_interleaved() -> None:
    assert device_slots(2, 2) == ("cuda:0", "cuda:1", "cuda:0", "cuda:1")
    assert device_slots(1, 3) == ("cuda:0",) * 3
    assert device_slots(3, 1) == ("cuda:0", "cuda:1", "cuda:2")


def test_runs_taking_free_slots_never_put_more_than_k_on_a_gpu() -> None:
    # Runs of random lengths start whenever a slot is free, as the local launcher does.
    rng = np.random.default_rng(0)
    gpus, k, runs = 3, 2, 40
    pool = SlotPool(device_slots(gpus, k))
    in_flight: list[tuple[float, str]] = []  # (end time, device)
    now, started, most = 0.0, 0, 0
    while started < runs or in_flight:
        while started < runs and len(in_flight) < gpus * k:
            in_flight.append((now + rng.uniform(1, 10), pool.take()))
            started += 1
        counts = [sum(device == f"cuda:{g}" for _, device in in_flight) for g in range(gpus)]
        most = max(most, *counts)
        assert max(counts) <= k, counts
        in_flight.sort()
        now, device = in_flight.pop(0)
        pool.release(device)
    assert most == k  # every slot was used: the check is not vacuous
    assert sorted(pool.free) == sorted(device_slots(gpus, k))
    with pytest.raises(IndexError):
        SlotPool([]).take()


def test_the_memory_check_by_hand() -> None:
    # 80 GiB, 4 runs: 20 GiB each. A run needs its peak x 1.1 plus 1 GiB for its process.
    assert run_memory_need(10 * GIB) == 12 * GIB
    assert share_problem(17 * GIB, 80 * GIB, 4, "card") is None  # 19.7 GiB <= 20
    line = share_problem(18 * GIB, 80 * GIB, 4, "card")  # 20.8 GiB > 20
    assert line is not None and "\n" not in line
    assert "gives each run 20.0 GiB of the card's 80.0 GiB" in line
    assert "needs about 20.8 GiB" in line and "18.0 GiB measured" in line
    assert line.endswith("use RUNS_PER_GPU=3 or fewer")  # 80 // 20.8 = 3
    # The boundary: a need equal to the share fits.
    exact = round((20 * GIB - GIB) / 1.1)
    assert run_memory_need(exact) == 20 * GIB and share_problem(exact, 80 * GIB, 4) is None
    alone = share_problem(80 * GIB, 80 * GIB, 2)
    assert alone is not None and alone.endswith("a run does not fit on it alone")


@no_gpu
def test_runs_per_gpu_on_a_cpu_only_machine() -> None:
    with pytest.raises(LauncherError, match="this machine has none; on a CPU, JOBS sets"):
        plan_local(Resources(runs_per_gpu=2))
    plan = plan_local(Resources(runs_per_gpu=1, jobs=3))  # one run per GPU: nothing to share
    assert (plan.parallel, plan.runs_per_gpu, plan.devices) == (3, 1, ("cpu",))


def test_runs_per_gpu_is_for_the_local_launcher() -> None:
    with pytest.raises(LauncherError, match="GPUS_PER_RUN=1/k"):
        plan_ray(Resources(runs_per_gpu=2))


def run_ablation(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "ablations", "--env", "cartpole", "--seeds", "1"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db"}
    return subprocess.run(
        [*command, "--preset", "debug", "--no-report", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("0", "RUNS_PER_GPU must be positive, got 0"),
        ("-1", "RUNS_PER_GPU must be positive, got -1"),
        ("abc", "RUNS_PER_GPU must be a whole number, got 'abc'"),
        pytest.param("2", "shares a GPU between runs, and this machine has none", marks=no_gpu),
    ],
)
def test_a_bad_runs_per_gpu_is_one_line_exit_2_and_creates_nothing(
    tmp_path: Path, value: str, says: str
) -> None:
    result = run_ablation(tmp_path, "--runs-per-gpu", value)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert not list(tmp_path.iterdir())


def test_make_passes_runs_per_gpu_only_when_set(tmp_path: Path) -> None:
    given = make("-n", "ablation", "RUNS_PER_GPU=4", cwd=tmp_path).stdout
    unset = make("-n", "ablation", cwd=tmp_path).stdout
    assert "--runs-per-gpu '4'" in given
    assert "--runs-per-gpu" not in unset


def stand_in_control(folder: Path, exit_code: int = 0) -> tuple[Path, Path]:
    """An executable that records each call (its arguments, stdin and MPS folders) in a log."""
    log = folder / "calls.log"
    script = folder / "nvidia-cuda-mps-control"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "args=$* pipes=$CUDA_MPS_PIPE_DIRECTORY logs=$CUDA_MPS_LOG_DIRECTORY" >> {log}\n'
        f'if [ "$1" != "-d" ]; then echo "stdin=$(cat)" >> {log}; fi\n'
        f'[ {exit_code} -eq 0 ] || echo "cannot open the GPU" >&2\n'
        f"exit {exit_code}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, log


@no_system_mps
def test_mps_daemon_is_started_for_the_runs_and_stopped_even_on_ctrl_c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CUDA_MPS_PIPE_DIRECTORY", raising=False)
    control, log = stand_in_control(tmp_path)
    said: list[str] = []
    sharing = gpu_sharing(4, cuda=True, control=str(control), say=said.append)
    with pytest.raises(KeyboardInterrupt), sharing:
        folder = os.environ["CUDA_MPS_PIPE_DIRECTORY"]  # what spawned runs inherit
        assert os.environ["CUDA_MPS_LOG_DIRECTORY"] == folder and Path(folder).is_dir()
        raise KeyboardInterrupt
    calls = log.read_text().splitlines()
    assert calls == [
        f"args=-d pipes={folder} logs={folder}",
        f"args= pipes={folder} logs={folder}",
        "stdin=quit",
    ]
    assert said[0].startswith("CUDA MPS: started its control daemon for 4 runs per GPU")
    assert said[1] == "CUDA MPS: control daemon stopped"
    assert "CUDA_MPS_PIPE_DIRECTORY" not in os.environ and not Path(folder).exists()


@no_system_mps
def test_without_mps_runs_share_by_time_slicing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CUDA_MPS_PIPE_DIRECTORY", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-cuda-mps-control on it
    said: list[str] = []
    with gpu_sharing(2, cuda=True, say=said.append):
        pass
    assert said == [
        "nvidia-cuda-mps-control not found: the 2 runs per GPU share it by time slicing"
    ]
    control, log = stand_in_control(tmp_path, exit_code=1)
    said.clear()
    with gpu_sharing(2, cuda=True, control=str(control), say=said.append):
        pass
    assert said == [
        "CUDA MPS did not start (cannot open the GPU): the 2 runs per GPU share it by time slicing"
    ]
    assert len(log.read_text().splitlines()) == 1  # -d only: nothing to stop
    # One run per GPU, or no GPU: nothing to share, nothing said or started.
    said.clear()
    for runs_per_gpu, cuda in ((1, True), (2, False)):
        with gpu_sharing(runs_per_gpu, cuda=cuda, control=str(control), say=said.append):
            pass
    assert said == [] and len(log.read_text().splitlines()) == 1
    # Turned off by the user (a machine where MPS's server cannot start).
    monkeypatch.setenv("ABLATION_MPS", "off")
    with gpu_sharing(2, cuda=True, control=str(control), say=said.append):
        pass
    assert said == ["CUDA MPS off (ABLATION_MPS=off): the 2 runs per GPU share it by time slicing"]
    assert len(log.read_text().splitlines()) == 1


def test_a_running_mps_daemon_is_used_and_left_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pipes").mkdir()
    (tmp_path / "pipes" / "control").touch()
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path / "pipes"))
    control, log = stand_in_control(tmp_path)
    said: list[str] = []
    with gpu_sharing(3, cuda=True, control=str(control), say=said.append):
        pass
    assert said == [
        f"CUDA MPS: 3 runs per GPU through the daemon already running ({tmp_path}/pipes)"
    ]
    assert not log.exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_estimate_measures_a_runs_gpu_memory() -> None:
    import gc

    from ablations.plan.estimate import time_costs
    from tests.conftest import tiny_config

    gc.collect()
    before = torch.cuda.memory_allocated()
    costs = time_costs(tiny_config("cartpole", train__device="cuda", train__compile="off"))
    card = torch.cuda.get_device_properties(0).total_memory
    assert 0 < costs.peak_memory < card
    # The driver gives the card back to the runs once it has measured.
    assert torch.cuda.memory_allocated() <= before
