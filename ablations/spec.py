"""What an ablation is: env x arms x seeds, with a preset, a budget and config overrides.

Arms are named bundles of config values; seeds ``0..n-1`` are shared by every arm, so arms
start from the same initial weights and prefill. They are *not* paired: the random streams
diverge from the first updates on (separate draws twice the replay batches), and the
statistics treat the arms as independent samples.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

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
    """One (arm, seed) run of an ablation."""

    ablation: str
    env: str
    preset: str
    arm: str
    seed: int
    overrides: tuple[tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        return f"{self.arm}-seed{self.seed}"

    def config(self) -> Config:
        values = {**dict(self.overrides), **ARMS[self.arm], "train.seed": self.seed}
        return make_config(self.env, self.preset, values)

    def config_hash(self) -> str:
        """Digest of the full config (device excluded): a rerun must train the same thing."""
        params = {k: v for k, v in flatten(self.config()).items() if k != "train.device"}
        return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[
            :16
        ]

    def description(self) -> str:
        schedule, starts = ARMS[self.arm]["train.schedule"], ARMS[self.arm]["train.starts"]
        refilter = ", starts re-filtered" if ARMS[self.arm].get("train.refilter_starts") else ""
        return (
            f"{schedule} schedule, imagination starts={starts}{refilter}, seed {self.seed}, "
            f"{self.env} with preset {self.preset} (ablation '{self.ablation}')"
        )


@dataclass
class AblationSpec:
    """An ablation: every arm in ``arms`` run with seeds ``0..seeds-1``."""

    env: str
    seeds: int
    arms: tuple[str, ...] = ("separate", "coupled")
    preset: str = "small"
    steps: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            self.name = f"{self.env}-{self.preset}" + (f"-{self.steps}steps" if self.steps else "")

    def runs(self) -> list[RunSpec]:
        """Every (arm, seed) run, seed-major so that early results already pair up."""
        overrides = dict(self.overrides)
        if self.steps is not None:
            overrides["train.steps"] = self.steps
        frozen = tuple(sorted(overrides.items()))
        return [
            RunSpec(self.name, self.env, self.preset, arm, seed, frozen)
            for seed in range(self.seeds)
            for arm in self.arms
        ]

    def validate(self) -> None:
        """Raise :class:`ConfigError` (one line for the user) before anything starts."""
        if self.seeds <= 0:
            raise ConfigError(f"SEEDS must be a positive number, got {self.seeds}")
        unknown = [arm for arm in self.arms if arm not in ARMS]
        if unknown or not self.arms:
            given = ", ".join(unknown) or "(none given)"
            raise ConfigError(f"unknown arm(s) {given}; known arms: {', '.join(ARMS)}")
        if len(set(self.arms)) != len(self.arms):
            raise ConfigError(f"arms are listed twice: {', '.join(self.arms)}")
        for run in self.runs()[: len(self.arms)]:
            run.config()  # raises ConfigError on a bad env, preset, budget or override

    def description(self) -> str:
        return (
            f"DreamerV3 schedule ablation on {self.env} (preset {self.preset}): arms "
            f"{', '.join(self.arms)} x seeds 0..{self.seeds - 1}"
        )
