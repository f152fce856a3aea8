"""Actor-critic learning on imagined trajectories (paper section 3).

Shape symbols: ``N`` imagination starts, ``H`` horizon, ``F`` features, ``A`` actions
(one-hot classes, or the dimensions of a continuous action),
``NB`` two-hot bins. A trajectory has ``H + 1`` states (index 0 is the start) and ``H``
actions; ``reward[:, t]`` and ``cont[:, t]`` belong to the transition into state ``t + 1``.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from agent.config import Config
from agent.dists import twohot_bins, twohot_loss, twohot_mean
from agent.members import expand_to_rows, member_means, member_stds, member_sums
from agent.nets import MLP
from agent.policy import (
    ACTION_HEADS,
    ACTOR_GRADIENTS,
    ActorGradient,
    ActorStep,
    Params,
    resolve_actor_grad,
)


def lambda_return(
    reward: torch.Tensor,
    cont: torch.Tensor,
    value: torch.Tensor,
    discount: float,
    lam: float,
    cut: torch.Tensor | None = None,
) -> torch.Tensor:
    """Bootstrapped lambda-returns (paper eq. 7), computed backwards in time.

    ``R_t = r_t + gamma c_t ((1 - lam) v_{t+1} + lam R_{t+1})``, ``R_H = v_H``, where
    ``reward (N, H)`` and ``cont (N, H)`` are those of the transition from state t to t+1 and
    ``value (N, H+1)`` are the critic's values of states ``0..H``. Where the optional bool
    ``cut (N, H)`` is set, the transition is not real and ``R_t = v_t``. Returns ``(N, H)``.
    """
    N, H = reward.shape
    assert cont.shape == (N, H) and value.shape == (N, H + 1), (cont.shape, value.shape)
    disc = discount * cont
    interm = reward + disc * (1 - lam) * value[:, 1:]
    returns = []
    last = value[:, -1]
    for t in reversed(range(H)):
        last = interm[:, t] + disc[:, t] * lam * last
        if cut is not None:
            last = torch.where(cut[:, t], value[:, t], last)
        returns.append(last)
    return torch.stack(returns[::-1], 1)


def replay_return(
    reward: torch.Tensor,
    cont: torch.Tensor,
    is_first: torch.Tensor,
    value: torch.Tensor,
    discount: float,
    lam: float,
) -> torch.Tensor:
    """Lambda-returns along replayed sequences, bootstrapped with per-step value annotations.

    ``reward``, ``cont`` (1 - is_terminal), ``is_first`` and ``value`` are ``(B, T)`` and
    belong to step t (``reward[:, t]`` was received on arriving there), so step t's
    transition is the one into t+1; where step t+1 starts a new episode the sequence is cut
    (``R_t = v_t``), and ``R_{T-1} = v_{T-1}``. Returns ``(B, T)``.
    """
    B, T = reward.shape
    assert cont.shape == is_first.shape == value.shape == (B, T)
    returns = lambda_return(reward[:, 1:], cont[:, 1:], value, discount, lam, cut=is_first[:, 1:])
    return torch.cat([returns, value[:, -1:]], 1)


def quantiles(values: torch.Tensor, levels: tuple[float, ...]) -> list[torch.Tensor]:
    """``torch.quantile(values, q, dim=-1)`` with linear interpolation for each level of
    ``levels``, from one sort of ``values (..., M)``; each ``(...)``. The ranks come from the
    static length, so nothing is copied to or read back from the device (``torch.quantile``
    takes ``q`` as a tensor)."""
    M = values.shape[-1]
    ordered = values.sort().values
    out = []
    for level in levels:
        rank = level * (M - 1)
        below = math.floor(rank)
        above = min(below + 1, M - 1)
        out.append(torch.lerp(ordered[..., below], ordered[..., above], rank - below))
    return out


class ReturnNormalizer(nn.Module):
    """Scale of returns: EMA of the 5th-95th percentile range, floored at 1 (paper eq. 11).

    Dividing advantages by ``max(1, S)`` keeps the entropy bonus meaningful across reward
    scales without amplifying noise when rewards are small.
    """

    def __init__(self, decay: float):
        super().__init__()
        self.decay = decay
        self.members = 1  # a seed batch's normaliser keeps one spread per member: (K,)
        self.register_buffer("spread", torch.zeros(()))

    @torch.no_grad()
    def update(self, returns: torch.Tensor) -> torch.Tensor:
        """Fold this batch's percentile range in; return the current scale ``max(1, S)``:
        a scalar, or ``(K,)`` for a seed batch (each member's from its own rows)."""
        values = returns.detach().float()
        values = values.flatten() if self.members == 1 else values.reshape(self.members, -1)
        low, high = quantiles(values, (0.05, 0.95))
        self.spread.lerp_(high - low, 1 - self.decay)
        return self.spread.clamp(min=1.0)


class ActorCritic(nn.Module):
    """Actor (categorical or bounded normal, by ``env.actions``), trained by REINFORCE or
    through the dynamics (by ``ac.actor_grad``), and a two-hot critic with a slow EMA."""

    def __init__(self, config: Config, feature_dim: int, num_actions: int):
        super().__init__()
        m, ac = config.model, config.ac
        self.config = config
        self.num_actions = num_actions
        self.members = 1  # seeds folded into the batch axis (see agent.members)
        self.head = ACTION_HEADS[config.env.actions](config)
        self.gradient: ActorGradient = ACTOR_GRADIENTS[
            resolve_actor_grad(ac.actor_grad, config.env.actions)
        ]
        if self.gradient.through_dynamics and not self.head.reparameterised:
            raise ValueError(f"ac.actor_grad={ac.actor_grad} needs continuous actions")
        self.actor = MLP(feature_dim, self.head.out_dim(num_actions), m.units, m.layers)
        self.critic = MLP(feature_dim, m.bins, m.units, m.layers, zero_out=True)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.return_norm = ReturnNormalizer(ac.return_norm_decay)
        self.register_buffer("bins", twohot_bins(m.bins), persistent=False)

    def policy(self, feat: torch.Tensor) -> Params:
        """The action distribution's parameters for features ``(..., F)``: ``probs (..., A)``
        (discrete) or ``mean``, ``std (..., A)`` (continuous)."""
        return self.head.params(self.actor(feat))

    def action_probs(self, feat: torch.Tensor) -> torch.Tensor:
        """``(..., F) -> (..., A)`` action probabilities with the uniform floor (discrete)."""
        return self.policy(feat)["probs"]

    def act(
        self, feat: torch.Tensor, generator: torch.Generator | None, greedy: bool = False
    ) -> torch.Tensor:
        """Action ``(N, A)`` for features ``(N, F)``: sampled, or the mode if greedy.

        Discrete actions are one-hot and detached; continuous ones are reparameterised
        samples, differentiable in the actor's parameters where gradients are on."""
        params = self.policy(feat)
        return self.head.mode(params) if greedy else self.head.sample(params, generator)

    def value(self, feat: torch.Tensor) -> torch.Tensor:
        """Critic's expected return ``(..., F) -> (...)``."""
        return twohot_mean(self.critic(feat), self.bins)

    def differentiable_returns(
        self, feat: torch.Tensor, reward: torch.Tensor, cont: torch.Tensor
    ) -> torch.Tensor:
        """Lambda-returns ``(N, H)`` of a trajectory (see :meth:`compute_loss` for shapes)
        as a differentiable function of its states, rewards and continue flags.

        The critic bootstraps with its parameters held fixed (detached copies), so the
        actor's objective moves the actor alone, never the critic."""
        fixed = {name: p.detach() for name, p in self.critic.named_parameters()}
        value = twohot_mean(torch.func.functional_call(self.critic, fixed, (feat,)), self.bins)
        ac = self.config.ac
        return lambda_return(reward, cont[:, 1:], value, ac.discount, ac.return_lambda)

    def compute_loss(
        self,
        feat: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        cont: torch.Tensor,
        replay: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Actor and critic loss on one imagined trajectory.

        ``feat (N, H+1, F)``, ``action (N, H, A)``; ``reward (N, H)`` and ``cont (N, H + 1)``
        where ``cont[:, 0]`` is the start state's own continue flag and ``cont[:, t+1]`` the
        prediction for state ``t+1``. They are detached (imagined without gradients) unless
        the actor learns through the dynamics; then only the actor's objective reads their
        gradients: the critic, its targets, the step weights and the actor's own inputs
        all see them detached. With ``ac.replay_critic``, ``replay`` holds the replayed
        sequences the starts came from (see :meth:`replay_critic_loss`). Returns the summed
        loss and detached metrics.
        """
        N, H1, _ = feat.shape
        H = H1 - 1
        assert self.gradient.through_dynamics or not feat.requires_grad, (
            "imagined states must be detached from the world model"
        )
        assert action.shape == (N, H, self.num_actions) and reward.shape == (N, H)
        assert cont.shape == (N, H + 1)
        ac = self.config.ac
        detached = feat.detach()

        # One critic pass serves both the bootstrap values (detached) and the critic loss.
        critic_logits = self.critic(detached)  # (N, H+1, NB)
        with torch.no_grad():
            value = twohot_mean(critic_logits.detach(), self.bins)  # (N, H+1)
            returns = lambda_return(
                reward.detach(), cont[:, 1:].detach(), value, ac.discount, ac.return_lambda
            )
            # Weight of each step: probability (times discount) of still being in the episode.
            weight = torch.cumprod(ac.discount * cont.detach(), 1)[:, :H] / ac.discount  # (N, H)
            member_scale = self.return_norm.update(returns)  # () or (K,)
            scale = expand_to_rows(member_scale, N, self.members)
            advantage = (returns - value[:, :H]) / scale
            # Contiguous: a strided (N, H, F) view makes every linear layer a batched matmul.
            states = detached[:, :H].contiguous()  # the H states actions were taken in
            slow_value = twohot_mean(self.slow_critic(states), self.bins)

        # Actor: the objective of ac.actor_grad plus an entropy bonus (eq. 11).
        params = self.policy(states)  # (N, H, A) each
        log_prob = self.head.log_prob(params, action.detach())
        entropy = self.head.entropy(params)
        step = ActorStep(feat, reward, cont, value, scale, log_prob, advantage)
        objective = self.gradient.objective(self, step)  # (N, H)
        members = self.members
        actor_loss = -member_means(weight * (objective + ac.entropy * entropy), members)

        # Critic: two-hot regression on lambda-returns, regularised towards the slow critic.
        logits = critic_logits[:, :H]
        critic_loss = twohot_loss(logits, returns, self.bins)
        critic_loss = critic_loss + ac.slow_critic_reg * twohot_loss(logits, slow_value, self.bins)
        critic_loss = member_means(weight * critic_loss, members)

        metrics = {}
        if replay is not None:  # the trainer passes it when ac.replay_critic > 0
            replay_loss = self.replay_critic_loss(replay, returns[:, 0])
            critic_loss = critic_loss + ac.replay_critic * replay_loss
            metrics["loss/replay_critic"] = replay_loss.detach()

        metrics |= {
            "loss/actor": actor_loss.detach(),
            "loss/critic": critic_loss.detach(),
            "ac/entropy": member_means(entropy.detach(), members),
            "ac/return_scale": member_scale,
            "ac/return": member_means(returns, members),
            "ac/value": member_means(value, members),
            "ac/imagined_reward": member_means(reward.detach(), members),
            "ac/advantage_std": member_stds(advantage, members),
        }
        # A seed batch's loss is the sum of its members' losses (see agent.members).
        return (actor_loss + critic_loss).sum(), metrics

    def replay_critic_loss(
        self, replay: dict[str, torch.Tensor], start_returns: torch.Tensor
    ) -> torch.Tensor:
        """Critic loss on replayed sequences (DreamerV3, 2024 revision): two-hot regression of
        the critic at each replayed state on lambda-returns over the real rewards and
        terminations, regularised towards the slow critic like the imagined loss.

        ``replay`` holds ``feat (B, T, F)`` (detached posteriors), ``reward``, ``cont``,
        ``is_first`` and ``is_start`` ``(B, T)``, where ``is_start`` marks, in row-major
        order, the ``N`` states imagination started from; their imagined returns
        ``start_returns (N,)`` annotate those steps (the on-policy value estimate), and the
        critic's own value annotates the rest. Terminal states are left out.
        """
        feat, is_start = replay["feat"], replay["is_start"]
        B, T, _ = feat.shape
        assert not feat.requires_grad and is_start.shape == (B, T)
        assert start_returns.shape[0] in (B, B * T), start_returns.shape  # last | all
        logits = self.critic(feat)  # (B, T, NB)
        with torch.no_grad():
            annotation = twohot_mean(logits.detach(), self.bins)
            # masked_scatter_ fills the marked steps in row-major order, without a host sync.
            annotation.masked_scatter_(is_start, start_returns.to(annotation.dtype))
            ac = self.config.ac
            returns = replay_return(
                replay["reward"],
                replay["cont"],
                replay["is_first"],
                annotation,
                ac.discount,
                ac.return_lambda,
            )
            slow_value = twohot_mean(self.slow_critic(feat), self.bins)
        loss = twohot_loss(logits, returns, self.bins)
        loss = loss + ac.slow_critic_reg * twohot_loss(logits, slow_value, self.bins)
        # The last step has no real successor here and terminal states have no future.
        weight = replay["cont"].clone()
        weight[:, -1] = 0.0
        members = self.members
        return member_sums(weight * loss, members) / member_sums(weight, members).clamp(min=1.0)

    @torch.no_grad()
    def update_slow_critic(self) -> None:
        """Move the slow critic a fraction towards the critic (an EMA of its weights)."""
        fraction = self.config.ac.slow_critic_fraction
        for slow, fast in zip(self.slow_critic.parameters(), self.critic.parameters(), strict=True):
            slow.lerp_(fast, fraction)
