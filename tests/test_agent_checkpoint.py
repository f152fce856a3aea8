"""Resume equals no interruption: a run checkpointed mid-episode and continued in a fresh
trainer logs bitwise the values of the run that never stopped."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from agent import Trainer
from agent.checkpoint import env_state_saved
from agent.logger import MemoryLogger
from tests.conftest import tiny_config

WALL_CLOCK = ("time/", "speed/")
"""Metrics that measure wall-clock time: the only ones a resume may change."""


def _config():
    return tiny_config(
        train__steps=360,
        train__eval_every=96,
        train__eval_episodes=1,
        train__log_every=40,
        train__train_ratio=32,
    )


def _values(logger: MemoryLogger) -> dict[str, list[tuple[int, float]]]:
    return {k: v for k, v in logger.history.items() if not k.startswith(WALL_CLOCK)}


def _mid_episode_and_interval(trainer: Trainer) -> bool:
    """Past the prefill, inside an episode, with updates not yet flushed to the logger."""
    open_episode = trainer._episode is not None and trainer._episode["length"] >= 2
    return trainer.env_steps >= 260 and open_episode and bool(trainer.metrics._rows)


def test_resume_mid_episode_logs_bitwise_what_the_uninterrupted_run_logs(tmp_path: Path) -> None:
    whole_log = MemoryLogger()
    whole = Trainer(_config(), whole_log)
    whole.train()

    first_log = MemoryLogger()
    first = Trainer(_config(), first_log)
    while not _mid_episode_and_interval(first):
        first.train_iteration()
    assert not first.done
    stopped_at = first.env_steps
    path = str(tmp_path / "mid-episode.pt")
    first.save(path)
    assert env_state_saved(first.state_dict())
    del first

    second_log = MemoryLogger()
    second = Trainer(_config(), second_log)
    second.load(path)
    assert second.env_steps == stopped_at and second._episode is not None
    second.train()

    resumed = _values(first_log)
    for name, points in _values(second_log).items():
        resumed.setdefault(name, []).extend(points)
    expected = _values(whole_log)
    assert sorted(resumed) == sorted(expected)
    for name, points in expected.items():
        assert resumed[name] == points, name  # float equality: bitwise, not approximately
    assert any(step > stopped_at for step, _ in expected["episode/return"])
    for module in ("world_model", "actor_critic"):
        reference = getattr(whole, module).state_dict()
        for key, value in getattr(second, module).state_dict().items():
            assert torch.equal(value, reference[key]), f"{module}.{key}"


def test_an_env_that_cannot_be_saved_restarts_its_episode_on_load_and_says_so(
    tmp_path: Path,
) -> None:
    config = tiny_config("atari_pong", train__prefill=16, train__seq_len=8)
    trainer = Trainer(config)
    trainer.collect(5)  # random actions, mid-episode
    path = str(tmp_path / "atari.pt")
    trainer.save(path)
    assert not env_state_saved(trainer.state_dict())  # ALE's emulator does not pickle

    resumed = Trainer(config)
    with pytest.warns(UserWarning, match="its open episode restarts"):
        resumed.load(path)
    assert resumed.env_steps == 5 and resumed._episode is None
    resumed.collect(1)  # a fresh episode from the saved generator's next seed
    assert resumed._episode is not None and resumed._episode["length"] == 1
