"""Pure tensor helpers for DreamerV3's distributions (Hafner et al. 2023, 'Mastering
Diverse Domains through World Models', section 2 and appendix).

Shape symbols: ``B`` batch, ``T`` time, ``S`` latents, ``K`` classes, ``N`` bins.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from agent.members import MemberGenerators, fill_random


def symlog(x: torch.Tensor) -> torch.Tensor:
    """``sign(x) * ln(|x| + 1)`` (paper eq. 9), elementwise."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: torch.Tensor) -> torch.Tensor:
    """``sign(x) * (exp(|x|) - 1)``, the inverse of :func:`symlog` (eq. 9)."""
    return torch.sign(x) * torch.expm1(torch.abs(x))


def unimix_probs(logits: torch.Tensor, unimix: float) -> torch.Tensor:
    """Softmax over the last axis mixed with ``unimix`` of the uniform distribution.

    The 1% uniform floor keeps KL terms and log-probabilities finite (paper, 'Robust
    predictors'). ``(..., K) -> (..., K)``.
    """
    probs = torch.softmax(logits, -1)
    if unimix > 0:
        probs = (1 - unimix) * probs + unimix / probs.shape[-1]
    return probs


def sample_onehot(
    probs: torch.Tensor, generator: torch.Generator | MemberGenerators | None
) -> torch.Tensor:
    """One-hot sample of ``probs (..., K)`` with straight-through gradients.

    The forward value is the one-hot sample; the backward pass sees ``probs`` (Bengio et
    al. 2013), which is how the RSSM's latents and the actor pass gradients.
    """
    flat = probs.detach().reshape(-1, probs.shape[-1])
    # Exponential race (the Gumbel-max trick with exp applied): argmax of p / q, q ~ Exp(1).
    # It is what torch.multinomial does for one sample, same draws from the same generator,
    # minus multinomial's validity check, a host-device sync per call (62 per update).
    race = fill_random(
        torch.empty_like(flat), generator, lambda out, g: out.exponential_(1.0, generator=g)
    )
    index = (flat / race).argmax(-1, keepdim=True)  # (M, 1)
    onehot = torch.zeros_like(flat).scatter_(-1, index, 1.0).reshape(probs.shape)
    # (probs - probs.detach()) is exactly 0 forward, so the value stays an exact one-hot.
    return onehot + (probs - probs.detach())


def categorical_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) of categoricals given as probabilities ``(..., S, K)``, summed over S.

    Returns ``(...)``. Both have a uniform floor (:func:`unimix_probs`), so logs are finite.
    """
    return (p * (torch.log(p) - torch.log(q))).sum((-2, -1))


def twohot_bins(num_bins: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Bin centres ``(N,)`` evenly spaced in symlog space on [-20, 20] (paper eq. 10)."""
    return torch.linspace(-20.0, 20.0, num_bins, device=device)


def twohot(y: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """Two-hot encoding of ``y (...)`` (already in symlog space) over ``bins (N,)``.

    The weight is split between the two nearest bins in proportion to closeness, so that
    ``(twohot(y) * bins).sum(-1) == y`` for y inside the bin range (eq. 10). ``-> (..., N)``.
    """
    y = y.clamp(bins[0], bins[-1])
    above = torch.bucketize(y, bins).clamp(1, len(bins) - 1)  # index of first bin >= y
    below = above - 1
    lo, hi = bins[below], bins[above]
    weight_hi = (y - lo) / (hi - lo)
    encoded = torch.zeros(*y.shape, len(bins), device=y.device, dtype=y.dtype)
    encoded.scatter_(-1, below.unsqueeze(-1), (1 - weight_hi).unsqueeze(-1))
    encoded.scatter_add_(-1, above.unsqueeze(-1), weight_hi.unsqueeze(-1))
    return encoded


def twohot_loss(logits: torch.Tensor, target: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``logits (..., N)`` against ``twohot(symlog(target))``. ``-> (...)``."""
    return -(twohot(symlog(target), bins) * F.log_softmax(logits, -1)).sum(-1)


def twohot_mean(logits: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """Expected value ``symexp(E[bin])`` of a two-hot head ``(..., N) -> (...)``."""
    return symexp((torch.softmax(logits, -1) * bins).sum(-1))


def bounded_normal(
    raw: torch.Tensor, min_std: float, max_std: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of DreamerV3's bounded normal policy from raw outputs ``(..., 2A)``.

    The first half through ``tanh`` gives a mean inside [-1, 1], the action range every
    continuous env is normalised to; the second half through a shifted sigmoid gives a std
    between ``min_std`` and ``max_std`` (near ``max_std`` at init, so early actions explore).
    Returns ``mean (..., A)`` and ``std (..., A)``.
    """
    mean, std = raw.chunk(2, -1)
    return torch.tanh(mean), (max_std - min_std) * torch.sigmoid(std + 2.0) + min_std


def normal_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Log-density of a diagonal normal at ``x``, summed over the last axis.

    ``x``, ``mean``, ``std`` ``(..., A) -> (...)``."""
    z = (x - mean) / std
    return (-0.5 * z.square() - torch.log(std) - 0.5 * math.log(2 * math.pi)).sum(-1)


def normal_entropy(std: torch.Tensor) -> torch.Tensor:
    """Entropy of a diagonal normal, summed over the last axis: ``(..., A) -> (...)``."""
    return (torch.log(std) + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)
