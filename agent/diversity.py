"""Diversity of the states the actor-critic learns from.

The coupled schedule's risk is that its imagination starts are less diverse than fresh
replay samples; these measures make that visible per AC update. ``N`` starts, ``D`` deter,
``S`` latents, ``K`` classes.
"""

from __future__ import annotations

import numpy as np
import torch


def start_diversity(
    h: torch.Tensor,
    z: torch.Tensor,
    uid: np.ndarray,
    env_step: np.ndarray,
    current_env_step: int,
) -> dict[str, torch.Tensor | float]:
    """Diversity of one batch of imagination starts.

    ``h (N, D)``, one-hot ``z (N, S, K)``; ``uid (N,)`` and ``env_step (N,)`` identify each
    start's replay position and when it was stored. Returns:

    - ``diversity/distinct_starts``: fraction of starts at distinct replay positions;
    - ``diversity/h_dispersion``: mean over dimensions of the std of ``h`` across starts;
    - ``diversity/latent_entropy``: entropy (nats) of the class-usage frequencies of each
      latent, averaged over latents (0 when every start uses the same code);
    - ``diversity/replay_age``: mean agent steps since each start was stored.
    """
    N = h.shape[0]
    assert z.shape[0] == N and uid.shape == (N,) and env_step.shape == (N,)
    usage = z.float().mean(0)  # (S, K)
    entropy = -(usage * torch.log(usage.clamp(min=1e-12))).sum(-1).mean()
    return {
        "diversity/distinct_starts": len(np.unique(uid)) / N,
        "diversity/h_dispersion": h.float().std(0, correction=0).mean(),
        "diversity/latent_entropy": entropy,
        "diversity/replay_age": float(np.mean(current_env_step - env_step)),
    }


def imagined_dispersion(h: torch.Tensor) -> torch.Tensor:
    """Mean per-dimension std of imagined ``h (N, H+1, D)`` over all states."""
    return h.reshape(-1, h.shape[-1]).float().std(0, correction=0).mean()


def start_shift(h_before: torch.Tensor, h_after: torch.Tensor) -> torch.Tensor:
    """Relative change of the last posterior state when a batch is filtered again after a WM
    update: ``mean |h_before - h_after| / mean |h_after|`` over ``h (B, T, D)[:, -1]``.

    Latents are drawn afresh in the second filter, so this includes that resampling as well
    as the update's change of the weights (a device scalar: no host sync).
    """
    after = h_after[:, -1].float()  # (B, D)
    return (h_before[:, -1].float() - after).abs().mean() / after.abs().mean().clamp(min=1e-8)
