"""Typed configuration: one dataclass tree, named presets layered as dotted overrides.

A config is built in layers, each a dict of dotted keys (``"model.deter": 512``):

    defaults  <-  env preset (``atari_pong``, ``cartpole``)  <-  size preset (``debug`` .. ``L``)
              <-  user overrides (``--set train.batch_size=8``)

so every fact has one home: the env preset carries the paper's environment settings and
budget, the size preset the network sizes, and nothing is written twice. The presets
themselves live in :mod:`agent.presets`; this module holds the schema, its checks and the
layering.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from agent.presets import DMC_TASKS, ENV_PRESETS, SIZE_PRESETS

SCHEDULES = ("separate", "coupled", "interleaved", "joint")
"""The schedules of :data:`agent.trainer.SCHEDULES`, by name (the trainer checks the two agree)."""
STARTS = ("last", "all")
COMPILE_MODES = ("auto", "on", "off")
GRAPH_MODES = ("auto", "on", "off")
PRECISIONS = ("auto", "fp32", "bf16")
SUITES = ("gym", "atari", "dmc")
ACTION_KINDS = ("discrete", "continuous")
ACTOR_GRADS = ("auto", "reinforce", "dynamics")


@dataclass
class EnvConfig:
    """Which environment and how it is wrapped."""

    name: str = "cartpole"
    """Env preset name (``cartpole``, ``pendulum``, ``atari_<game>``, ``dmc_<domain>_<task>``)."""
    suite: str = "gym"
    """``gym`` (vector observations), ``atari`` (64x64 RGB through ALE) or ``dmc`` (the
    DeepMind Control Suite: its state vector, or 64x64 RGB with ``vision``)."""
    id: str = "CartPole-v1"
    """The gymnasium id made by the suite; for ``dmc``, ``<domain>/<task>``."""
    actions: str = "discrete"
    """``discrete`` (one-hot) or ``continuous`` (a Box, normalised to [-1, 1] for the agent);
    the env made is checked against it."""
    vision: bool = False
    """``dmc`` only: observe 64x64 RGB frames from the task's camera instead of its state."""
    size: int = 64
    """Image side in pixels (atari)."""
    action_repeat: int = 1
    """Env frames per agent step; atari max-pools the last two."""
    noops: int = 0
    """Up to this many no-op actions after each reset (atari)."""
    max_episode_steps: int = 0
    """Truncate episodes after this many agent steps; 0 keeps the env's own limit."""


@dataclass
class ModelConfig:
    """Network sizes (the paper's Table of model sizes) and distribution settings."""

    deter: int = 512
    """GRU state size D."""
    units: int = 512
    """Hidden units of every MLP."""
    layers: int = 2
    """Hidden layers of every MLP."""
    stoch: int = 32
    """Number of categorical latents S."""
    classes: int = 32
    """Classes per latent K."""
    cnn_depth: int = 32
    """Channels of the first conv layer; doubled at each stride-2 stage."""
    unimix: float = 0.01
    """Uniform mixture on every categorical (latents and actions)."""
    bins: int = 255
    """Two-hot bins for reward and critic, spaced evenly in symlog space on [-20, 20]."""


@dataclass
class WorldModelConfig:
    """World-model losses and optimiser (paper: Adam 1e-4, eps 1e-8, clip 1000)."""

    lr: float = 1e-4
    eps: float = 1e-8
    grad_clip: float = 1000.0
    free_nats: float = 1.0
    """Free bits: KL terms below this many nats are not penalised."""
    loss_scales: dict[str, float] = field(
        default_factory=lambda: {"decoder": 1.0, "reward": 1.0, "cont": 1.0, "dyn": 0.5, "rep": 0.1}
    )
    """Weight of each WM loss term; keys are checked against the terms computed."""


@dataclass
class ActorCriticConfig:
    """Imagination and actor-critic learning (paper section 'Actor critic learning')."""

    horizon: int = 15
    """Imagined steps H."""
    discount: float = 0.997
    return_lambda: float = 0.95
    entropy: float = 3e-4
    """Actor entropy bonus eta."""
    actor_lr: float = 3e-5
    critic_lr: float = 3e-5
    eps: float = 1e-5
    grad_clip: float = 100.0
    slow_critic_fraction: float = 0.02
    """EMA rate of the slow critic towards the critic, every update."""
    slow_critic_reg: float = 1.0
    """Weight of the critic's regulariser towards the slow critic's prediction."""
    return_norm_decay: float = 0.99
    """EMA decay of the 5th-95th percentile range of returns."""
    replay_critic: float = 0.0
    """Weight of the critic loss on replayed sequences (the 2024 paper's 0.3; 0, off, is the
    2023 paper). Grounds the critic in real rewards and terminations."""
    actor_grad: str = "auto"
    """How the actor's loss reaches it: ``reinforce`` (score function), ``dynamics`` (the
    lambda-returns backpropagated through the imagined trajectory; continuous actions only)
    or ``auto`` (the 2023 paper's code: dynamics for continuous, reinforce for discrete)."""
    min_std: float = 0.1
    """Smallest std of the continuous policy (the paper's bounded normal)."""
    max_std: float = 1.0
    """Largest std of the continuous policy."""


@dataclass
class TrainConfig:
    """The training loop: budget, data ratio, schedule."""

    steps: int = 100_000
    """Agent steps (after action repeat) to train for."""
    schedule: str = "separate"
    """Order of WM and AC updates (see :mod:`agent.trainer`): ``separate`` (all WM updates,
    then AC updates from fresh starts), ``coupled`` (each AC update from the WM batch just
    trained on), ``interleaved`` (WM and AC alternate, AC from fresh starts) or ``joint`` (one
    step on both losses of one batch, as the official DreamerV3)."""
    starts: str = "last"
    """Which posterior steps start imagination: ``last`` (B starts) or ``all`` (B*T)."""
    refilter_starts: bool = False
    """``coupled`` only: filter the WM batch again through the updated WM before imagining,
    so starts come from the weights that imagine from them (one more filter pass per update)."""
    train_ratio: float = 1024.0
    """Replayed steps per agent step (DreamerV3's meaning)."""
    batch_size: int = 16
    """B: sequences per batch."""
    seq_len: int = 64
    """T: steps per sequence."""
    collect_every: int = 16
    """Agent steps collected per training iteration."""
    prefill: int = 1024
    """Agent steps of uniform-random actions before training starts."""
    replay_capacity: int = 1_000_000
    """Transitions kept in the ring buffer."""
    eval_every: int = 10_000
    """Agent steps between evaluations; 0 disables evaluation."""
    eval_episodes: int = 10
    log_every: int = 1000
    """Agent steps between metric flushes to the logger."""
    seed: int = 0
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu`` or ``cuda[:i]``."""
    compile: str = "auto"
    """``torch.compile`` the RSSM and actor steps: ``on``, ``off``, ``auto`` (CUDA only:
    on this CPU compiling costs more than it saves, see docs/benchmarks.md)."""
    precision: str = "auto"
    """``bf16`` autocast of network layers, ``fp32``, or ``auto`` (bf16 on CUDA only)."""
    cuda_graphs: str = "auto"
    """Replay each update step (WM, starts, imagination, AC) as one CUDA graph: ``on``,
    ``off``, or ``auto`` (on with CUDA; there is nothing to capture on a CPU)."""

    def updates_per_iteration(self) -> float:
        """Gradient updates per iteration: ``train_ratio * collect_every / (B * T)``."""
        return self.train_ratio * self.collect_every / (self.batch_size * self.seq_len)


@dataclass
class Config:
    """Everything one run needs. Build with :func:`make_config`."""

    env: EnvConfig = field(default_factory=EnvConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    wm: WorldModelConfig = field(default_factory=WorldModelConfig)
    ac: ActorCriticConfig = field(default_factory=ActorCriticConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str = "S"
    """Name of the size preset applied."""


class ConfigError(ValueError):
    """A user-facing configuration mistake; its message is one line meant for the user."""


def make_config(
    env: str = "cartpole", preset: str = "debug", overrides: dict[str, Any] | None = None
) -> Config:
    """Build a validated :class:`Config` from an env preset, a size preset and overrides.

    ``overrides`` maps dotted keys to values, e.g. ``{"train.schedule": "coupled"}``; string
    values are converted to the field's type, so CLI strings can be passed as they are.
    Raises :class:`ConfigError` with a one-line message on any unknown name or bad value.
    """
    if env.startswith("dmc_") and env not in ENV_PRESETS:
        task = env.removeprefix("dmc_").removeprefix("vision_")
        raise ConfigError(
            f"unknown DMC domain or task '{task}' in env '{env}'; known DMC tasks (as "
            f"dmc_<task> or dmc_vision_<task>): {', '.join(DMC_TASKS)}"
        )
    if env not in ENV_PRESETS:
        raise ConfigError(f"unknown env '{env}'; known envs: {', '.join(sorted(ENV_PRESETS))}")
    if preset not in SIZE_PRESETS:
        raise ConfigError(f"unknown preset '{preset}'; known presets: {', '.join(SIZE_PRESETS)}")
    config = Config(preset=preset)
    for layer in (ENV_PRESETS[env], SIZE_PRESETS[preset], overrides or {}):
        for key, value in layer.items():
            set_field(config, key, value)
    validate(config)
    return config


def validate(config: Config) -> None:
    """Raise :class:`ConfigError` if values are out of range or inconsistent."""
    t = config.train
    if t.schedule not in SCHEDULES:
        raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got '{t.schedule}'")
    if t.compile not in COMPILE_MODES:
        raise ConfigError(f"compile must be one of {', '.join(COMPILE_MODES)}, got '{t.compile}'")
    if t.precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got '{t.precision}'")
    if t.cuda_graphs not in GRAPH_MODES:
        raise ConfigError(
            f"cuda_graphs must be one of {', '.join(GRAPH_MODES)}, got '{t.cuda_graphs}'"
        )
    if t.cuda_graphs == "on" and t.device == "cpu":
        raise ConfigError("train.cuda_graphs=on needs a CUDA device, got train.device=cpu")
    if t.refilter_starts and t.schedule != "coupled":
        raise ConfigError(
            "train.refilter_starts needs train.schedule=coupled (the other schedules already "
            "imagine from starts filtered by the world model that imagines)"
        )
    if t.starts not in STARTS:
        raise ConfigError(f"starts must be one of {', '.join(STARTS)}, got '{t.starts}'")
    positive = {
        "train.steps": t.steps,
        "train.batch_size": t.batch_size,
        "train.seq_len": t.seq_len,
        "train.collect_every": t.collect_every,
        "train.train_ratio": t.train_ratio,
        "model.deter": config.model.deter,
        "model.units": config.model.units,
        "model.stoch": config.model.stoch,
        "model.classes": config.model.classes,
        "ac.horizon": config.ac.horizon,
    }
    for key, value in positive.items():
        if not (value > 0 and math.isfinite(value)):  # also rejects nan and inf
            raise ConfigError(f"{key} must be positive and finite, got {value}")
    _check_ranges(config)
    if t.prefill < t.seq_len:
        raise ConfigError(
            f"train.prefill ({t.prefill}) must be at least train.seq_len ({t.seq_len})"
        )
    if t.replay_capacity < t.seq_len + t.collect_every:
        raise ConfigError("train.replay_capacity must hold at least one sequence")
    if config.env.suite not in SUITES:
        raise ConfigError(f"env.suite must be one of {', '.join(SUITES)}, got '{config.env.suite}'")
    if config.model.bins < 3 or config.model.bins % 2 == 0:
        raise ConfigError("model.bins must be odd and at least 3 (so that 0 is a bin)")
    expected = set(WorldModelConfig().loss_scales)
    if set(config.wm.loss_scales) != expected:
        raise ConfigError(f"wm.loss_scales must have exactly the keys {sorted(expected)}")
    if t.steps < t.prefill + t.collect_every:
        raise ConfigError(
            f"train.steps ({t.steps}) must exceed prefill + collect_every "
            f"({t.prefill + t.collect_every}) to run one training iteration"
        )
    _validate_actions(config)


def _validate_actions(config: Config) -> None:
    """Action kind, actor gradient and the continuous policy's std bounds."""
    env, ac = config.env, config.ac
    if env.actions not in ACTION_KINDS:
        raise ConfigError(
            f"env.actions must be one of {', '.join(ACTION_KINDS)}, got '{env.actions}'"
        )
    if ac.actor_grad not in ACTOR_GRADS:
        raise ConfigError(
            f"ac.actor_grad must be one of {', '.join(ACTOR_GRADS)}, got '{ac.actor_grad}'"
        )
    if ac.actor_grad == "dynamics" and env.actions == "discrete":
        raise ConfigError(
            f"ac.actor_grad=dynamics needs continuous actions but env '{env.name}' has discrete "
            "ones; use ac.actor_grad=reinforce or auto"
        )
    if not 0 < ac.min_std <= ac.max_std < math.inf:
        raise ConfigError(
            f"ac.min_std and ac.max_std must satisfy 0 < min_std <= max_std, got "
            f"{ac.min_std} and {ac.max_std}"
        )


def _check_ranges(config: Config) -> None:
    """Every number within the range where training means something: a NaN, a negative
    learning rate or a mixture above 1 would train garbage (or NaN weights) and exit 0."""
    m, wm, ac, t, env = config.model, config.wm, config.ac, config.train, config.env
    # key: (value, low, high, low included, high included)
    ranges: dict[str, tuple[float, float, float, bool, bool]] = {
        "wm.lr": (wm.lr, 0, math.inf, False, False),
        "wm.eps": (wm.eps, 0, math.inf, False, False),
        "wm.grad_clip": (wm.grad_clip, 0, math.inf, False, False),
        "wm.free_nats": (wm.free_nats, 0, math.inf, True, False),
        **{f"wm.loss_scales.{k}": (v, 0, math.inf, True, False) for k, v in wm.loss_scales.items()},
        "ac.actor_lr": (ac.actor_lr, 0, math.inf, False, False),
        "ac.critic_lr": (ac.critic_lr, 0, math.inf, False, False),
        "ac.eps": (ac.eps, 0, math.inf, False, False),
        "ac.grad_clip": (ac.grad_clip, 0, math.inf, False, False),
        "ac.discount": (ac.discount, 0, 1, False, True),
        "ac.return_lambda": (ac.return_lambda, 0, 1, True, True),
        "ac.entropy": (ac.entropy, 0, math.inf, True, False),
        "ac.slow_critic_fraction": (ac.slow_critic_fraction, 0, 1, False, True),
        "ac.slow_critic_reg": (ac.slow_critic_reg, 0, math.inf, True, False),
        "ac.return_norm_decay": (ac.return_norm_decay, 0, 1, True, False),
        "ac.replay_critic": (ac.replay_critic, 0, math.inf, True, False),
        "model.unimix": (m.unimix, 0, 1, True, False),
        "model.layers": (m.layers, 1, math.inf, True, False),
        "model.cnn_depth": (m.cnn_depth, 1, math.inf, True, False),
        "env.size": (env.size, 1, math.inf, True, False),
        "env.action_repeat": (env.action_repeat, 1, math.inf, True, False),
        "env.noops": (env.noops, 0, math.inf, True, False),
        "env.max_episode_steps": (env.max_episode_steps, 0, math.inf, True, False),
        "train.prefill": (t.prefill, 0, math.inf, True, False),
        "train.replay_capacity": (t.replay_capacity, 1, math.inf, True, False),
        "train.eval_every": (t.eval_every, 0, math.inf, True, False),
        "train.eval_episodes": (t.eval_episodes, 1, math.inf, True, False),
        "train.log_every": (t.log_every, 1, math.inf, True, False),
        "train.seed": (t.seed, 0, 2**32 - 1, True, True),
    }
    for key, (value, low, high, low_in, high_in) in ranges.items():
        above = value >= low if low_in else value > low
        below = value <= high if high_in else value < high
        if not (above and below) or math.isnan(value):
            interval = f"{'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"
            raise ConfigError(f"{key} must be in {interval}, got {value}")


# --- dotted access, conversion, flattening -------------------------------------------------


def set_field(config: Any, key: str, value: Any) -> None:
    """Set ``config.<dotted key>`` to ``value``, converting strings to the field's type."""
    *path, name = key.split(".")
    node = config
    for part in path:
        if not dataclasses.is_dataclass(node) or not hasattr(node, part):
            raise ConfigError(f"unknown config key '{key}'")
        node = getattr(node, part)
    if isinstance(node, dict):  # one entry of a mapping field, e.g. wm.loss_scales.reward
        if name not in node:
            known = ", ".join(sorted(node))
            raise ConfigError(f"unknown config key '{key}'; {'.'.join(path)} has {known}")
        node[name] = _convert(key, value, float)
        return
    fields = {f.name: f for f in dataclasses.fields(node)} if dataclasses.is_dataclass(node) else {}
    if name not in fields or dataclasses.is_dataclass(getattr(node, name)):
        raise ConfigError(f"unknown config key '{key}'")
    hint = typing.get_type_hints(type(node))[name]
    setattr(node, name, _convert(key, value, hint))


def _convert(key: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is dict:
        if isinstance(value, dict):
            return {str(k): float(v) for k, v in value.items()}
        raise ConfigError(f"{key} expects a mapping")
    if origin in (typing.Union, types.UnionType):
        hint = next(h for h in typing.get_args(hint) if h is not type(None))
    try:
        if hint is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if hint is int:
            if isinstance(value, str):
                try:
                    return int(value)
                except ValueError:
                    value = float(value)  # "1e3" is fine; "2.5", "inf", "nan" are not
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if hint is float:
            return float(value)
        return hint(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} expects {hint.__name__}, got '{value}'") from None


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a config to ``{"train.batch_size": 16, "wm.loss_scales.dyn": 0.5, ...}``."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.update(flatten(value, key + "."))
        elif isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def to_dict(config: Config) -> dict[str, Any]:
    """Nested plain-dict form, for checkpoints and artifacts."""
    return dataclasses.asdict(config)


def from_dict(data: dict[str, Any]) -> Config:
    """Inverse of :func:`to_dict`; unknown keys raise :class:`ConfigError`."""
    config = Config()
    for section, values in data.items():
        if isinstance(values, dict) and dataclasses.is_dataclass(getattr(config, section, None)):
            for name, value in values.items():
                set_field(config, f"{section}.{name}", value)
        else:
            set_field(config, section, values)
    validate(config)
    return config
