"""How long an ablation will take, before it starts: a few timed updates per arm.

The estimate counts gradient updates only (collection and evaluation are small beside
them at the paper's train ratios) and assumes the machine runs ``parallel`` runs at the
speed it runs one; it is meant to tell minutes from days, not to the minute.
"""

from __future__ import annotations

from collections.abc import Sequence

from ablations.spec import RunSpec
from agent.bench import filled_trainer, time_iteration


def seconds_per_update(run: RunSpec) -> float:
    """Seconds per update of ``run``'s config: best of two pairs, after one warm-up update."""
    config = run.config()
    config.train.prefill = max(config.train.seq_len, 64)  # enough replay for one batch
    trainer = filled_trainer(config)
    time_iteration(trainer, 1)
    return min(time_iteration(trainer, 2)["total"] / 2 for _ in range(2))


def estimate_seconds(runs: Sequence[RunSpec], parallel: int) -> float:
    """Rough wall-clock for ``runs`` with ``parallel`` of them at a time (one timing per arm)."""
    per_update: dict[str, float] = {}
    total = 0.0
    for run in runs:
        if run.arm not in per_update:
            per_update[run.arm] = seconds_per_update(run)
        train = run.config().train
        updates = train.steps * train.updates_per_iteration() / train.collect_every
        total += per_update[run.arm] * updates
    return total / max(parallel, 1)


def format_duration(seconds: float) -> str:
    """``'about 40 min'``, ``'about 3.5 h'``, ``'about 2.1 days'``."""
    if seconds < 3600:
        return f"about {max(seconds / 60, 1):.0f} min"
    if seconds < 2 * 86400:
        return f"about {seconds / 3600:.1f} h"
    return f"about {seconds / 86400:.1f} days"
