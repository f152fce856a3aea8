"""Diversity of the states the actor-critic learns from.

The coupled schedule's risk is that its imagination starts are less diverse than fresh
replay samples; these measures make that visible per AC update. ``N`` starts, ``D`` deter,
``S`` latents, ``K`` classes. Each takes ``members``: a seed batch folds its members into
the first axis (see :mod:`agent.members`) and gets one value per member, ``(M,)``; a single
run (``members == 1``) gets scalars.
"""

from __future__ import annotations

import numpy as np
import torch


def _one(values: torch.Tensor, members: int) -> torch.Tensor:
    """``(M,)`` per-member values, or the scalar of a single run."""
    return values[0] if members == 1 else values


def start_diversity(
    h: torch.Tensor,
    z: torch.Tensor,
    uid: np.ndarray,
    env_step: np.ndarray,
    current_env_step: int,
    members: int = 1,
) -> dict[str, torch.Tensor | float]:
    """Diversity of one batch of imagination starts, per member.

    ``h (M*N, D)``, one-hot ``z (M*N, S, K)``; ``uid (M*N,)`` and ``env_step (M*N,)``
    identify each start's replay position and when it was stored. Returns:

    - ``diversity/distinct_starts``: fraction of starts at distinct replay positions;
    - ``diversity/h_dispersion``: mean over dimensions of the std of ``h`` across starts;
    - ``diversity/latent_entropy``: entropy (nats) of the class-usage frequencies of each
      latent, averaged over latents (0 when every start uses the same code);
    - ``diversity/replay_age``: mean agent steps since each start was stored.
    """
    N = h.shape[0] // members
    assert z.shape[0] == members * N and uid.shape == env_step.shape == (members * N,)
    usage = z.float().reshape(members, N, *z.shape[1:]).mean(1)  # (M, S, K)
    entropy = -(usage * torch.log(usage.clamp(min=1e-12))).sum(-1).mean(-1)
    dispersion = h.float().reshape(members, N, -1).std(1, correction=0).mean(-1)
    distinct = [len(np.unique(u)) / N for u in uid.reshape(members, N)]
    age = np.mean(current_env_step - env_step.reshape(members, N), axis=1)
    if members == 1:
        return {
            "diversity/distinct_starts": distinct[0],
            "diversity/h_dispersion": dispersion[0],
            "diversity/latent_entropy": entropy[0],
            "diversity/replay_age": float(age[0]),
        }
    return {
        "diversity/distinct_starts": torch.tensor(distinct, device=h.device),
        "diversity/h_dispersion": dispersion,
        "diversity/latent_entropy": entropy,
        "diversity/replay_age": torch.as_tensor(age, dtype=torch.float32, device=h.device),
    }


def imagined_dispersion(h: torch.Tensor, members: int = 1) -> torch.Tensor:
    """Mean per-dimension std of imagined ``h (M*N, H+1, D)`` over all states, per member."""
    states = h.float().reshape(members, -1, h.shape[-1])
    return _one(states.std(1, correction=0).mean(-1), members)


def start_shift(h_before: torch.Tensor, h_after: torch.Tensor, members: int = 1) -> torch.Tensor:
    """Relative change of the last posterior state when a batch is filtered again after a WM
    update: ``mean |h_before - h_after| / mean |h_after|`` over ``h (M*B, T, D)[:, -1]``,
    per member.

    Latents are drawn afresh in the second filter, so this includes that resampling as well
    as the update's change of the weights (a device scalar: no host sync).
    """
    after = h_after[:, -1].float().reshape(members, -1)  # (M, B * D)
    before = h_before[:, -1].float().reshape(members, -1)
    shift = (before - after).abs().mean(1) / after.abs().mean(1).clamp(min=1e-8)
    return _one(shift, members)
