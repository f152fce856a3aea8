"""Shared fixtures for the agent tests: tiny CPU configs and trainers on real envs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from agent import Trainer, make_config
from agent.config import Config

# Two shared cores: one intra-op thread avoids oversubscription on these tiny tensors.
torch.set_num_threads(1)

TINY: dict[str, Any] = {
    "train.steps": 600,
    "train.prefill": 200,
    "train.eval_every": 0,
    "train.train_ratio": 64,
    "train.device": "cpu",
}
"""Debug-preset overrides for a run of seconds on CPU (8 updates per 16-step iteration)."""


def tiny_config(env: str = "cartpole", **overrides: Any) -> Config:
    """The debug preset with :data:`TINY`; ``train__seed=1`` style keys override further."""
    values = dict(TINY)
    values.update({key.replace("__", "."): value for key, value in overrides.items()})
    return make_config(env, "debug", values)


@pytest.fixture(scope="session")
def tiny() -> Callable[..., Config]:
    """:func:`tiny_config` as a fixture (for module-scoped fixtures)."""
    return tiny_config


@pytest.fixture
def make_trainer() -> Callable[..., Trainer]:
    """Factory: ``make_trainer(env="cartpole", prefill=True, **overrides)``.

    With ``prefill`` the replay is filled with ``train.prefill`` random-action steps, so
    updates can be run straight away.
    """

    def build(env: str = "cartpole", prefill: bool = True, **overrides: Any) -> Trainer:
        trainer = Trainer(tiny_config(env, **overrides))
        if prefill:
            trainer.collect(trainer.config.train.prefill)
        return trainer

    return build
