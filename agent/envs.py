"""Environments behind one small interface: dict observations, discrete actions.

Every env returned by :func:`make_env` speaks gymnasium's API with
``obs = {"image": (64, 64, 3) uint8}`` (atari) or ``{"vector": (N,) float32}`` (gym), an
integer action in ``range(num_actions)``, and keeps termination (the MDP ended: continue 0)
apart from truncation (a time limit: the value still bootstraps).
"""

from __future__ import annotations

from typing import Any

import cv2
import gymnasium as gym
import numpy as np

from agent.config import EnvConfig


class AtariEnv(gym.Env):
    """ALE v5 with the DreamerV3 Atari100k protocol.

    Action repeat with max-pooling of the last two frames, no sticky actions, up to ``noops``
    no-ops after reset (drawn from the env's seeded generator), the game's minimal action
    set, RGB frames resized to ``size x size`` with area interpolation.
    """

    def __init__(self, config: EnvConfig):
        import ale_py

        gym.register_envs(ale_py)
        self._env = gym.make(
            config.id,
            obs_type="rgb",
            frameskip=1,
            repeat_action_probability=0.0,
            full_action_space=False,
        )
        self._ale = self._env.unwrapped.ale
        self._repeat = config.action_repeat
        self._noops = config.noops
        self._size = config.size
        self.action_space = self._env.action_space
        self.observation_space = gym.spaces.Dict(
            {"image": gym.spaces.Box(0, 255, (config.size, config.size, 3), np.uint8)}
        )
        self._buffers = [np.zeros((210, 160, 3), np.uint8) for _ in range(2)]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        frame, info = self._env.reset(seed=seed)
        for _ in range(int(self.np_random.integers(0, self._noops + 1))):
            frame, _, terminated, truncated, info = self._env.step(0)
            if terminated or truncated:
                frame, info = self._env.reset()
        return self._observe(frame), info

    def step(self, action: int):
        total = 0.0
        terminated = truncated = False
        info: dict[str, Any] = {}
        frames = []
        for _ in range(self._repeat):
            frame, reward, terminated, truncated, info = self._env.step(int(action))
            total += float(reward)
            frames.append(frame)
            if terminated or truncated:
                break
        pooled = np.maximum(frames[-1], frames[-2]) if len(frames) > 1 else frames[-1]
        return self._observe(pooled), total, terminated, truncated, info

    def _observe(self, frame: np.ndarray) -> dict[str, np.ndarray]:
        image = cv2.resize(frame, (self._size, self._size), interpolation=cv2.INTER_AREA)
        return {"image": image}

    def close(self) -> None:
        self._env.close()


class VectorEnv(gym.ObservationWrapper):
    """A gymnasium env with a flat Box observation, as ``{"vector": float32}``."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        shape = env.observation_space.shape
        self.observation_space = gym.spaces.Dict(
            {"vector": gym.spaces.Box(-np.inf, np.inf, shape, np.float32)}
        )

    def observation(self, observation: np.ndarray) -> dict[str, np.ndarray]:
        return {"vector": np.asarray(observation, np.float32)}


def quiet_ale_banner() -> None:
    """Keep ALE from printing its banner (and other info lines) when this process makes
    its first Atari env: for processes whose parent already showed it."""
    import ale_py

    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)


def make_env(config: EnvConfig) -> gym.Env:
    """Make the env described by ``config`` (unseeded: seed it with ``reset(seed=...)``)."""
    if config.suite == "atari":
        env: gym.Env = AtariEnv(config)
    else:
        env = VectorEnv(gym.make(config.id))
    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise ValueError(f"{config.id}: only discrete action spaces are supported")
    if config.max_episode_steps:
        env = gym.wrappers.TimeLimit(env, config.max_episode_steps)
    return env


def observation_shapes(env: gym.Env) -> dict[str, tuple[int, ...]]:
    """``{"image": (64, 64, 3)}`` or ``{"vector": (N,)}`` for an env from :func:`make_env`."""
    return {key: space.shape for key, space in env.observation_space.spaces.items()}


def random_policy_return(config: EnvConfig, episodes: int, seed: int) -> float:
    """Mean return of uniform-random actions over ``episodes`` episodes: the floor that
    any claim of learning is measured against."""
    env = make_env(config)
    rng = np.random.default_rng(seed)
    returns = []
    for _ in range(episodes):
        env.reset(seed=int(rng.integers(2**31)))
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))
