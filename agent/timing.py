"""Timing one training iteration's updates on a trainer whose replay is already filled: what
the duration estimate measures before an ablation and the speed benchmark repeats."""

from __future__ import annotations

import time

import torch

from agent.config import Config
from agent.trainer import SCHEDULES, Trainer

PHASES = ("wm", "starts", "imagine", "ac")
"""The phases of one iteration that the trainer's timer names."""


def filled_trainer(config: Config) -> Trainer:
    """A trainer whose replay holds ``prefill`` real env steps of random actions."""
    trainer = Trainer(config)
    trainer.collect(config.train.prefill)
    return trainer


def time_iteration(trainer: Trainer, num_updates: int) -> dict[str, float]:
    """Seconds per phase (and ``total``) of one iteration's updates under its schedule."""
    trainer.timer.flush()
    start = time.perf_counter()
    SCHEDULES[trainer.config.train.schedule](trainer, num_updates)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    total = time.perf_counter() - start
    seconds = trainer.timer.flush()
    trainer.metrics.flush()  # keep the accumulated metrics from growing
    return {**{p: seconds.get(p, 0.0) for p in PHASES}, "total": total}
