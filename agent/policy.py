"""The actor's action distributions and the two ways its loss reaches its parameters.

Two registries, each keyed by a value of the config or the env:

- :data:`ACTION_HEADS` by the env's action kind: a categorical over one-hot actions
  (discrete) or DreamerV3's bounded normal (continuous, actions normalised to [-1, 1]);
- :data:`ACTOR_GRADIENTS` by ``ac.actor_grad``: REINFORCE (the score function with the
  normalised advantage) or backpropagation of the lambda-returns through the imagined
  trajectory (the RSSM prior, reward and continue heads and the critic) into the actions.
  ``auto`` picks by action kind as the 2023 paper's code does (:data:`AUTO_ACTOR_GRADIENT`).

Shape symbols: ``N`` starts, ``H`` horizon, ``F`` features, ``A`` action dimensions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch
from torch import nn

from agent.config import Config
from agent.dists import (
    bounded_normal,
    normal_entropy,
    normal_log_prob,
    sample_onehot,
    unimix_probs,
)
from agent.members import fill_random

Params = dict[str, torch.Tensor]
"""A distribution's parameters, e.g. ``{"probs": (..., A)}`` or ``{"mean", "std"}``."""


class ActionHead(Protocol):
    """How the actor's raw outputs ``(..., out_dim)`` become an action distribution."""

    reparameterised: bool
    """Whether a sample is a differentiable function of the parameters (needed for actor
    gradients through the dynamics)."""

    def out_dim(self, num_actions: int) -> int: ...
    def params(self, raw: torch.Tensor) -> Params: ...
    def sample(self, params: Params, generator: torch.Generator | None) -> torch.Tensor: ...
    def mode(self, params: Params) -> torch.Tensor: ...
    def log_prob(self, params: Params, action: torch.Tensor) -> torch.Tensor: ...
    def entropy(self, params: Params) -> torch.Tensor: ...


class CategoricalHead:
    """One-hot actions ``(..., A)`` from a categorical with the uniform floor (unimix)."""

    reparameterised = False

    def __init__(self, config: Config):
        self.unimix = config.model.unimix

    def out_dim(self, num_actions: int) -> int:
        return num_actions

    def params(self, raw: torch.Tensor) -> Params:
        return {"probs": unimix_probs(raw, self.unimix)}

    def sample(self, params: Params, generator: torch.Generator | None) -> torch.Tensor:
        return sample_onehot(params["probs"], generator).detach()

    def mode(self, params: Params) -> torch.Tensor:
        probs = params["probs"]
        return nn.functional.one_hot(probs.argmax(-1), probs.shape[-1]).float()

    def log_prob(self, params: Params, action: torch.Tensor) -> torch.Tensor:
        return (action * params["probs"].log()).sum(-1)

    def entropy(self, params: Params) -> torch.Tensor:
        probs = params["probs"]
        return -(probs * probs.log()).sum(-1)


class BoundedNormalHead:
    """DreamerV3's continuous policy: a diagonal normal with mean ``tanh``-squashed into
    [-1, 1] and std between ``ac.min_std`` and ``ac.max_std`` (:func:`bounded_normal`).

    Samples are reparameterised (``mean + std * noise``) and not clipped, as in the paper's
    code: the env clips them when mapping to its own range (see ``agent.envs``)."""

    reparameterised = True

    def __init__(self, config: Config):
        self.min_std, self.max_std = config.ac.min_std, config.ac.max_std

    def out_dim(self, num_actions: int) -> int:
        return 2 * num_actions

    def params(self, raw: torch.Tensor) -> Params:
        mean, std = bounded_normal(raw, self.min_std, self.max_std)
        return {"mean": mean, "std": std}

    def sample(self, params: Params, generator: torch.Generator | None) -> torch.Tensor:
        mean, std = params["mean"], params["std"]
        noise = torch.empty(mean.shape, device=mean.device, dtype=mean.dtype)
        noise = fill_random(noise, generator, lambda out, g: out.normal_(generator=g))
        return mean + std * noise

    def mode(self, params: Params) -> torch.Tensor:
        return params["mean"]

    def log_prob(self, params: Params, action: torch.Tensor) -> torch.Tensor:
        return normal_log_prob(action, params["mean"], params["std"])

    def entropy(self, params: Params) -> torch.Tensor:
        return normal_entropy(params["std"])


ACTION_HEADS: dict[str, Callable[[Config], ActionHead]] = {
    "discrete": CategoricalHead,
    "continuous": BoundedNormalHead,
}


class ActorStep(NamedTuple):
    """What an actor objective may use, for the ``H`` steps of ``N`` imagined trajectories.

    ``feat (N, H+1, F)``, ``reward (N, H)`` and ``cont (N, H+1)`` carry gradients back to
    the sampled actions when imagination ran with them; ``value (N, H+1)``, ``scale ()``
    and ``advantage (N, H)`` are detached; ``log_prob (N, H)`` is the actor's, of the taken
    (detached) actions, in the detached states."""

    feat: torch.Tensor
    reward: torch.Tensor
    cont: torch.Tensor
    value: torch.Tensor
    scale: torch.Tensor
    log_prob: torch.Tensor
    advantage: torch.Tensor


class ReturnsThroughDynamics(Protocol):
    """The actor-critic, as an objective sees it."""

    def differentiable_returns(
        self, feat: torch.Tensor, reward: torch.Tensor, cont: torch.Tensor
    ) -> torch.Tensor: ...


def reinforce_objective(actor_critic: ReturnsThroughDynamics, step: ActorStep) -> torch.Tensor:
    """Score-function estimator: ``log pi(a_t | s_t) * sg(advantage_t)``, ``(N, H)``."""
    return step.log_prob * step.advantage


def dynamics_objective(actor_critic: ReturnsThroughDynamics, step: ActorStep) -> torch.Tensor:
    """The normalised advantage itself, ``(R_t - sg(v_t)) / S``, ``(N, H)``, where the
    lambda-return ``R_t`` is differentiated through the imagined rewards, continue flags
    and critic values, and through them the RSSM prior, back to the sampled actions."""
    returns = actor_critic.differentiable_returns(step.feat, step.reward, step.cont)
    H = returns.shape[1]
    return (returns - step.value[:, :H]) / step.scale


@dataclass(frozen=True)
class ActorGradient:
    """One way of training the actor: the per-step objective it maximises, and whether
    that objective is differentiated through the imagined trajectory (then imagination
    runs inside the actor-critic update, with gradients)."""

    objective: Callable[[ReturnsThroughDynamics, ActorStep], torch.Tensor]
    through_dynamics: bool
    """Also: the actions must be reparameterised samples (a gradient path to the actor)."""


ACTOR_GRADIENTS: dict[str, ActorGradient] = {
    "reinforce": ActorGradient(reinforce_objective, through_dynamics=False),
    "dynamics": ActorGradient(dynamics_objective, through_dynamics=True),
}

AUTO_ACTOR_GRADIENT = {"discrete": "reinforce", "continuous": "dynamics"}
"""``ac.actor_grad=auto``: the 2023 paper's code (dynamics for continuous actions)."""


def resolve_actor_grad(name: str, action_kind: str) -> str:
    """``ac.actor_grad`` with ``auto`` replaced by the choice for ``action_kind``."""
    return AUTO_ACTOR_GRADIENT[action_kind] if name == "auto" else name
