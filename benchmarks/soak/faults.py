"""The faults the soak injects, each as a user's shell or machine would cause it: signals to
the runner's processes, a second command, a tracking server going away, a damaged file.

Each fault acts on the round in progress (:class:`Round`) and returns what it did in words,
or None when it cannot apply at that moment (no run process alive, no checkpoint yet on
disk), so that another kind is drawn. :data:`FAULTS` is the registry the campaign draws
from; :data:`SERVER_ONLY` are drawn only against a tracking server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from benchmarks.soak.commands import Command
from benchmarks.soak.stores import SoakStore

STOP_DEADLINE_S = 300.0
"""How long a signalled command may take to stop (it marks its runs KILLED, through the
store's retries) before the soak calls it hung."""
OUTAGE_S = (10.0, 60.0)
"""How long the tracking server stays down."""
ORPHAN_DEADLINE_S = 60.0
"""How long run processes may outlive a command killed by ``kill -9``."""


class Round(Protocol):
    """What a fault reaches: the round's live commands, its store, the soak's generator."""

    rng: np.random.Generator
    store: SoakStore

    def live(self) -> list[Command]: ...

    def launch(self, cwd: Path | None = None) -> Command:
        """Start another command of the round (in its usual directory by default)."""
        ...

    def rerun(self, cwd: Path | None = None) -> Command:
        """Start the command again after a fault (counted as a rerun)."""
        ...

    def elsewhere(self) -> Path:
        """A fresh working directory, away from the usual one."""
        ...

    def problem(self, text: str) -> None:
        """Record something the runner did wrong that no count of the tally covers."""
        ...


def _driver(round_: Round) -> Command | None:
    live = round_.live()
    return live[int(round_.rng.integers(len(live)))] if live else None


def _stop(round_: Round, command: Command, how: str) -> str:
    """Wait for a signalled command to exit; a command that hangs is a problem (killed)."""
    code = command.wait(STOP_DEADLINE_S)
    if code is None:
        round_.problem(
            f"command {command.number} did not stop within {STOP_DEADLINE_S:.0f} s of {how}"
        )
        command.kill_all()
        return "hung"
    return f"exit {code}"


def kill_worker(round_: Round) -> str | None:
    """``kill -9`` of one run process: its command marks the run FAILED and goes on."""
    workers = [(command, pid) for command in round_.live() for pid in command.workers()]
    if not workers:
        return None
    command, pid = workers[int(round_.rng.integers(len(workers)))]
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:  # it ended (and was collected) meanwhile
        return None
    return f"kill -9 of run process {pid} of command {command.number}"


def kill_driver(round_: Round) -> str | None:
    """``kill -9`` of the command itself: its run processes must die with it."""
    command = _driver(round_)
    if command is None:
        return None
    workers = command.workers()
    os.kill(command.pid, signal.SIGKILL)
    command.wait(STOP_DEADLINE_S)
    deadline = time.monotonic() + ORPHAN_DEADLINE_S
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.5)
    orphans = [pid for pid in workers if _alive(pid)]
    if orphans:
        round_.problem(f"run processes {orphans} outlived command {command.number} (kill -9)")
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return f"kill -9 of command {command.number} (pid {command.pid}, {len(workers)} run processes)"


def _signal_driver(signum: signal.Signals) -> Callable[[Round], str | None]:
    def fault(round_: Round) -> str | None:
        command = _driver(round_)
        if command is None:
            return None
        os.kill(command.pid, signum)
        outcome = _stop(round_, command, signum.name)
        return f"{signum.name} to command {command.number} (pid {command.pid}): {outcome}"

    fault.__doc__ = f"{signum.name} to the command only, as ``kill -{signum.name[3:]} PID``."
    return fault


def second_command(round_: Round) -> str | None:
    """The same command once more, alongside (a second terminal, a scheduler's retry)."""
    if not round_.live():
        return None
    command = round_.launch()
    return f"a second command {command.number} started alongside"


def server_outage(round_: Round) -> str | None:
    """The tracking server stopped, and started again on the same port after 10-60 s."""
    server = round_.store.server
    if server is None:
        return None
    seconds = float(round_.rng.uniform(*OUTAGE_S))
    server.stop()
    time.sleep(seconds)
    server.start()
    return f"tracking server stopped for {seconds:.0f} s, then started again"


def corrupt_checkpoint(round_: Round) -> str | None:
    """The latest checkpoint of an unfinished run truncated or overwritten with garbage
    (a full disk, a bad block); the run's process, if one trains it, is then killed, so that
    the run resumes past the damaged file."""
    found = round_.store.checkpoints()
    if not found:
        return None
    runs = sorted(found)
    run_id = runs[int(round_.rng.integers(len(runs)))]
    path = found[run_id][0]
    garbage = bool(round_.rng.integers(2))
    try:
        size = path.stat().st_size
        if garbage:
            path.write_bytes(round_.rng.bytes(size))
        else:
            os.truncate(path, size // 2)
    except OSError:  # its run replaced it meanwhile
        return None
    damage = "overwritten with garbage" if garbage else f"truncated to {size // 2} bytes"
    killed = _kill_trainer(round_, run_id)
    return f"{path.name} of run {run_id[:8]} {damage}" + (
        f"; its run process {killed} killed" if killed else ""
    )


def _kill_trainer(round_: Round, run_id: str) -> int | None:
    """``kill -9`` of the live run process of one of the round's commands that trains
    ``run_id`` (the run's ``worker_pid`` tag), if there is one."""
    try:
        tags = MlflowClient(round_.store.uri).get_run(run_id).data.tags
    except MlflowException:
        return None
    pid = int(tags.get("worker_pid", 0) or 0)
    if pid and any(pid in command.workers() for command in round_.live()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            return pid
    return None


def rerun_elsewhere(round_: Round) -> str | None:
    """Ctrl-C at the command's terminal (SIGINT to its process group), then the same
    command again from another working directory."""
    command = _driver(round_)
    if command is None:
        return None
    os.killpg(command.pid, signal.SIGINT)
    outcome = _stop(round_, command, "Ctrl-C")
    again = round_.rerun(round_.elsewhere())
    return (
        f"Ctrl-C to command {command.number} ({outcome}), rerun as command {again.number} "
        f"from {again.cwd.name}/"
    )


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


FAULTS: dict[str, Callable[[Round], str | None]] = {
    "kill-worker": kill_worker,
    "kill-driver": kill_driver,
    "sigint-driver": _signal_driver(signal.SIGINT),
    "sigterm-driver": _signal_driver(signal.SIGTERM),
    "second-command": second_command,
    "server-outage": server_outage,
    "corrupt-checkpoint": corrupt_checkpoint,
    "rerun-elsewhere": rerun_elsewhere,
}
SERVER_ONLY = {"server-outage"}


def kinds_for(store: SoakStore) -> list[str]:
    """The kinds of fault that apply to ``store``, in :data:`FAULTS`' order."""
    return [kind for kind in FAULTS if store.server is not None or kind not in SERVER_ONLY]
