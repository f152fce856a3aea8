"""The soak's ablation, and its commands as a user's shell starts them: ``python -m
ablations ...`` in a working directory, with ``MLFLOW_TRACKING_URI`` exported, output to a
log file, each command in its own session (as a terminal's job)."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from ablations.plan.spec import AblationSpec

TASKS = ("cartpole", "pendulum")
ARMS = ("separate", "coupled")
SEEDS = 2
STEPS = 300
PRESET = "debug"
OVERRIDES = {
    "train.prefill": 200,
    "train.train_ratio": 32,
    "train.eval_every": 100,
    "train.eval_episodes": 1,
    "train.log_every": 50,
}
"""A run of seconds: CartPole and Pendulum resume bitwise (their envs are checkpointed
mid-episode), so an interrupted run must log exactly what an uninterrupted one does."""


def ablation_args(experiment: str, seed_batch: int = 1) -> list[str]:
    """The command's arguments: every run (or seed batch of ``seed_batch`` runs) one torch
    thread and two at a time, so that a rerun with fewer runs left computes exactly what the
    reference did."""
    args = ["--env", ",".join(TASKS), "--seeds", str(SEEDS), "--arms", ",".join(ARMS)]
    args += ["--preset", PRESET, "--steps", str(STEPS), "--experiment", experiment]
    args += ["--cpus-per-run", "1", "--jobs", "2", "--seed-batch", str(seed_batch)]
    for key, value in OVERRIDES.items():
        args += ["--set", f"{key}={value}"]
    return args


def planned_runs() -> list[str]:
    """The names of the ablation's runs (``<task>/<arm>-seed<k>``)."""
    spec = AblationSpec(TASKS[0], SEEDS, ARMS, PRESET, STEPS, dict(OVERRIDES), "plan", TASKS)
    return [run.name for run in spec.runs()]


_numbers = itertools.count(1)


@dataclass
class Command:
    """One ``python -m ablations`` process (the driver) and what it started."""

    experiment: str
    cwd: Path
    uri: str
    logs: Path
    number: int = field(default_factory=lambda: next(_numbers))
    process: subprocess.Popen | None = None
    started: float = 0.0
    seed_batch: int = 1

    def start(self) -> Command:
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "MLFLOW_TRACKING_URI": self.uri, "PYTHONUNBUFFERED": "1"}
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ablations",
                    *ablation_args(self.experiment, self.seed_batch),
                ],
                cwd=self.cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                # A terminal's job handles Ctrl-C, whatever this process ignores.
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )
        self.started = time.monotonic()
        return self

    @property
    def log(self) -> Path:
        return self.logs / f"command-{self.number}.log"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if it still runs after ``timeout`` seconds."""
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def workers(self) -> list[int]:
        """The pids of its live run processes (spawned multiprocessing children)."""
        return [pid for pid in _children(self.pid) if _is_worker(pid)]

    def kill_all(self) -> None:
        """``kill -9`` of its whole session (what is left of it at the end of a soak)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait()


def _children(pid: int) -> list[int]:
    try:
        return [child.pid for child in psutil.Process(pid).children()]
    except psutil.Error:
        return []


def _is_worker(pid: int) -> bool:
    """A run process: ``spawn_main`` in its command line (multiprocessing's resource tracker
    is also a child, and is not one), and not a zombie."""
    try:
        process = psutil.Process(pid)
        return "spawn_main" in " ".join(process.cmdline()) and (
            process.status() != psutil.STATUS_ZOMBIE
        )
    except psutil.Error:
        return False
