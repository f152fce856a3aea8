"""One store's fault campaign: the ablation's command started, faults injected at seeded
random moments, and the command rerun after each until the ablation completes.

A round is one ablation (experiment ``soak-<round>``). Faults land while a command runs,
each after a delay drawn as a fraction of an uninterrupted ablation's duration; when every
command of the round has ended without completing it, the command is rerun. A round ends
once a command exits 0 (every run finished; the report built); while faults remain, the
next round starts a fresh ablation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.soak.commands import Command
from benchmarks.soak.faults import FAULTS, kinds_for
from benchmarks.soak.stores import SoakStore

FAULT_DELAY = (0.03, 0.8)
"""A fault's delay after the previous event, as a fraction of an ablation's duration (the
latest round that completed without a fault, else the reference): from the command's
start-up (creating the ablation) to late in its runs."""
RERUNS_PER_FAULT = 4
"""Reruns a round may take per fault before the ablation counts as stuck (plus a few)."""
HANG_FACTOR = 6.0
"""A command running this many times the reference's duration with no fault left is hung."""


@dataclass
class CampaignResult:
    """What one store's campaign did."""

    experiments: list[str] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    """The kind of each fault injected, in order."""
    reruns: int = 0
    problems: list[str] = field(default_factory=list)


class Campaign:
    """Faults against ``store``'s ablation; :meth:`run` returns the :class:`CampaignResult`.

    ``reference_seconds`` (how long the uninterrupted reference took) scales the delays
    until a round completes without a fault, whose duration scales them from then on (the
    machine's load changes); ``say`` prints a progress line.
    """

    def __init__(
        self,
        store: SoakStore,
        rng: np.random.Generator,
        faults: int,
        reference_seconds: float,
        say: Callable[[str], None],
        seed_batch: int = 1,
    ):
        self.seed_batch = seed_batch
        self.store = store
        self.rng = rng
        self.faults_left = faults
        self.total = faults
        self.reference_seconds = reference_seconds
        self.clean_seconds = 0.0
        """How long the latest round without a fault took (0 before one has)."""
        self.say = say
        self.result = CampaignResult()
        self.commands: list[Command] = []
        self.experiment = ""
        self._places = 0
        self._held: list[str] | None = None

    # --- what a fault reaches (faults.Round) -------------------------------------------------

    def live(self) -> list[Command]:
        return [command for command in self.commands if command.running()]

    def launch(self, cwd: Path | None = None, why: str = "") -> Command:
        command = Command(
            self.experiment,
            cwd or self.home,
            self.store.uri,
            self.store.folder / "logs",
            seed_batch=self.seed_batch,
        ).start()
        self.commands.append(command)
        where = "" if cwd is None else f" from {cwd.name}/"
        self._note(f"{why}command {command.number} started (pid {command.pid}){where}")
        return command

    def rerun(self, cwd: Path | None = None) -> Command:
        self.result.reruns += 1
        self.round_reruns += 1
        return self.launch(cwd, why=f"rerun {self.result.reruns}: ")

    def _note(self, text: str) -> None:
        """Say ``text`` now, or after the line of the fault in progress."""
        if self._held is None:
            self.say(text)
        else:
            self._held.append(text)

    def elsewhere(self) -> Path:
        self._places += 1
        return self.store.folder / f"elsewhere-{self._places}"

    def problem(self, text: str) -> None:
        self.result.problems.append(text)
        self._note(f"PROBLEM: {text}")

    @property
    def home(self) -> Path:
        return self.store.folder / "home"

    # --- the campaign ------------------------------------------------------------------------

    def run(self) -> CampaignResult:
        while True:
            self.experiment = f"soak-{len(self.result.experiments) + 1}"
            self.result.experiments.append(self.experiment)
            self.say(f"round {len(self.result.experiments)}: ablation '{self.experiment}'")
            self.commands = []
            self.round_reruns = 0
            started, faults = time.monotonic(), self.faults_left
            self.launch()
            self._drive_round()
            if faults == self.faults_left and not self.result.problems:
                self.clean_seconds = time.monotonic() - started
            if self.faults_left == 0 or self.result.problems:
                return self.result

    def _drive_round(self) -> None:
        """Inject faults into the round's commands and rerun them until one exits 0 (which
        it does only once every run has finished)."""
        limit = RERUNS_PER_FAULT * self.total + 5
        while True:
            complete = any(command.exit_code == 0 for command in self.commands)
            if self.live():
                if self.faults_left and not complete:
                    scale = self.clean_seconds or self.reference_seconds
                    delay = float(self.rng.uniform(*FAULT_DELAY)) * scale
                    if not self._wait_for_all(delay):
                        self._inject()
                elif not self._wait_for_all(HANG_FACTOR * self.reference_seconds):
                    numbers = [command.number for command in self.live()]
                    self.problem(
                        f"commands {numbers} still running after {HANG_FACTOR:.0f}x the "
                        "uninterrupted ablation's duration"
                    )
                    for command in self.live():
                        command.kill_all()
                continue
            if complete:
                self.say(f"ablation '{self.experiment}' complete")
                return
            if self.round_reruns >= limit:
                self.problem(f"ablation '{self.experiment}' not complete after {limit} reruns")
                return
            last = self.commands[-1]
            self.say(f"command {last.number} ended (exit {last.exit_code}), ablation not complete")
            self.rerun()

    def _wait_for_all(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for every live command to end; True if they all did."""
        deadline = time.monotonic() + seconds
        while self.live():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
        return True

    def _inject(self) -> None:
        """Draw a kind of fault that applies now and inject it (none when the commands
        ended meanwhile: while one runs, killing it always applies)."""
        kinds = kinds_for(self.store)
        while kinds:
            kind = kinds.pop(int(self.rng.integers(len(kinds))))
            self._held = []
            try:
                done = FAULTS[kind](self)
            finally:
                held, self._held = self._held, None
            if done is not None:
                self.faults_left -= 1
                self.result.faults.append(kind)
                number = self.total - self.faults_left
                self.say(f"fault {number}/{self.total} [{kind}]: {done}")
            for text in held:
                self.say(text)
            if done is not None:
                return
