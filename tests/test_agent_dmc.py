"""The DeepMind Control Suite through dm_control: presets, the env wrapper against the raw
suite, bad task names, rendering, and a few training steps on a proprio task."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from agent import ConfigError, Trainer, make_config
from agent.envs import make_env
from agent.logger import MemoryLogger
from agent.presets import DMC_TASKS, ENV_PRESETS
from tests.conftest import tiny_config
from tests.test_agent_training import ROOT

os.environ.setdefault("MUJOCO_GL", "egl")  # before dm_control loads its renderer
suite = pytest.importorskip("dm_control.suite")


def test_every_named_task_exists_in_dm_control():
    assert set(DMC_TASKS.values()) <= set(suite.ALL_TASKS)
    for task in ("cartpole_balance", "cartpole_swingup", "walker_walk", "cheetah_run"):
        assert f"dmc_{task}" in ENV_PRESETS and f"dmc_vision_{task}" in ENV_PRESETS
    assert "dmc_reacher_easy" in ENV_PRESETS


def test_dmc_presets_carry_the_paper_settings():
    config = make_config("dmc_walker_walk", "S")
    assert config.env.suite == "dmc" and config.env.id == "walker/walk"
    assert config.env.actions == "continuous" and not config.env.vision
    assert config.env.action_repeat == 2 and config.train.train_ratio == 512
    assert config.train.steps * config.env.action_repeat == 500_000  # env steps
    vision = make_config("dmc_vision_walker_walk", "S")
    assert vision.env.vision and vision.train.steps * vision.env.action_repeat == 1_000_000


def test_unknown_dmc_task_lists_the_known_ones():
    with pytest.raises(ConfigError) as error:
        make_config("dmc_walker_fly", "debug")
    message = str(error.value)
    assert "'walker_fly'" in message and "\n" not in message
    assert all(task in message for task in DMC_TASKS)
    with pytest.raises(ConfigError, match="unknown DMC domain or task 'cartpole_nope'"):
        make_config("dmc_vision_cartpole_nope", "debug")


def test_proprio_env_matches_the_raw_suite_with_action_repeat():
    env = make_env(make_config("dmc_cartpole_swingup", "debug").env)
    raw = suite.load("cartpole", "swingup", task_kwargs={"random": 7})
    obs, _ = env.reset(seed=7)
    first = raw.reset()
    expected = np.concatenate([np.ravel(v) for v in first.observation.values()])
    np.testing.assert_allclose(obs["vector"], expected.astype(np.float32))
    assert env.observation_space["vector"].shape == expected.shape
    assert env.action_space.shape == (1,)
    np.testing.assert_array_equal(env.action_space.low, [-1.0])

    action = np.array([0.3], np.float32)
    length, done = 0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(action)
        raw_reward = sum(raw.step(action).reward for _ in range(2))  # action repeat 2
        assert reward == pytest.approx(raw_reward)
        length += 1
        done = terminated or truncated
    assert length == 500 and truncated and not terminated  # 1000 env steps: a time limit
    assert raw.step(action).first()  # the raw episode ended at the same step


def test_vision_env_renders_64x64_frames():
    env = make_env(make_config("dmc_vision_cartpole_balance", "debug").env)
    obs, _ = env.reset(seed=0)
    assert obs["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8
    assert obs["image"].std() > 0  # a picture, not a blank frame
    moved, *_ = env.step(np.array([1.0], np.float32))
    assert moved["image"].shape == (64, 64, 3)


def test_missing_rendering_backend_names_the_package():
    # OSMesa's library is not installed on every machine: ask for a backend name MuJoCo
    # has no library for to get the failure everywhere.
    result = subprocess.run(
        [sys.executable, "-m", "agent.train", "--env", "dmc_vision_cartpole_balance"],
        cwd=ROOT,
        env={**os.environ, "MUJOCO_GL": "nonexistent"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "MUJOCO_GL=nonexistent" in line and "libosmesa6" in line


def test_a_dmc_proprio_preset_trains_a_few_steps():
    logger = MemoryLogger()
    config = tiny_config("dmc_cartpole_balance", train__steps=232, train__prefill=200)
    summary = Trainer(config, logger).train()
    assert summary["env_steps"] == 232 and summary["wm_updates"] == summary["ac_updates"] > 0
    assert "loss/actor" in logger.history and "loss/wm" in logger.history
    for name, values in logger.history.items():
        assert all(math.isfinite(v) for _, v in values), name


def test_a_dmc_vision_preset_trains_a_few_steps():
    # The image path (CNN encoder and decoder) with continuous actions.
    config = tiny_config("dmc_vision_cartpole_balance", train__steps=64, train__prefill=48)
    logger = MemoryLogger()
    trainer = Trainer(config, logger)
    assert trainer.obs_key == "image" and trainer.actor_critic.gradient.through_dynamics
    summary = trainer.train()
    assert summary["wm_updates"] == summary["ac_updates"] == 8
    assert "loss/decoder" in logger.history and "loss/actor" in logger.history
    for name, values in logger.history.items():
        assert all(math.isfinite(v) for _, v in values), name
