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

WHOLE_SUITE_MODULES = frozenset(
    {
        # Runs, commands and servers end to end: the runner's integrity and scale-out.
        "test_ablations_adaptive",
        "test_ablations_checkpoints",
        "test_ablations_creation",
        "test_ablations_faults",
        "test_ablations_suite",
        "test_gpu_share",
        "test_progress",
        "test_ray_launcher",
        "test_servers",
        "test_soak",
        "test_ui",
        # Whole training runs: learning, resume, timing, the DMC tasks, benchmarks.
        "test_agent_checkpoint",
        "test_agent_dmc",
        "test_agent_learning",
        "test_agent_timing",
        "test_agent_training",
        "test_bench",
        "test_bench_learn",
        "test_bench_throughput",
        # PDFs built from published and merged folders, page by page.
        "test_merge",
        "test_publish",
        "test_report_audit",
        "test_report_e2e",
        "test_report_factorial",
        "test_report_merged",
        "test_results_e2e",
    }
)
"""Test modules of the whole suite only (``make test-all``, what CI runs), left out of the
fast tier (``make test``: unit tests and one small end-to-end ablation, a few minutes on two
cores). Marked ``slow`` here, in one place, as tests marked one by one are."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.module is not None and item.module.__name__.split(".")[-1] in WHOLE_SUITE_MODULES:
            item.add_marker(pytest.mark.slow)


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
