"""The world model: encoder, RSSM, decoder, reward and continue heads (paper section 2).

Shape symbols: ``B`` batch, ``T`` time, ``N`` imagination starts, ``H`` horizon,
``D`` deter, ``S`` stoch latents, ``K`` classes, ``A`` actions, ``E`` embedding.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from agent.config import Config
from agent.dists import (
    categorical_kl,
    sample_onehot,
    symlog,
    twohot_bins,
    twohot_loss,
    twohot_mean,
    unimix_probs,
)
from agent.members import member_means
from agent.nets import MLP, ConvDecoder, ConvEncoder

Policy = Callable[[torch.Tensor], torch.Tensor]
"""Maps features ``(N, D + S*K)`` to actions ``(N, A)`` (one-hot, or continuous vectors)."""

ACTION_INPUTS: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "discrete": lambda action, num_actions: F.one_hot(action, num_actions).float(),
    "continuous": lambda action, num_actions: action.float(),
}
"""Replayed actions ``(B, T)`` indices or ``(B, T, A)`` vectors -> RSSM inputs ``(B, T, A)``,
by ``env.actions``."""


class LayerNormGRU(nn.Module):
    """GRU cell with LayerNorm on the gates and update bias -1 (DreamerV3's RSSM core).

    ``(B, I), (B, D) -> (B, D)``. The -1 bias makes the cell keep its state early in
    training, which stabilises long sequences.
    """

    def __init__(self, in_dim: int, deter: int):
        super().__init__()
        self.linear = nn.Linear(in_dim + deter, 3 * deter, bias=False)
        self.norm = nn.LayerNorm(3 * deter)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        parts = self.norm(self.linear(torch.cat([x, h], -1)))
        reset, candidate, update = parts.chunk(3, -1)
        candidate = torch.tanh(torch.sigmoid(reset) * candidate)
        update = torch.sigmoid(update - 1.0)
        return update * candidate + (1 - update) * h


class RSSM(nn.Module):
    """Recurrent state-space model with a GRU state ``h`` and categorical latents ``z``."""

    def __init__(self, config: Config, embed_dim: int, num_actions: int):
        super().__init__()
        m = config.model
        self.deter, self.stoch, self.classes, self.unimix = m.deter, m.stoch, m.classes, m.unimix
        self.num_actions = num_actions
        self.img_in = MLP(m.stoch * m.classes + num_actions, None, m.units, 1)
        self.gru = LayerNormGRU(m.units, m.deter)
        self.prior_net = MLP(m.deter, m.stoch * m.classes, m.units, 1)
        # The posterior is an MLP over [h, embed]. Its first layer is kept as two halves
        # (initialised as the one layer they add up to) so that the embed half runs once
        # for a whole sequence instead of once per step: same function, fewer small matmuls.
        post_net = MLP(m.deter + embed_dim, m.stoch * m.classes, m.units, 1)
        joint = post_net[0].weight.detach()  # (U, D + E)
        # skip_init: the halves take the joint layer's values and draw no random numbers.
        self.post_deter = nn.utils.skip_init(nn.Linear, m.deter, m.units, bias=False)
        self.post_embed = nn.utils.skip_init(nn.Linear, embed_dim, m.units, bias=False)
        with torch.no_grad():
            self.post_deter.weight.copy_(joint[:, : m.deter])
            self.post_embed.weight.copy_(joint[:, m.deter :])
        self.post_out = nn.Sequential(*list(post_net)[1:])  # LayerNorm -> SiLU -> logits

    @property
    def feature_dim(self) -> int:
        return self.deter + self.stoch * self.classes

    def initial(self, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero state ``h (B, D)``, ``z (B, S, K)``."""
        return (
            torch.zeros(batch, self.deter, device=device),
            torch.zeros(batch, self.stoch, self.classes, device=device),
        )

    def _probs(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        logits = net(x).reshape(*x.shape[:-1], self.stoch, self.classes)
        return unimix_probs(logits, self.unimix)  # (B, S, K)

    def transition(self, h: torch.Tensor, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Deterministic GRU step: ``h (B, D), z (B, S, K), action (B, A)`` -> new ``h``."""
        return self.gru(self.img_in(torch.cat([z.flatten(-2), action], -1)), h)

    def prior(self, h: torch.Tensor) -> torch.Tensor:
        """Prior probs over ``z`` given ``h``: ``(..., D) -> (..., S, K)``."""
        return self._probs(self.prior_net, h)

    def img_step(
        self, h: torch.Tensor, z: torch.Tensor, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One prior step: ``h (B, D), z (B, S, K), action (B, A)`` -> new ``h``, prior probs."""
        h = self.transition(h, z, action)
        return h, self.prior(h)

    def obs_step(
        self,
        h: torch.Tensor,
        z: torch.Tensor,
        action: torch.Tensor,
        embed: torch.Tensor,
        is_first: torch.Tensor,
        generator: torch.Generator | None,
    ) -> dict[str, torch.Tensor]:
        """One posterior step; state, action and ``is_first (B,)`` are for the new obs.

        Where ``is_first``, the previous state and action are reset to zero first.
        Returns ``h (B, D)``, sampled ``z (B, S, K)`` and ``post`` probs ``(B, S, K)``.
        """
        h, post = self.posterior_step(h, z, action, self.post_embed(embed), is_first)
        return {"h": h, "z": sample_onehot(post, generator), "post": post}

    def posterior_step(
        self,
        h: torch.Tensor,
        z: torch.Tensor,
        action: torch.Tensor,
        embed_in: torch.Tensor,
        is_first: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The deterministic part of :meth:`obs_step`, given the embedding already through
        ``post_embed`` (``embed_in (B, U)``): new ``h (B, D)`` and posterior probs
        ``(B, S, K)``. Kept free of random draws so it can be compiled."""
        keep = (~is_first).float()
        h, z, action = h * keep[:, None], z * keep[:, None, None], action * keep[:, None]
        h = self.transition(h, z, action)
        return h, self._probs(self.post_out, self.post_deter(h) + embed_in)

    def observe(
        self,
        embed: torch.Tensor,
        action: torch.Tensor,
        is_first: torch.Tensor,
        generator: torch.Generator | None,
    ) -> dict[str, torch.Tensor]:
        """Filter ``embed (B, T, E)`` given ``action (B, T, A)`` vectors, ``is_first (B, T)``.

        Starts from the zero state (every sequence's first step is marked ``is_first``).
        Returns ``h (B, T, D)``, ``z (B, T, S, K)``, ``post`` and ``prior`` ``(B, T, S, K)``.
        """
        B, T = embed.shape[:2]
        assert action.shape == (B, T, self.num_actions), action.shape
        # Everything that does not feed the recurrence runs once over all T steps: the
        # embed half of the posterior's first layer before the loop, the prior after it.
        embed_in = self.post_embed(embed)  # (B, T, U)
        h, z = self.initial(B, embed.device)
        hs, zs, posts = [], [], []
        for t in range(T):
            h, post = self.posterior_step(h, z, action[:, t], embed_in[:, t], is_first[:, t])
            z = sample_onehot(post, generator)
            hs.append(h)
            zs.append(z)
            posts.append(post)
        h = torch.stack(hs, 1)
        return {
            "h": h,
            "z": torch.stack(zs, 1),
            "post": torch.stack(posts, 1),
            "prior": self.prior(h),
        }

    def imagine(
        self,
        h: torch.Tensor,
        z: torch.Tensor,
        policy: Policy,
        horizon: int,
        generator: torch.Generator | None,
    ) -> dict[str, torch.Tensor]:
        """Roll the prior forward under ``policy`` from starts ``h (N, D)``, ``z (N, S, K)``.

        Returns ``h (N, H+1, D)``, ``z (N, H+1, S, K)`` (index 0 is the start) and the
        ``action (N, H, A)`` taken at steps ``0..H-1``. Run with gradients enabled, the
        states are differentiable in the actions (and the latents pass straight-through
        gradients), which is what actor gradients through the dynamics need.
        """
        N = h.shape[0]
        assert h.shape == (N, self.deter) and z.shape == (N, self.stoch, self.classes)
        hs, zs, actions = [h], [z], []
        for _ in range(horizon):
            action = policy(torch.cat([h, z.flatten(-2)], -1))
            h, prior = self.img_step(h, z, action)
            z = sample_onehot(prior, generator)
            hs.append(h)
            zs.append(z)
            actions.append(action)
        return {"h": torch.stack(hs, 1), "z": torch.stack(zs, 1), "action": torch.stack(actions, 1)}


def features(h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Model state as one vector: ``h (..., D), z (..., S, K) -> (..., D + S*K)``."""
    return torch.cat([h, z.flatten(-2)], -1)


class WorldModel(nn.Module):
    """Encoder + RSSM + decoder + reward and continue heads, trained on replayed sequences."""

    def __init__(self, config: Config, obs_shapes: dict[str, tuple[int, ...]], num_actions: int):
        super().__init__()
        m = config.model
        self.config = config
        self.num_actions = num_actions
        self.members = 1  # seeds folded into the batch axis (see agent.members)
        (self.obs_key,) = obs_shapes
        if self.obs_key == "image":
            self.encoder: nn.Module = ConvEncoder(config.env.size, m.cnn_depth)
            embed_dim = self.encoder.out_dim
        else:
            (vector_dim,) = obs_shapes["vector"]
            self.encoder = MLP(vector_dim, None, m.units, m.layers)
            embed_dim = m.units
        self.rssm = RSSM(config, embed_dim, num_actions)
        feat = self.rssm.feature_dim
        if self.obs_key == "image":
            self.decoder: nn.Module = ConvDecoder(feat, config.env.size, m.cnn_depth)
        else:
            self.decoder = MLP(feat, vector_dim, m.units, m.layers)
        self.reward_head = MLP(feat, m.bins, m.units, m.layers, zero_out=True)
        self.cont_head = MLP(feat, 1, m.units, m.layers)
        self.register_buffer("bins", twohot_bins(m.bins), persistent=False)

    def inputs(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations as the encoder reads them and the decoder predicts them:
        ``uint8`` pixels scaled to [-0.5, 0.5], vectors symlog-ed. Shape unchanged."""
        if self.obs_key == "image":
            return obs.float() / 255.0 - 0.5
        return symlog(obs)

    def embed(self, obs: torch.Tensor) -> torch.Tensor:
        """Encode observations ``(B, T, *obs_shape) -> (B, T, E)``."""
        return self.encoder(self.inputs(obs))

    def observe(
        self,
        batch: dict[str, torch.Tensor],
        generator: torch.Generator | None,
        inputs: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Posterior filter over a replay batch (see :meth:`RSSM.observe`); ``inputs`` are
        the batch's observations through :meth:`inputs`, if the caller has them already."""
        if inputs is None:
            inputs = self.inputs(batch[self.obs_key])
        action = ACTION_INPUTS[self.config.env.actions](batch["action"], self.num_actions)
        return self.rssm.observe(self.encoder(inputs), action, batch["is_first"], generator)

    def reward(self, feat: torch.Tensor) -> torch.Tensor:
        """Predicted reward ``(..., F) -> (...)``."""
        return twohot_mean(self.reward_head(feat), self.bins)

    def cont(self, feat: torch.Tensor) -> torch.Tensor:
        """Predicted probability that the episode continues ``(..., F) -> (...)``."""
        return torch.sigmoid(self.cont_head(feat).squeeze(-1))

    def imagine_trajectory(
        self,
        start: dict[str, torch.Tensor],
        policy: Policy,
        horizon: int,
        generator: torch.Generator | None,
    ) -> dict[str, torch.Tensor]:
        """Trajectories under ``policy`` from ``start`` (``h (N, D)``, ``z (N, S, K)``,
        ``cont (N,)``): ``feat (N, H+1, F)``, ``action (N, H, A)``, predicted ``reward (N,
        H)``, ``cont (N, H+1)`` (the start's own flag first) and ``h (N, H+1, D)``.

        With gradients on, everything but the starts is differentiable in the actions."""
        trajectory = self.rssm.imagine(start["h"], start["z"], policy, horizon, generator)
        feat = features(trajectory["h"], trajectory["z"])  # (N, H+1, F)
        reward = self.reward(feat[:, 1:])  # (N, H)
        cont = torch.cat([start["cont"][:, None], self.cont(feat[:, 1:])], 1)  # (N, H+1)
        return {
            "feat": feat,
            "action": trajectory["action"],
            "reward": reward,
            "cont": cont,
            "h": trajectory["h"],
        }

    def compute_loss(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """World-model loss on a replay batch of ``(B, T)`` sequences (paper eq. 5).

        Returns ``(loss, metrics, posterior)``: the scalar loss; detached metric tensors
        named ``loss/<term>`` and ``wm/...`` (``(K,)`` for a seed batch, one per member); and
        the posterior sequence ``{"h": (B, T, D), "z": (B, T, S, K)}``, still attached to the
        graph.
        """
        obs = self.inputs(batch[self.obs_key])  # encoder input and decoder target at once
        B, T = obs.shape[:2]
        post = self.observe(batch, generator, inputs=obs)
        feat = features(post["h"], post["z"])  # (B, T, F)

        # Prediction losses: reconstruction, reward (two-hot symlog), continue flag.
        decoder = F.mse_loss(self.decoder(feat), obs, reduction="none")
        decoder = decoder.sum(tuple(range(2, decoder.dim())))  # (B, T)
        reward = twohot_loss(self.reward_head(feat), batch["reward"], self.bins)
        cont_target = (~batch["is_terminal"]).float()
        cont_logits = self.cont_head(feat).squeeze(-1)  # (B, T)
        cont = F.binary_cross_entropy_with_logits(cont_logits, cont_target, reduction="none")

        # KL balancing with free bits: dyn trains the prior, rep the posterior (eq. 5).
        free = self.config.wm.free_nats
        dyn = categorical_kl(post["post"].detach(), post["prior"]).clamp(min=free)
        rep = categorical_kl(post["post"], post["prior"].detach()).clamp(min=free)

        terms = {"decoder": decoder, "reward": reward, "cont": cont, "dyn": dyn, "rep": rep}
        scales = self.config.wm.loss_scales
        assert terms.keys() == scales.keys(), (terms.keys(), scales.keys())
        for value in terms.values():
            assert value.shape == (B, T), value.shape
        # A seed batch's loss is the sum of its members' (see agent.members); one run's, its mean.
        members = self.members
        member_loss = member_means(sum(scales[k] * v for k, v in terms.items()), members)
        loss = member_loss.sum()

        with torch.no_grad():
            metrics = {f"loss/{k}": member_means(v, members) for k, v in terms.items()}
            metrics["loss/wm"] = member_loss.detach()
            kl = categorical_kl(post["post"], post["prior"])
            metrics["wm/kl"] = member_means(kl, members)
            entropy = -(post["post"] * post["post"].log()).sum((-2, -1))
            metrics["wm/post_entropy"] = member_means(entropy, members)
            correct = ((cont_logits > 0).float() == cont_target).float()
            metrics["wm/cont_accuracy"] = member_means(correct, members)
        return loss, metrics, {"h": post["h"], "z": post["z"]}
