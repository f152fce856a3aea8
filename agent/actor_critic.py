"""Actor-critic learning on imagined trajectories (paper section 3).

Shape symbols: ``N`` imagination starts, ``H`` horizon, ``F`` features, ``A`` actions,
``NB`` two-hot bins. A trajectory has ``H + 1`` states (index 0 is the start) and ``H``
actions; ``reward[:, t]`` and ``cont[:, t]`` belong to the transition into state ``t + 1``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from agent.config import Config
from agent.dists import sample_onehot, twohot_bins, twohot_loss, twohot_mean, unimix_probs
from agent.nets import MLP


def lambda_return(
    reward: torch.Tensor,
    cont: torch.Tensor,
    value: torch.Tensor,
    discount: float,
    lam: float,
) -> torch.Tensor:
    """Bootstrapped lambda-returns (paper eq. 7), computed backwards in time.

    ``R_t = r_t + gamma c_t ((1 - lam) v_{t+1} + lam R_{t+1})``, ``R_H = v_H``, where
    ``reward (N, H)`` and ``cont (N, H)`` are those of the transition from state t to t+1 and
    ``value (N, H+1)`` are the critic's values of states ``0..H``. Returns ``(N, H)``.
    """
    N, H = reward.shape
    assert cont.shape == (N, H) and value.shape == (N, H + 1), (cont.shape, value.shape)
    disc = discount * cont
    interm = reward + disc * (1 - lam) * value[:, 1:]
    returns = []
    last = value[:, -1]
    for t in reversed(range(H)):
        last = interm[:, t] + disc[:, t] * lam * last
        returns.append(last)
    return torch.stack(returns[::-1], 1)


class ReturnNormalizer(nn.Module):
    """Scale of returns: EMA of the 5th-95th percentile range, floored at 1 (paper eq. 11).

    Dividing advantages by ``max(1, S)`` keeps the entropy bonus meaningful across reward
    scales without amplifying noise when rewards are small.
    """

    def __init__(self, decay: float):
        super().__init__()
        self.decay = decay
        self.register_buffer("spread", torch.zeros(()))

    @torch.no_grad()
    def update(self, returns: torch.Tensor) -> torch.Tensor:
        """Fold this batch's percentile range in; return the current scale ``max(1, S)``."""
        flat = returns.detach().flatten().float()
        low, high = torch.quantile(flat, torch.tensor([0.05, 0.95], device=flat.device))
        self.spread.lerp_(high - low, 1 - self.decay)
        return self.spread.clamp(min=1.0)


class ActorCritic(nn.Module):
    """Categorical actor (REINFORCE) and two-hot critic with a slow EMA critic."""

    def __init__(self, config: Config, feature_dim: int, num_actions: int):
        super().__init__()
        m, ac = config.model, config.ac
        self.config = config
        self.num_actions = num_actions
        self.actor = MLP(feature_dim, num_actions, m.units, m.layers)
        self.critic = MLP(feature_dim, m.bins, m.units, m.layers, zero_out=True)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.return_norm = ReturnNormalizer(ac.return_norm_decay)
        self.register_buffer("bins", twohot_bins(m.bins), persistent=False)

    def action_probs(self, feat: torch.Tensor) -> torch.Tensor:
        """``(..., F) -> (..., A)`` action probabilities with the uniform floor."""
        return unimix_probs(self.actor(feat), self.config.model.unimix)

    def act(
        self, feat: torch.Tensor, generator: torch.Generator | None, greedy: bool = False
    ) -> torch.Tensor:
        """One-hot action ``(N, A)`` for features ``(N, F)``: sampled, or the mode if greedy."""
        probs = self.action_probs(feat)
        if greedy:
            return nn.functional.one_hot(probs.argmax(-1), self.num_actions).float()
        return sample_onehot(probs, generator).detach()

    def value(self, feat: torch.Tensor) -> torch.Tensor:
        """Critic's expected return ``(..., F) -> (...)``."""
        return twohot_mean(self.critic(feat), self.bins)

    def compute_loss(
        self,
        feat: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        cont: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Actor and critic loss on one detached imagined trajectory.

        ``feat (N, H+1, F)``, one-hot ``action (N, H, A)``; ``reward (N, H)`` and
        ``cont (N, H + 1)`` where ``cont[:, 0]`` is the start state's own continue flag
        and ``cont[:, t+1]`` the prediction for state ``t+1``. Returns the summed loss and
        detached metrics.
        """
        N, H1, _ = feat.shape
        H = H1 - 1
        assert not feat.requires_grad, "imagined states must be detached from the world model"
        assert action.shape == (N, H, self.num_actions) and reward.shape == (N, H)
        assert cont.shape == (N, H + 1)
        ac = self.config.ac

        # One critic pass serves both the bootstrap values (detached) and the critic loss.
        critic_logits = self.critic(feat)  # (N, H+1, NB)
        with torch.no_grad():
            value = twohot_mean(critic_logits.detach(), self.bins)  # (N, H+1)
            returns = lambda_return(reward, cont[:, 1:], value, ac.discount, ac.return_lambda)
            # Weight of each step: probability (times discount) of still being in the episode.
            weight = torch.cumprod(ac.discount * cont, 1)[:, :H] / ac.discount  # (N, H)
            scale = self.return_norm.update(returns)
            advantage = (returns - value[:, :H]) / scale
            # Contiguous: a strided (N, H, F) view makes every linear layer a batched matmul.
            states = feat[:, :H].contiguous()  # the H states actions were taken in
            slow_value = twohot_mean(self.slow_critic(states), self.bins)

        # Actor: REINFORCE with normalised advantages plus an entropy bonus (eq. 11).
        probs = self.action_probs(states)  # (N, H, A)
        log_prob = (action * probs.log()).sum(-1)
        entropy = -(probs * probs.log()).sum(-1)
        actor_loss = -(weight * (log_prob * advantage + ac.entropy * entropy)).mean()

        # Critic: two-hot regression on lambda-returns, regularised towards the slow critic.
        logits = critic_logits[:, :H]
        critic_loss = twohot_loss(logits, returns, self.bins)
        critic_loss = critic_loss + ac.slow_critic_reg * twohot_loss(logits, slow_value, self.bins)
        critic_loss = (weight * critic_loss).mean()

        metrics = {
            "loss/actor": actor_loss.detach(),
            "loss/critic": critic_loss.detach(),
            "ac/entropy": entropy.detach().mean(),
            "ac/return_scale": scale,
            "ac/return": returns.mean(),
            "ac/value": value.mean(),
            "ac/imagined_reward": reward.mean(),
            "ac/advantage_std": advantage.std(),
        }
        return actor_loss + critic_loss, metrics

    @torch.no_grad()
    def update_slow_critic(self) -> None:
        """Move the slow critic a fraction towards the critic (an EMA of its weights)."""
        fraction = self.config.ac.slow_critic_fraction
        for slow, fast in zip(self.slow_critic.parameters(), self.critic.parameters(), strict=True):
            slow.lerp_(fast, fraction)
