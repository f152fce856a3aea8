"""Environments behind one small interface: dict observations, discrete or continuous actions.

Every env returned by :func:`make_env` speaks gymnasium's API with
``obs = {"image": (64, 64, 3) uint8}`` (atari, DMC vision) or ``{"vector": (N,) float32}``
(gym, DMC proprio), and keeps termination (the MDP ended: continue 0) apart from truncation
(a time limit: the value still bootstraps). Its action space is a ``Discrete`` (an integer
in ``range(n)``) or a bounded 1-D ``Box``; :func:`action_space` wraps either in the one
interface the agent uses (:class:`DiscreteActions`, :class:`ContinuousActions`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any, Protocol

import cv2
import gymnasium as gym
import numpy as np

from agent.config import ConfigError, EnvConfig


class AtariEnv(gym.Env):
    """ALE v5 with the DreamerV3 Atari100k protocol.

    Action repeat with max-pooling of the last two frames, no sticky actions, up to ``noops``
    no-ops after reset (drawn from the env's seeded generator), the game's minimal action
    set, RGB frames resized to ``size x size`` with area interpolation.

    It pickles mid-episode, though ALE's emulator is a C++ object: see :meth:`__getstate__`.
    The max-pooling keeps no frames between steps (both frames come from the same step), so
    the emulator and the two generators are all the state an episode has here; the time
    limit counts its steps in gymnasium's ``TimeLimit`` wrapper, which pickles as it is.
    """

    def __init__(self, config: EnvConfig):
        import ale_py

        gym.register_envs(ale_py)
        self._config = config
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

    def __getstate__(self) -> dict[str, Any]:
        """What a pickle holds: the config to rebuild the env from, the emulator's full
        state (``cloneState(include_rng=True)``: RAM, CPU, TIA, frame counters and ALE's own
        random generator, serialised to bytes), this wrapper's no-op generator and the ALE
        env's generator. Unpickled, the env steps on bitwise as the original would."""
        game = self._env.unwrapped
        return {
            "config": self._config,
            "ale": self._ale.cloneState(include_rng=True).serialize(),
            "np_random": self._np_random,
            "np_random_seed": self._np_random_seed,
            "game_np_random": game._np_random,
            "game_np_random_seed": game._np_random_seed,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        import ale_py

        self.__init__(state["config"])
        # A reset first, as gymnasium's order checks require before a step; the restored
        # emulator state then replaces whatever the reset did (it draws no random number).
        self._env.reset()
        self._ale.restoreState(ale_py.ALEState(state["ale"]))
        self._np_random = state["np_random"]
        self._np_random_seed = state["np_random_seed"]
        game = self._env.unwrapped
        game._np_random = state["game_np_random"]
        game._np_random_seed = state["game_np_random_seed"]

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


class DMCEnv(gym.Env):
    """A DeepMind Control Suite task (``dm_control``) with gymnasium's API.

    Observations are the task's state arrays flattened and concatenated in the suite's
    order (``{"vector"}``), or, with ``vision``, ``size x size`` RGB frames from the task's
    standard camera (``{"image"}``). Actions repeat ``action_repeat`` times, rewards summed.
    The suite ends every episode after 1000 env steps with discount 1: a truncation.
    """

    CAMERAS = {"quadruped": 2}
    """Camera per domain where the standard view is not camera 0 (as in DreamerV3)."""

    GL_PACKAGES = {
        "egl": "Debian's libegl1 and libegl-mesa0 (Mesa renders on a CPU) or a GPU driver, "
        "or Debian's libosmesa6 and set MUJOCO_GL=osmesa",
        "osmesa": "Debian's libosmesa6",
        "glfw": "a display; headless, set MUJOCO_GL=egl or MUJOCO_GL=osmesa",
    }
    """What each of MuJoCo's rendering backends (``MUJOCO_GL``) needs installed."""

    def __init__(self, config: EnvConfig):
        # Headless rendering: EGL (a GPU, or Mesa on a CPU) unless the user chose (osmesa).
        # dm_control loads the backend on import, even for state observations.
        os.environ.setdefault("MUJOCO_GL", "egl")
        with self._rendering_errors():
            from dm_control import suite

        domain, task = config.id.split("/")
        self._env = suite.load(domain, task)
        self._repeat = config.action_repeat
        self._size = config.size
        self._vision = config.vision
        self._camera = self.CAMERAS.get(domain, 0)
        spec = self._env.action_spec()
        self.action_space = gym.spaces.Box(
            spec.minimum.astype(np.float32), spec.maximum.astype(np.float32), dtype=np.float32
        )
        if self._vision:
            shape = (config.size, config.size, 3)
            space = {"image": gym.spaces.Box(0, 255, shape, np.uint8)}
        else:
            size = sum(int(np.prod(v.shape)) for v in self._env.observation_spec().values())
            space = {"vector": gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)}
        self.observation_space = gym.spaces.Dict(space)
        if self._vision:
            self._check_rendering()

    def _check_rendering(self) -> None:
        """Render one frame now, so a missing backend is one clear error at the start."""
        with self._rendering_errors():
            self._env.physics.render(self._size, self._size, camera_id=self._camera)

    @classmethod
    @contextlib.contextmanager
    def _rendering_errors(cls) -> Iterator[None]:
        """Turn a failing rendering backend into a one-line :class:`ConfigError` naming
        what to install."""
        try:
            yield
        except Exception as error:  # the backends fail in many ways (ImportError, GL errors)
            backend = os.environ["MUJOCO_GL"]
            needs = cls.GL_PACKAGES.get(backend, cls.GL_PACKAGES["egl"])
            raise ConfigError(
                f"MuJoCo cannot render with MUJOCO_GL={backend} ({type(error).__name__}): "
                f"install {needs}"
            ) from None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:  # the task draws its initial state from its own generator
            self._env.task.random.seed(seed)
        return self._observe(self._env.reset()), {}

    def step(self, action: np.ndarray):
        total = 0.0
        for _ in range(self._repeat):
            time_step = self._env.step(action)
            total += float(time_step.reward or 0.0)
            if time_step.last():
                break
        terminated = time_step.last() and time_step.discount == 0
        truncated = time_step.last() and not terminated
        return self._observe(time_step), total, terminated, truncated, {}

    def _observe(self, time_step: Any) -> dict[str, np.ndarray]:
        if self._vision:
            frame = self._env.physics.render(self._size, self._size, camera_id=self._camera)
            return {"image": np.ascontiguousarray(frame, np.uint8)}
        parts = [np.asarray(v, np.float32).reshape(-1) for v in time_step.observation.values()]
        return {"vector": np.concatenate(parts)}

    def close(self) -> None:
        self._env.close()


SUITES = {
    "atari": AtariEnv,
    "gym": lambda config: VectorEnv(gym.make(config.id)),
    "dmc": DMCEnv,
}


def quiet_ale_banner() -> None:
    """Keep ALE from printing its banner (and other info lines) when this process makes
    its first Atari env: for processes whose parent already showed it."""
    import ale_py

    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)


def make_env(config: EnvConfig) -> gym.Env:
    """Make the env described by ``config`` (unseeded: seed it with ``reset(seed=...)``)."""
    env: gym.Env = SUITES[config.suite](config)
    kind = action_space(env).kind
    if kind != config.actions:
        raise ValueError(f"{config.id} has {kind} actions, but env.actions is {config.actions}")
    if config.max_episode_steps:
        env = gym.wrappers.TimeLimit(env, config.max_episode_steps)
    return env


class Actions(Protocol):
    """An env's action space as the agent sees it: vectors of ``size`` numbers.

    Replay stores the ``replay`` form (an index for discrete actions, the normalised vector
    for continuous ones); :meth:`to_env` turns it into what ``env.step`` takes."""

    kind: str
    size: int
    replay_shape: tuple[int, ...]

    def random(self, rng: np.random.Generator) -> Any: ...
    def from_policy(self, action: np.ndarray) -> Any: ...
    def to_env(self, action: Any) -> Any: ...


class DiscreteActions:
    """``Discrete(n)``: the agent's one-hot ``(n,)`` vectors, stored as their index."""

    kind = "discrete"
    replay_shape: tuple[int, ...] = ()

    def __init__(self, space: gym.spaces.Discrete):
        self.size = int(space.n)

    def random(self, rng: np.random.Generator) -> int:
        """A uniform-random index."""
        return int(rng.integers(self.size))

    def from_policy(self, action: np.ndarray) -> int:
        """The index of a one-hot ``(n,)``."""
        return int(action.argmax(-1))

    def to_env(self, action: int) -> int:
        return int(action)


class ContinuousActions:
    """A bounded ``Box`` of shape ``(A,)``: the agent acts in [-1, 1]^A, stored as such;
    :meth:`to_env` clips to that cube and maps it linearly onto ``[low, high]``."""

    kind = "continuous"

    def __init__(self, space: gym.spaces.Box):
        low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
        if len(space.shape) != 1 or not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ValueError(f"only bounded 1-D Box action spaces are supported, got {space}")
        self.size = int(space.shape[0])
        self.replay_shape = (self.size,)
        self.low, self.high, self.dtype = low, high, space.dtype

    def random(self, rng: np.random.Generator) -> np.ndarray:
        """Uniform over [-1, 1]^A, i.e. uniform over the env's own box."""
        return rng.uniform(-1.0, 1.0, self.size).astype(np.float32)

    def from_policy(self, action: np.ndarray) -> np.ndarray:
        """The policy's sample ``(A,)`` as it is (unclipped, as the imagination sees it)."""
        return np.asarray(action, np.float32)

    def to_env(self, action: np.ndarray) -> np.ndarray:
        unit = (np.clip(action, -1.0, 1.0) + 1.0) / 2.0
        return (self.low + unit * (self.high - self.low)).astype(self.dtype)


ACTION_SPACES: dict[type, Any] = {
    gym.spaces.Discrete: DiscreteActions,
    gym.spaces.Box: ContinuousActions,
}


def action_space(env: gym.Env) -> Actions:
    """The agent's view of ``env.action_space`` (see :class:`Actions`)."""
    space = env.action_space
    if type(space) not in ACTION_SPACES:
        raise ValueError(f"unsupported action space {space}; Discrete and Box are")
    return ACTION_SPACES[type(space)](space)


def observation_shapes(env: gym.Env) -> dict[str, tuple[int, ...]]:
    """``{"image": (64, 64, 3)}`` or ``{"vector": (N,)}`` for an env from :func:`make_env`."""
    return {key: space.shape for key, space in env.observation_space.spaces.items()}


def random_policy_return(config: EnvConfig, episodes: int, seed: int) -> float:
    """Mean return of uniform-random actions over ``episodes`` episodes: the floor that
    any claim of learning is measured against."""
    env = make_env(config)
    actions = action_space(env)
    rng = np.random.default_rng(seed)
    returns = []
    for _ in range(episodes):
        env.reset(seed=int(rng.integers(2**31)))
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(actions.to_env(actions.random(rng)))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))
