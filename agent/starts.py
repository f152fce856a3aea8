"""Where imagination starts: the posterior states of a replay batch, and the start sets
(``starts=last|all``) as data.

Shape symbols: ``B`` batch, ``T`` time, ``N`` starts, ``D`` deter, ``S`` latents, ``K``
classes, ``A`` actions, ``F`` features.
"""

from __future__ import annotations

from typing import Any, TypedDict

import numpy as np
import torch

from agent.config import STARTS
from agent.world_model import features


class PosteriorStates(TypedDict):
    """Detached posteriors of one replay batch, with the replay identity of every position:
    what imagination starts from (see :func:`select_starts`). With CUDA graphs, ``h`` and
    ``z`` are valid until the next update of the same kind."""

    h: torch.Tensor  # (B, T, D)
    z: torch.Tensor  # (B, T, S, K)
    cont: torch.Tensor  # (B, T): 0 where the step ended its episode
    reward: torch.Tensor  # (B, T)
    is_first: torch.Tensor  # (B, T)
    action: torch.Tensor  # (B, T, A)
    observations: torch.Tensor  # (B, T, ...)
    uid: np.ndarray  # (B, T): the replay's episode id of each position
    env_step: np.ndarray  # (B, T): the agent step each position was stored at


BATCH_KEYS = ("action", "reward", "is_first", "is_terminal")
"""Replay fields a batch carries to the device, besides the observation."""


START_STEPS: dict[str, int | None] = {"last": 1, "all": None}
"""The start sets as data: how many final posterior steps of each sequence start imagination
(``None``: every step). ``last`` is the seed plan's, ``all`` the official DreamerV3's."""
assert tuple(START_STEPS) == STARTS, "agent.config.STARTS names the start sets here"


def select_starts(states: PosteriorStates, starts: str) -> dict[str, Any]:
    """Imagination starts from posterior sequences: the last ``K`` steps of each
    (:data:`START_STEPS`), ``N = B * K`` of them in ``(b, t)`` order: ``last`` -> ``N = B``
    starts ``(h[:, -1], z[:, -1])``, ``all`` -> ``N = B * T``. Returns ``h (N, D)``,
    ``z (N, S, K)``, ``cont (N,)``, and numpy ``uid (N,)``, ``env_step (N,)``."""
    steps = START_STEPS[starts] or states["h"].shape[1]
    return {
        k: states[k][:, -steps:].reshape(-1, *states[k].shape[2:])
        for k in ("h", "z", "cont", "uid", "env_step")
    }


def replay_steps(states: PosteriorStates, starts: str) -> dict[str, torch.Tensor]:
    """The replayed sequences behind :func:`select_starts`, for the replay critic loss:
    ``feat (B, T, F)``, ``reward``, ``cont``, ``is_first`` and ``is_start (B, T)``."""
    steps = START_STEPS[starts] or states["h"].shape[1]
    is_start = torch.zeros_like(states["is_first"])
    is_start[:, -steps:] = True
    return {
        "feat": features(states["h"], states["z"]),
        "reward": states["reward"],
        "cont": states["cont"],
        "is_first": states["is_first"],
        "is_start": is_start,
    }
