"""What an ablation is: tasks x arms x seeds, with a preset, a budget and config overrides.

Arms are named bundles of config values (the built-in ones below, or a user's, see
:mod:`ablations.plan.arms`); seeds ``0..n-1`` are shared by every arm, so arms
start from the same initial weights and prefill. They are *not* paired: the random streams
diverge from the first updates on (separate draws twice the replay batches), and the
statistics treat the arms as independent samples.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ablations.plan.arms import describe
from agent.config import Config, ConfigError, flatten, make_config

SEED_LIMIT = 1000
"""The most seeds per arm an ablation may ask for (fixed or adaptive): beyond it a typo, not a
plan (a million runs would exhaust memory before the first trained)."""

ARMS: dict[str, dict[str, Any]] = {
    # The seed plan's two arms: both imagine from the last posterior step only.
    "separate": {"train.schedule": "separate", "train.starts": "last"},
    "coupled": {"train.schedule": "coupled", "train.starts": "last"},
    # Every posterior step as a start, as the official DreamerV3 does.
    "separate_all": {"train.schedule": "separate", "train.starts": "all"},
    "coupled_all": {"train.schedule": "coupled", "train.starts": "all"},
    # The other published orders: official DreamerV3's one joint step, and STORM-like
    # interleaving from fresh starts (interleaving without reusing the WM's batch).
    "joint": {"train.schedule": "joint", "train.starts": "last"},
    "joint_all": {"train.schedule": "joint", "train.starts": "all"},
    "interleaved": {"train.schedule": "interleaved", "train.starts": "last"},
    "interleaved_all": {"train.schedule": "interleaved", "train.starts": "all"},
    # Controls: coupled's data, but imagination starts re-filtered through the updated WM,
    # as fresh as separate's; separates the staleness effect from the data-reuse effect.
    "coupled_refiltered": {
        "train.schedule": "coupled",
        "train.starts": "last",
        "train.refilter_starts": True,
    },
    "coupled_refiltered_all": {
        "train.schedule": "coupled",
        "train.starts": "all",
        "train.refilter_starts": True,
    },
}


@dataclass(frozen=True)
class RunSpec:
    """One (task, arm, seed) run of an ablation; ``env`` is the task."""

    ablation: str
    env: str
    preset: str
    arm: str
    seed: int
    overrides: tuple[tuple[str, Any], ...] = ()
    arm_overrides: tuple[tuple[str, Any], ...] | None = None
    """The arm's config values; None: the built-in arm of that name."""
    multi_task: bool = False
    """Part of an ablation over several tasks: the run's name starts with its task."""

    @property
    def name(self) -> str:
        arm_seed = f"{self.arm}-seed{self.seed}"
        return f"{self.env}/{arm_seed}" if self.multi_task else arm_seed

    @property
    def arm_values(self) -> dict[str, Any]:
        if self.arm_overrides is None:
            return dict(ARMS[self.arm])
        return dict(self.arm_overrides)

    def config(self) -> Config:
        values = {**dict(self.overrides), **self.arm_values, "train.seed": self.seed}
        return make_config(self.env, self.preset, values)

    def config_hash(self) -> str:
        """Digest of the full config (device excluded): a rerun must train the same thing."""
        params = {k: v for k, v in flatten(self.config()).items() if k != "train.device"}
        return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[
            :16
        ]

    def description(self) -> str:
        train = self.config().train
        refilter = ", starts re-filtered" if train.refilter_starts else ""
        return (
            f"arm {self.arm} ({describe(self.arm_values)}): {train.schedule} schedule, "
            f"imagination starts={train.starts}{refilter}, seed {self.seed}, "
            f"{self.env} with preset {self.preset} (ablation '{self.ablation}')"
        )


def seed_batch_groups(runs: Sequence[RunSpec], size: int) -> list[list[int]]:
    """Indices of ``runs`` in groups of at most ``size`` that may train as one seed batch:
    runs whose configs differ only in the seed (same task, preset, arm and values). Groups
    keep the order of their first run; within a group, the runs' order."""
    if size < 1:
        raise ValueError(f"a seed batch has at least one run, got {size}")
    by_config: dict[tuple, list[int]] = {}
    for index, run in enumerate(runs):
        key = (run.env, run.preset, run.arm, run.overrides, run.arm_overrides)
        by_config.setdefault(key, []).append(index)
    groups = [same[i : i + size] for same in by_config.values() for i in range(0, len(same), size)]
    return sorted(groups, key=lambda group: group[0])


@dataclass
class AblationSpec:
    """An ablation: every task x arm in ``arms`` run with seeds ``0..seeds-1``.

    ``env`` is the one task of a single-task ablation; ``tasks`` (with ``suite``, its name
    when it is one) lists the tasks of a multi-task one, whose ``env`` is then their comma
    list. ``arm_table`` holds each arm's config values (default: the built-in arms);
    ``reference`` is the arm every other is compared with (default: ``separate`` when it
    runs, else the first arm). ``task_overrides`` holds config values of single tasks (a
    study's per-task budget), applied over ``overrides`` and ``steps``; arms' values still
    come last.
    """

    env: str
    seeds: int
    arms: tuple[str, ...] = ("separate", "coupled")
    preset: str = "small"
    steps: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    tasks: tuple[str, ...] = ()
    suite: str = ""
    arm_table: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(ARMS))
    reference: str = ""
    task_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.tasks:
            self.tasks = (self.env,)
        self.env = ",".join(self.tasks)
        if not self.reference:
            first = self.arms[0] if self.arms else ""
            self.reference = "separate" if "separate" in self.arms else first
        if not self.name:
            where = self.suite or "+".join(self.tasks)
            self.name = f"{where}-{self.preset}" + (f"-{self.steps}steps" if self.steps else "")

    @property
    def multi_task(self) -> bool:
        return len(self.tasks) > 1

    def runs(self) -> list[RunSpec]:
        """Every (task, arm, seed) run, seed-major and task-interleaved, so that early
        results already pair up and an interrupted suite covers every task."""
        overrides = dict(self.overrides)
        if self.steps is not None:
            overrides["train.steps"] = self.steps
        frozen = {
            task: tuple(sorted({**overrides, **self.task_overrides.get(task, {})}.items()))
            for task in self.tasks
        }
        return [
            RunSpec(
                self.name,
                task,
                self.preset,
                arm,
                seed,
                frozen[task],
                tuple(self.arm_table[arm].items()) if arm in self.arm_table else None,
                self.multi_task,
            )
            for seed in range(self.seeds)
            for task in self.tasks
            for arm in self.arms
        ]

    def validate(self) -> None:
        """Raise :class:`ConfigError` (one line for the user) before anything starts."""
        if self.seeds <= 0:
            raise ConfigError(f"SEEDS must be a positive number, got {self.seeds}")
        unknown = [arm for arm in self.arms if arm not in self.arm_table]
        if unknown or not self.arms:
            given = ", ".join(unknown) or "(none given)"
            raise ConfigError(f"unknown arm(s) {given}; known arms: {', '.join(self.arm_table)}")
        if len(set(self.arms)) != len(self.arms):
            raise ConfigError(f"arms are listed twice: {', '.join(self.arms)}")
        stray = sorted(set(self.task_overrides) - set(self.tasks))
        if stray:
            raise ConfigError(
                f"settings for task(s) {', '.join(stray)}, which the ablation does not run "
                f"({self.env})"
            )
        if self.reference not in self.arms:
            raise ConfigError(
                f"REFERENCE '{self.reference}' is not an arm of this ablation; "
                f"pick one of: {', '.join(self.arms)}"
            )
        runs = self.runs()[: len(self.arms) * len(self.tasks)]
        for run in runs[:: len(self.arms)]:  # each task with the common overrides alone
            make_config(run.env, run.preset, {**dict(run.overrides), "train.seed": 0})
        for run in runs:
            try:
                run.config()  # raises ConfigError on a bad env, preset, budget or override
            except ConfigError as error:
                where = f"arm {run.arm}" + (f" on {run.env}" if self.multi_task else "")
                raise ConfigError(f"{where}: {error}") from None

    def description(self) -> str:
        on = f"suite {self.suite} ({self.env})" if self.suite else self.env
        return (
            f"DreamerV3 ablation on {on} (preset {self.preset}): arms "
            f"{', '.join(self.arms)} (reference {self.reference}) x seeds 0..{self.seeds - 1}"
        )
