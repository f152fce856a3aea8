"""Speed options that leave the maths unchanged: compiled hot steps and mixed precision.

Only the deterministic, per-step pieces are compiled (the RSSM transition, the posterior
step and the actor head), because they run ``T`` or ``H`` times per update as many small
kernels; random draws stay eager, so every sample still comes from the run's seeded
generator and the compiled path draws exactly the same numbers as the plain one.
"""

from __future__ import annotations

import contextlib

import torch

from agent.actor_critic import ActorCritic
from agent.world_model import WorldModel


def use_compile(mode: str, device: torch.device) -> bool:
    """Whether ``train.compile`` turns compilation on for ``device`` (``auto``: CUDA only)."""
    return mode == "on" or (mode == "auto" and device.type == "cuda")


def compile_steps(world_model: WorldModel, actor_critic: ActorCritic) -> None:
    """Replace the per-step methods with ``torch.compile``-d versions, in place."""
    rssm = world_model.rssm
    rssm.img_step = torch.compile(rssm.img_step, dynamic=False)
    rssm.posterior_step = torch.compile(rssm.posterior_step, dynamic=False)
    actor_critic.action_probs = torch.compile(actor_critic.action_probs, dynamic=False)


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether ``train.precision`` means bf16 autocast on ``device`` (``auto``: CUDA only)."""
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast for network layers on ``device``; a no-op context when not enabled."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
