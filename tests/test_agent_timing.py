"""Speed counts training time only (collect + updates), and the phases add up to it."""

from __future__ import annotations

import pytest

from agent import Trainer
from agent.logger import MemoryLogger

TRAINING_PHASES = ("collect", "wm", "starts", "refilter", "imagine", "ac", "other")


@pytest.mark.parametrize("schedule", ["separate", "coupled"])
def test_speed_excludes_evaluation_and_phases_add_up(tiny, schedule):
    # Evaluation after every iteration, with many episodes: a speed that counted it would be
    # far below updates / training seconds.
    config = tiny(
        train__steps=264,
        train__log_every=16,
        train__eval_every=16,
        train__eval_episodes=6,
        train__schedule=schedule,
    )
    logger = MemoryLogger()
    trainer = Trainer(config, logger)
    trainer.train()
    history = logger.history

    def series(name: str) -> list[float]:
        return [value for _, value in history[name]]

    total, updates = series("time/total"), series("progress/wm_updates")
    iterations, speed = series("progress/iterations"), series("speed/updates_per_s")
    assert len(total) == 4 and sum(series("time/eval")) > 0
    previous = {"total": 0.0, "updates": 0.0, "iterations": 0.0}
    for index in range(len(total)):
        seconds = total[index] - previous["total"]
        count = iterations[index] - previous["iterations"]
        assert speed[index] == pytest.approx((updates[index] - previous["updates"]) / seconds)
        phases = sum(
            history[f"time/{phase}"][index][1]
            for phase in TRAINING_PHASES
            if f"time/{phase}" in history
        )
        assert phases * count == pytest.approx(seconds, rel=1e-9)
        assert history["time/other"][index][1] >= 0
        previous = {
            "total": total[index],
            "updates": updates[index],
            "iterations": iterations[index],
        }
    # The run's speed (the worker's final/updates_per_s) is the same definition.
    summary = trainer.summary()
    assert summary["wall_seconds"] == pytest.approx(total[-1])
    assert summary["wm_updates"] == updates[-1]
