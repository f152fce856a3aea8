"""Replay: a numpy ring buffer of transitions with uniform ``(B, T)`` sequence sampling.

Step ``t`` of the buffer holds what the agent saw on arriving at ``obs[t]``::

    obs[t]        the observation
    action[t]     the action that led to obs[t]        (0 when is_first[t]): an index for
                  discrete actions, the normalised (A,) vector for continuous ones
    reward[t]     the reward received with obs[t]      (0 when is_first[t])
    is_first[t]   obs[t] is the first of an episode    (the RSSM resets its state here)
    is_terminal[t] the episode terminated at obs[t]    (continue target 0; not on truncation)

so the RSSM computes ``h[t] = f(h[t-1], z[t-1], action[t])`` and predicts ``reward[t]`` and
``1 - is_terminal[t]`` from ``(h[t], z[t])``. Sequences may span episode boundaries;
``is_first`` resets the state there. Every stored step carries ``uid`` (its insertion
number, unique over the run) and ``env_step`` (the agent step when it was stored), so the
diversity and age of sampled positions can be measured.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class Replay:
    """Ring buffer of ``capacity`` transitions; observations given by ``obs_shapes``,
    actions by ``action_shape`` (``()``: integer indices; ``(A,)``: float32 vectors)."""

    def __init__(
        self,
        capacity: int,
        obs_shapes: dict[str, tuple[int, ...]],
        rng: np.random.Generator,
        action_shape: tuple[int, ...] = (),
    ):
        self.capacity = capacity
        self.rng = rng
        self.obs_keys = tuple(obs_shapes)
        dtypes = {"image": np.uint8}
        self.data: dict[str, np.ndarray] = {
            key: np.zeros((capacity, *shape), dtypes.get(key, np.float32))
            for key, shape in obs_shapes.items()
        }
        self.data.update(
            action=np.zeros((capacity, *action_shape), np.float32 if action_shape else np.int64),
            reward=np.zeros(capacity, np.float32),
            is_first=np.zeros(capacity, bool),
            is_terminal=np.zeros(capacity, bool),
            uid=np.zeros(capacity, np.int64),
            env_step=np.zeros(capacity, np.int64),
        )
        self.head = 0  # next physical slot to write
        self.added = 0  # transitions ever added

    def __len__(self) -> int:
        return min(self.added, self.capacity)

    def add(
        self,
        obs: dict[str, np.ndarray],
        action: int | np.ndarray,
        reward: float,
        is_first: bool,
        is_terminal: bool,
        env_step: int,
    ) -> None:
        """Store one transition (see the module docstring for the alignment)."""
        i = self.head
        for key in self.obs_keys:
            self.data[key][i] = obs[key]
        self.data["action"][i] = action
        self.data["reward"][i] = reward
        self.data["is_first"][i] = is_first
        self.data["is_terminal"][i] = is_terminal
        self.data["uid"][i] = self.added
        self.data["env_step"][i] = env_step
        self.head = (i + 1) % self.capacity
        self.added += 1

    def sample(self, batch_size: int, seq_len: int) -> dict[str, np.ndarray]:
        """Draw ``batch_size`` sequences of ``seq_len`` consecutive steps, uniformly.

        Returns arrays shaped ``(B, T, ...)``: every field of the buffer (obs keys, action,
        reward, is_first, is_terminal, uid, env_step). The first step of each sequence is
        marked ``is_first`` so the RSSM starts from a clean state there.
        """
        size = len(self)
        if size < seq_len:
            raise ValueError(f"replay holds {size} steps, fewer than seq_len={seq_len}")
        oldest = self.head if self.added > self.capacity else 0
        starts = self.rng.integers(0, size - seq_len + 1, size=batch_size)  # (B,)
        index = (oldest + starts[:, None] + np.arange(seq_len)[None]) % self.capacity  # (B, T)
        batch = {key: value[index] for key, value in self.data.items()}
        batch["is_first"][:, 0] = True
        return batch

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to restore the buffer exactly (filled part only)."""
        size = len(self)
        return {
            "data": {key: value[:size].copy() for key, value in self.data.items()},
            "head": self.head,
            "added": self.added,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state["data"].items():
            self.data[key][: len(value)] = value
        self.head = state["head"]
        self.added = state["added"]
        self.rng.bit_generator.state = state["rng"]
