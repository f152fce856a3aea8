"""The soak: a seeded, bounded fault campaign against the ablation runner (a benchmark, not
a test): ``python -m benchmarks.soak [--faults 30] [--seed 0]``, or ``make soak``.

A tiny ablation (CartPole and Pendulum x separate, coupled x 2 seeds at the debug preset,
300 steps) runs once uninterrupted, as the reference, then again under faults, on a SQLite
store and on a real ``mlflow server`` the soak starts on 127.0.0.1. The faults (drawn from
one generator seeded with ``--seed``; see :mod:`benchmarks.soak.faults`) are split between
the stores, the SQLite store taking the odd one. After each fault the command is rerun until
the ablation completes; at the end every ablation is checked against its store's reference
(:mod:`benchmarks.soak.check`). The last line is the tally over both stores:

    soak: F faults (K kinds), R reruns, L runs lost, D steps duplicated, M steps missing,
    E runs differ from reference

(one line), preceded by one line per store. The exit code is 0 only when L, D, M and E are all 0 and
nothing else went wrong (listed before the store's line); the work folder (stores, every
command's log) is then removed, else kept and named.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from agent.cli import ArgumentParser, line_buffered_stdout
from agent.config import ConfigError
from analysis.load import load_ablation
from benchmarks.soak.campaign import Campaign, CampaignResult
from benchmarks.soak.check import Verdict, check_ablation
from benchmarks.soak.commands import Command, planned_runs
from benchmarks.soak.stores import SoakStore, make_stores

REFERENCE = "soak-reference"
FAULT_LIMIT = 1000
REFERENCE_DEADLINE_S = 3600.0
"""How long the uninterrupted ablation may take before the soak gives up on the store."""


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m benchmarks.soak",
        description="A seeded fault campaign against the ablation runner, on SQLite and on "
        "an MLflow server; the tally of lost runs, duplicated and missing steps, and runs "
        "that differ from an uninterrupted reference.",
    )
    parser.add_argument("--faults", default="30", help="faults over both stores (default 30)")
    parser.add_argument("--seed", default="0", help="seed of the faults' moments and kinds")
    parser.add_argument(
        "--seed-batch", default="1", help="the ablation's SEED_BATCH: 2 trains its seeds as batches"
    )
    return parser


def _whole(name: str, value: str, most: int | None = None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got '{value}'") from None
    if number < 0 or (most is not None and number > most):
        bound = f"between 0 and {most}" if most is not None else "0 or more"
        raise ConfigError(f"{name} must be {bound}, got {number}")
    return number


class Clock:
    """Progress lines stamped with the soak's elapsed time."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    @property
    def minutes(self) -> float:
        return (time.monotonic() - self.start) / 60

    def say(self, store: str, text: str) -> None:
        seconds = time.monotonic() - self.start
        print(f"[{seconds / 60:5.1f} min] {store}: {text}", flush=True)


def tally_line(label: str, faults: list[str], reruns: int, verdict: Verdict) -> str:
    """``<label>: F faults (K kinds), R reruns, L runs lost, D steps duplicated, M steps
    missing, E runs differ from reference``."""
    return (
        f"{label}: {len(faults)} faults ({len(set(faults))} kinds), {reruns} reruns, "
        f"{verdict.lost} runs lost, {verdict.duplicated} steps duplicated, "
        f"{verdict.missing} steps missing, {verdict.differ} runs differ from reference"
    )


def soak_store(
    store: SoakStore, faults: int, rng: np.random.Generator, clock: Clock, seed_batch: int = 1
) -> tuple[CampaignResult, Verdict]:
    """The reference, the campaign and the verdict on one store (read while its server,
    if it has one, still runs)."""

    def say(text: str) -> None:
        clock.say(store.name, text)

    verdict = Verdict()
    result = CampaignResult()
    store.open()
    home, logs = store.folder / "home", store.folder / "logs"
    reference = Command(REFERENCE, home, store.uri, logs, seed_batch=seed_batch)
    campaign = Campaign(store, rng, faults, 0.0, say, seed_batch)
    try:
        say(f"store {store.uri}; the reference ablation '{REFERENCE}', uninterrupted")
        started = time.monotonic()
        code = reference.start().wait(REFERENCE_DEADLINE_S)
        if code != 0:
            verdict.problems.append(f"the reference ablation ended with {code}: {reference.log}")
            return result, verdict
        campaign.reference_seconds = time.monotonic() - started
        say(f"reference complete in {campaign.reference_seconds / 60:.1f} min")
        result = campaign.run()
        planned = planned_runs()
        reference_data = load_ablation(REFERENCE, store.uri)
        for experiment in result.experiments:
            say(f"checking '{experiment}' against the reference")
            verdict.add(check_ablation(store.uri, experiment, reference_data, planned))
    finally:
        for command in [reference, *campaign.commands]:
            if command.running():
                command.kill_all()
        store.close()
    verdict.problems = result.problems + verdict.problems
    return result, verdict


def main(argv: list[str] | None = None) -> int:
    """Run the soak; 0 when the tally is all zeros and nothing else went wrong."""
    line_buffered_stdout()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        faults = _whole("SOAK_FAULTS", args.faults, FAULT_LIMIT)
        seed = _whole("SOAK_SEED", args.seed)
        seed_batch = _whole("SOAK_SEED_BATCH", args.seed_batch)
        if seed_batch < 1:
            raise ConfigError(f"SOAK_SEED_BATCH must be at least 1, got {seed_batch}")
    except ConfigError as error:
        parser.error(str(error))
    rng = np.random.default_rng(seed)
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    stores = make_stores(work)
    shares = [faults - faults // 2, faults // 2]
    clock = Clock()
    split = ", ".join(f"{store.name} {share}" for store, share in zip(stores, shares, strict=True))
    batched = f", seeds batched by {seed_batch}" if seed_batch > 1 else ""
    print(f"soak: seed {seed}, {faults} faults ({split}){batched}; work folder {work}", flush=True)
    applied: list[str] = []
    reruns = 0
    total = Verdict()
    for store, share in zip(stores, shares, strict=True):
        try:
            result, verdict = soak_store(store, share, rng, clock, seed_batch)
        except KeyboardInterrupt:  # its commands and server are stopped already
            print(f"soak: stopped after {clock.minutes:.1f} min; work folder kept: {work}")
            return 130
        applied += result.faults
        reruns += result.reruns
        total.add(verdict)
        for problem in verdict.problems:
            print(f"{store.name}: problem: {problem}")
        print(tally_line(store.name, result.faults, result.reruns, verdict), flush=True)
    if total.clean:
        shutil.rmtree(work, ignore_errors=True)
        kept = "work folder removed"
    else:
        kept = f"work folder kept: {work}"
    print(f"soak: {clock.minutes:.1f} min, seed {seed}; {kept}")
    print(tally_line("soak", applied, reruns, total), flush=True)
    return 0 if total.clean else 1


if __name__ == "__main__":
    sys.exit(main())
