"""Resume equals no interruption: a run checkpointed mid-episode and continued in a fresh
trainer logs bitwise the values of the run that never stopped, on CartPole (a pickled
gymnasium env) and on Pong (ALE's emulator state, cloned with its random generator)."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from agent import Trainer
from agent.checkpoint import env_state_saved
from agent.config import Config
from agent.envs import make_env
from agent.logger import MemoryLogger
from tests.conftest import tiny_config

WALL_CLOCK = ("time/", "speed/")
"""Metrics that measure wall-clock time: the only ones a resume may change."""

RUN = {
    "train__eval_every": 96,
    "train__eval_episodes": 1,
    "train__log_every": 40,
    "train__train_ratio": 32,
}
"""Both envs: an evaluation, a log flush and a few updates between the stop and the end."""

RESUME_CASES = {
    "cartpole": ({"train__steps": 360}, 260),
    "pendulum": ({"train__steps": 420}, 210),  # 200-step episodes: one ends at 400
    # Pong's episodes run for about a thousand steps at first: a time limit of 100 ends a
    # few of them in the run, one after the stop (the wrapper's step count must survive),
    # each followed by a seeded reset and its no-ops.
    "atari_pong": (
        {"train__steps": 300, "train__prefill": 100, "env__max_episode_steps": 100},
        150,
    ),
}
"""Env preset -> (overrides, the step after which to stop mid-episode)."""


def _config(env: str, **schedule: str) -> Config:
    overrides, _ = RESUME_CASES[env]
    return tiny_config(env, **RUN, **overrides, **schedule)


SCHEDULE_CASES = [
    ("cartpole", {}),
    pytest.param("atari_pong", {}, marks=pytest.mark.slow),
    # The published schedules beyond the seed plan's, over starts and action kinds.
    ("cartpole", {"train__schedule": "joint", "train__starts": "last"}),
    ("pendulum", {"train__schedule": "joint", "train__starts": "all"}),
    ("cartpole", {"train__schedule": "interleaved", "train__starts": "all"}),
    ("pendulum", {"train__schedule": "interleaved", "train__starts": "last"}),
]
"""(env, schedule overrides) of the resume test; ``{}`` is the default schedule."""


def _values(logger: MemoryLogger) -> dict[str, list[tuple[int, float]]]:
    return {k: v for k, v in logger.history.items() if not k.startswith(WALL_CLOCK)}


def _mid_episode_and_interval(trainer: Trainer, after: int) -> bool:
    """Past ``after`` steps, inside an episode, with updates not yet flushed to the logger."""
    open_episode = trainer._episode is not None and trainer._episode["length"] >= 2
    return trainer.env_steps >= after and open_episode and bool(trainer.metrics._rows)


@pytest.mark.parametrize(("env", "schedule"), SCHEDULE_CASES)
def test_resume_mid_episode_logs_bitwise_what_the_uninterrupted_run_logs(
    tmp_path: Path, env: str, schedule: dict[str, str]
) -> None:
    whole_log = MemoryLogger()
    whole = Trainer(_config(env, **schedule), whole_log)
    whole.train()

    first_log = MemoryLogger()
    first = Trainer(_config(env, **schedule), first_log)
    while not _mid_episode_and_interval(first, RESUME_CASES[env][1]):
        first.train_iteration()
    assert not first.done
    stopped_at = first.env_steps
    path = str(tmp_path / "mid-episode.pt")
    first.save(path)
    assert env_state_saved(first.state_dict())
    del first

    second_log = MemoryLogger()
    second = Trainer(_config(env, **schedule), second_log)
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
    assert any(step > stopped_at for step, _ in expected["eval/return"])
    for module in ("world_model", "actor_critic"):
        reference = getattr(whole, module).state_dict()
        for key, value in getattr(second, module).state_dict().items():
            assert torch.equal(value, reference[key]), f"{module}.{key}"


def _step_both(envs: list[Any], actions: np.ndarray) -> int:
    """Step every env with the same actions (a seeded reset where an episode ends); returns
    the episodes ended, asserting that every env saw the same observations, rewards and
    ends."""
    ended = 0
    for action in actions:
        steps = [env.step(int(action)) for env in envs]
        obs, reward, terminated, truncated, _ = steps[0]
        for other in steps[1:]:
            assert np.array_equal(other[0]["image"], obs["image"])
            assert other[1:4] == (reward, terminated, truncated)
        if terminated or truncated:
            ended += 1
            seed = 1000 + ended
            first, *rest = [env.reset(seed=seed)[0]["image"] for env in envs]
            assert all(np.array_equal(image, first) for image in rest)
    return ended


def _generator_states(env: Any) -> list[dict]:
    """The states of the no-op generator and of ALE's gymnasium env's generator."""
    generators = (env.unwrapped.np_random, env.unwrapped._env.unwrapped.np_random)
    return [generator.bit_generator.state for generator in generators]


def test_an_atari_env_pickled_mid_episode_steps_on_as_the_original() -> None:
    config = tiny_config("atari_pong").env
    original = make_env(config)
    original.reset(seed=7)
    actions = np.random.default_rng(0).integers(0, original.action_space.n, 2500)
    _step_both([original], actions[:300])
    copy = pickle.loads(pickle.dumps(original))
    assert copy is not original and copy._elapsed_steps == original._elapsed_steps == 300

    # The copy's emulator equals the original's, its random generator included: ALE draws
    # from it every frame, so a copy without it would differ here though not in the frames
    # (the Atari100k protocol has no sticky actions). So do the no-op generator and ALE's
    # env's own.
    ale, copied = original.unwrapped._ale, copy.unwrapped._ale
    assert ale.cloneState(include_rng=True) == copied.cloneState(include_rng=True)
    assert _generator_states(copy) == _generator_states(original)
    assert _step_both([original, copy], actions[300:]) >= 1  # past an episode's end and reset
    assert ale.cloneState(include_rng=True) == copied.cloneState(include_rng=True)
    original.close()
    copy.close()


class UnpicklableLock:
    """What makes a real env impossible to pickle, as a C++ handle or a lock does."""

    def __init__(self) -> None:
        self.lock = threading.Lock()


def test_an_env_that_cannot_be_saved_restarts_its_episode_on_load_and_says_so(
    tmp_path: Path,
) -> None:
    config = tiny_config("cartpole", train__prefill=16, train__seq_len=8)
    trainer = Trainer(config)
    trainer.env.unwrapped.handle = UnpicklableLock()
    trainer.collect(5)  # random actions, mid-episode
    path = str(tmp_path / "unpicklable.pt")
    trainer.save(path)
    assert not env_state_saved(trainer.state_dict())

    resumed = Trainer(config)
    with pytest.warns(UserWarning, match="its open episode restarts"):
        resumed.load(path)
    assert resumed.env_steps == 5 and resumed._episode is None
    resumed.collect(1)  # a fresh episode from the saved generator's next seed
    assert resumed._episode is not None and resumed._episode["length"] == 1
