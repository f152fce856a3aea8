"""A trainer's resume state: what to save so that a resumed run equals an uninterrupted one.

The state holds the models, optimisers, replay, every random generator and counter, the
metric means not yet flushed, and the collect env's open episode: the env object itself
(pickled, with its own random generator and time-limit count) and the episode record
(observation, return, length, the policy's filter state). Loaded into a fresh trainer of the
same config, training continues exactly as if it had never stopped, and logs the same
values at the same steps (wall-clock timings aside).

Every env of :mod:`agent.envs` pickles mid-episode: gymnasium's and DMC's as they are, the
Atari env through ALE's own state cloning (its emulator is a C++ object; see
:meth:`agent.envs.AtariEnv.__getstate__`). An env that cannot be pickled is saved without
its open episode: on load that episode is dropped and the next collect starts a new one, so
the resumed run diverges from the uninterrupted one from there on (still a valid run, but
not the same one), and loading such a checkpoint warns. :func:`env_state_saved` says which
case a checkpoint is.
"""

from __future__ import annotations

import os
import pickle
import time
import warnings
from typing import Any

import torch

from agent.acceleration import GraphedStep
from agent.config import to_dict

COUNTERS = (
    "env_steps",
    "wm_updates",
    "ac_updates",
    "iterations",
    "episodes",
    "_update_credit",
    "_next_log",
    "_next_eval",
    "_wall_seconds",
)
"""Trainer attributes saved as they are (names in the checkpoint drop the underscore)."""


def _pickled_env(trainer: Any) -> bytes | None:
    """The collect env, pickled; ``None`` if it cannot be."""
    try:
        return pickle.dumps(trainer.env)
    except (TypeError, pickle.PicklingError, AttributeError):
        return None


def _owned(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``tensors`` with every view into a larger storage copied out: ``torch.save`` writes a
    view's whole storage, and a seed batch's member holds views of the stacked weights
    (:mod:`agent.seed_batch`). A single run's tensors own their storage and pass as they are."""
    return {
        name: t.clone() if t.untyped_storage().nbytes() > t.nbytes else t
        for name, t in tensors.items()
    }


def state_dict(trainer: Any) -> dict[str, Any]:
    """Everything a :class:`~agent.trainer.Trainer` needs to resume exactly (see module)."""
    return {
        "world_model": _owned(trainer.world_model.state_dict()),
        "actor_critic": _owned(trainer.actor_critic.state_dict()),
        "wm_optimizer": trainer.wm_optimizer.state_dict(),
        "actor_optimizer": trainer.actor_optimizer.state_dict(),
        "critic_optimizer": trainer.critic_optimizer.state_dict(),
        "replay": trainer.replay.state_dict(),
        "np_rng": trainer.np_rng.bit_generator.state,
        "generator": trainer.generator.get_state(),
        "eval_np_rng": trainer.eval_np_rng.bit_generator.state,
        "eval_generator": trainer.eval_generator.get_state(),
        "counters": {name.lstrip("_"): getattr(trainer, name) for name in COUNTERS},
        # Means of the updates since the last log flush: without them the first flush after
        # a resume would average fewer updates than the uninterrupted run's.
        # (torch.save pickles it, mapping its device tensors as the rest on load.)
        "metric_means": trainer.metrics,
        **_episode_state(trainer),
    }


def _episode_state(trainer: Any) -> dict[str, Any]:
    env = _pickled_env(trainer)
    return {
        "env": env,
        "episode": trainer._episode if env is not None else None,
        "episode_dropped": env is None and trainer._episode is not None,
    }


def env_state_saved(state: dict[str, Any]) -> bool:
    """Whether ``state`` (from :func:`state_dict`) carries the open episode."""
    return state.get("env") is not None


def load_state_dict(trainer: Any, state: dict[str, Any]) -> None:
    """Restore ``trainer`` from :func:`state_dict`'s output (see the module for the env)."""
    trainer.world_model.load_state_dict(state["world_model"])
    trainer.actor_critic.load_state_dict(state["actor_critic"])
    for name in ("wm_optimizer", "actor_optimizer", "critic_optimizer"):
        optimizer = getattr(trainer, name)
        optimizer.load_state_dict(state[name])
        for group in optimizer.param_groups:  # this run's choice, not the checkpoint's
            group["capturable"] = trainer.graphs
    # Graphs captured before hold the replaced optimiser state: capture afresh.
    for step in trainer._steps:
        if isinstance(step, GraphedStep):
            step.reset()
    trainer.replay.load_state_dict(state["replay"])
    trainer.np_rng.bit_generator.state = state["np_rng"]
    # Generator states are CPU byte tensors, wherever torch.load mapped the checkpoint.
    trainer.generator.set_state(state["generator"].cpu())
    trainer.eval_np_rng.bit_generator.state = state["eval_np_rng"]
    trainer.eval_generator.set_state(state["eval_generator"].cpu())
    for name in COUNTERS:
        setattr(trainer, name, state["counters"][name.lstrip("_")])
    if "metric_means" in state:
        trainer.metrics = state["metric_means"]
    trainer._episode = None
    if state.get("episode_dropped"):
        warnings.warn(
            f"the checkpoint at step {trainer.env_steps} could not hold the env "
            f"({type(trainer.env.unwrapped).__name__} cannot be pickled): its open episode "
            "restarts, so this run no longer equals an uninterrupted one",
            stacklevel=2,
        )
    if env_state_saved(state):
        trainer.env.close()
        trainer.env = pickle.loads(state["env"])
        trainer._episode = state["episode"]
        if trainer._episode is not None:  # the filter state, on this trainer's device
            policy = trainer._episode["state"]
            trainer._episode["state"] = {k: v.to(trainer.device) for k, v in policy.items()}
    trainer._window_seconds = 0.0  # training time since the last flush, counted afresh
    trainer._last_flush = {
        "time": time.perf_counter(),
        "wm": trainer.wm_updates,
        "ac": trainer.ac_updates,
        "env": trainer.env_steps,
        "iter": trainer.iterations,
    }


def save(trainer: Any, path: str) -> None:
    """Write a checkpoint atomically (a crash mid-write leaves the old one intact); a failed
    write removes its temporary file."""
    tmp = f"{path}.tmp"
    try:
        # Through a Python file, so that a full disk raises OSError(ENOSPC), not torch's
        # errno-less RuntimeError; synced, so that a renamed file is a complete one.
        with open(tmp, "wb") as f:
            torch.save({"state": state_dict(trainer), "config": to_dict(trainer.config)}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.remove(tmp)
        raise


def load(trainer: Any, path: str) -> None:
    """Restore ``trainer`` from a file written by :func:`save`."""
    checkpoint = torch.load(path, map_location=trainer.device, weights_only=False)
    load_state_dict(trainer, checkpoint["state"])
