"""The pure maths helpers against hand-computed values and plain-loop references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from agent.actor_critic import ReturnNormalizer, lambda_return, quantiles, replay_return
from agent.dists import (
    categorical_kl,
    sample_onehot,
    symexp,
    symlog,
    twohot,
    twohot_bins,
    twohot_loss,
    twohot_mean,
    unimix_probs,
)

# --- symlog / symexp (eq. 9) ---------------------------------------------------------------


def test_symlog_hand_values():
    x = torch.tensor([0.0, math.e - 1, -(math.e - 1), math.e**2 - 1], dtype=torch.float64)
    expected = torch.tensor([0.0, 1.0, -1.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(symlog(x), expected)


def test_symlog_symexp_are_inverse():
    x = torch.cat(
        [
            torch.tensor([0.0, 1e-8, -1e-8, 1.0, -1.0, 1e6, -1e6], dtype=torch.float64),
            torch.linspace(-1000, 1000, 2001, dtype=torch.float64),
        ]
    )
    torch.testing.assert_close(symexp(symlog(x)), x, rtol=1e-12, atol=1e-12)
    y = torch.linspace(-20, 20, 401, dtype=torch.float64)
    torch.testing.assert_close(symlog(symexp(y)), y, rtol=1e-12, atol=1e-12)


# --- two-hot (eq. 10) ----------------------------------------------------------------------


def test_twohot_hand_values():
    bins = torch.tensor([-20.0, -10.0, 0.0, 10.0, 20.0])
    y = torch.tensor([5.0, -10.0, 17.5, 20.0, 35.0, -99.0])
    expected = torch.tensor(
        [
            [0.0, 0.0, 0.5, 0.5, 0.0],
            [0.0, 1.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.25, 0.75],
            [0.0, 0.0, 0.0, 0.0, 1.0],
            [0.0, 0.0, 0.0, 0.0, 1.0],  # clamped to the top bin
            [1.0, 0.0, 0.0, 0.0, 0.0],  # clamped to the bottom bin
        ]
    )
    torch.testing.assert_close(twohot(y, bins), expected)


def test_twohot_weights_reproduce_value():
    bins = twohot_bins(63).double()
    y = torch.empty(500, dtype=torch.float64).uniform_(
        -20, 20, generator=torch.Generator().manual_seed(0)
    )
    y = torch.cat([y, bins])  # exact bin centres too
    encoded = twohot(y, bins)  # (M, NB)
    assert encoded.shape == (len(y), 63)
    assert (encoded >= 0).all()
    torch.testing.assert_close(encoded.sum(-1), torch.ones(len(y), dtype=torch.float64))
    torch.testing.assert_close((encoded * bins).sum(-1), y)
    # At most two non-zero weights, on neighbouring bins.
    for row in encoded:
        (nonzero,) = torch.nonzero(row, as_tuple=True)
        assert len(nonzero) <= 2
        if len(nonzero) == 2:
            assert nonzero[1] - nonzero[0] == 1


def test_twohot_encode_decode_round_trip():
    # Logits that put exactly the two-hot weights on the bins decode to the original value.
    bins = twohot_bins(255).double()
    x = torch.tensor([0.0, 0.3, -0.3, 1.0, -7.5, 123.0, -4567.0, 1e5], dtype=torch.float64)
    logits = torch.log(twohot(symlog(x), bins))  # -inf where the weight is 0
    torch.testing.assert_close(twohot_mean(logits, bins), x, rtol=1e-9, atol=1e-9)


def test_twohot_loss_is_cross_entropy_against_twohot_target():
    bins = twohot_bins(7)
    logits = torch.randn(3, 7, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0.0, 2.0, -50.0])
    encoded = twohot(symlog(target), bins)
    expected = torch.stack(
        [-(encoded[i] * torch.log_softmax(logits[i], -1)).sum() for i in range(3)]
    )
    torch.testing.assert_close(twohot_loss(logits, target, bins), expected)


# --- lambda-returns (eq. 7) ----------------------------------------------------------------


def lambda_return_loop(reward, cont, value, discount, lam):
    """Plain Python reference: R_t = r_t + g c_t ((1 - lam) v_{t+1} + lam R_{t+1}), R_H = v_H."""
    N, H = len(reward), len(reward[0])
    out = [[0.0] * H for _ in range(N)]
    for n in range(N):
        following = value[n][H]  # R_H
        for t in reversed(range(H)):
            following = reward[n][t] + discount * cont[n][t] * (
                (1 - lam) * value[n][t + 1] + lam * following
            )
            out[n][t] = following
    return out


@pytest.mark.parametrize(("discount", "lam"), [(0.997, 0.95), (0.9, 0.0), (1.0, 1.0), (0.5, 0.3)])
def test_lambda_return_matches_loop(discount, lam):
    g = torch.Generator().manual_seed(3)
    N, H = 6, 9
    reward = torch.randn(N, H, generator=g, dtype=torch.float64)
    cont = (torch.rand(N, H, generator=g, dtype=torch.float64) > 0.2).double()
    value = torch.randn(N, H + 1, generator=g, dtype=torch.float64)
    got = lambda_return(reward, cont, value, discount, lam)
    expected = lambda_return_loop(reward.tolist(), cont.tolist(), value.tolist(), discount, lam)
    assert got.shape == (N, H)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))


def test_lambda_return_hand_cases():
    reward = torch.tensor([[1.0, 2.0, 3.0]])
    value = torch.tensor([[10.0, 20.0, 30.0, 40.0]])
    ones = torch.ones(1, 3)
    # lam = 1, gamma = 1: Monte-Carlo sum of rewards bootstrapped by the last value.
    torch.testing.assert_close(
        lambda_return(reward, ones, value, 1.0, 1.0), torch.tensor([[46.0, 45.0, 43.0]])
    )
    # lam = 0: one-step TD targets r_t + gamma v_{t+1}.
    torch.testing.assert_close(
        lambda_return(reward, ones, value, 0.5, 0.0), torch.tensor([[11.0, 17.0, 23.0]])
    )
    # A terminal transition (cont 0) cuts off everything after it.
    cont = torch.tensor([[1.0, 0.0, 1.0]])
    torch.testing.assert_close(
        lambda_return(reward, cont, value, 1.0, 1.0), torch.tensor([[3.0, 2.0, 43.0]])
    )


@pytest.mark.parametrize(("discount", "lam"), [(0.997, 0.95), (0.5, 0.3)])
def test_replay_return_is_the_lambda_return_of_the_recorded_transitions(discount, lam):
    g = torch.Generator().manual_seed(4)
    B, T = 5, 8
    reward = torch.randn(B, T, generator=g, dtype=torch.float64)
    cont = (torch.rand(B, T, generator=g, dtype=torch.float64) > 0.2).double()
    value = torch.randn(B, T, generator=g, dtype=torch.float64)
    no_cut = torch.zeros(B, T, dtype=torch.bool)
    got = replay_return(reward, cont, no_cut, value, discount, lam)
    # Step t's transition is the one into t+1: its reward and continue flag are at t+1.
    expected = lambda_return(reward[:, 1:], cont[:, 1:], value, discount, lam)
    torch.testing.assert_close(got[:, :-1], expected)
    torch.testing.assert_close(got[:, -1], value[:, -1])


def test_replay_return_hand_cases():
    reward = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    value = torch.tensor([[10.0, 20.0, 30.0, 40.0]])
    ones = torch.ones(1, 4)
    no_cut = torch.zeros(1, 4, dtype=torch.bool)
    # gamma = lam = 1: rewards to the end plus the last value.
    torch.testing.assert_close(
        replay_return(reward, ones, no_cut, value, 1.0, 1.0),
        torch.tensor([[46.0, 45.0, 43.0, 40.0]]),
    )
    # Step 2 is terminal: the return from step 1 is its last reward, nothing after.
    cont = torch.tensor([[1.0, 1.0, 0.0, 1.0]])
    torch.testing.assert_close(
        replay_return(reward, cont, no_cut, value, 1.0, 1.0),
        torch.tensor([[3.0, 2.0, 43.0, 40.0]]),
    )
    # Step 2 starts a new episode (the one before was truncated): step 1 keeps its value.
    cut = torch.tensor([[False, False, True, False]])
    torch.testing.assert_close(
        replay_return(reward, ones, cut, value, 1.0, 1.0),
        torch.tensor([[21.0, 20.0, 43.0, 40.0]]),
    )


# --- unimix, KL, straight-through sampling --------------------------------------------------


@pytest.mark.parametrize("unimix", [0.01, 0.1])
def test_unimix_probs_sum_to_one_with_floor(unimix):
    logits = torch.randn(4, 5, 8, generator=torch.Generator().manual_seed(0)) * 30
    logits[0, 0] = torch.tensor([1e4, -1e4, 0, 0, 0, 0, 0, 0])  # extreme logits
    probs = unimix_probs(logits, unimix)
    K = logits.shape[-1]
    torch.testing.assert_close(probs.sum(-1), torch.ones(4, 5))
    assert (probs >= unimix / K - 1e-7).all()
    # The floor is reached where the softmax gives ~0.
    torch.testing.assert_close(probs[0, 0, 1], torch.tensor(unimix / K))


def test_unimix_zero_is_softmax():
    logits = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(unimix_probs(logits, 0.0), torch.softmax(logits, -1))


def test_categorical_kl_hand_value_and_zero_for_equal():
    p = torch.tensor([[[0.5, 0.5]]])  # (B=1, S=1, K=2)
    q = torch.tensor([[[0.25, 0.75]]])
    expected = 0.5 * math.log(2.0) + 0.5 * math.log(2.0 / 3.0)
    torch.testing.assert_close(categorical_kl(p, q), torch.tensor([expected]))
    probs = unimix_probs(torch.randn(3, 4, 6, 5, generator=torch.Generator().manual_seed(2)), 0.01)
    assert torch.equal(categorical_kl(probs, probs), torch.zeros(3, 4))


def test_categorical_kl_matches_torch_summed_over_latents():
    g = torch.Generator().manual_seed(4)
    p = unimix_probs(torch.randn(2, 3, 6, 5, generator=g), 0.01)  # (B, T, S, K)
    q = unimix_probs(torch.randn(2, 3, 6, 5, generator=g), 0.01)
    reference = torch.distributions.kl_divergence(
        torch.distributions.Categorical(probs=p), torch.distributions.Categorical(probs=q)
    ).sum(-1)  # (B, T)
    got = categorical_kl(p, q)
    assert got.shape == (2, 3)
    torch.testing.assert_close(got, reference)
    assert (got > 0).all()


def test_straight_through_sample_is_exact_onehot_with_probs_gradient():
    probs = unimix_probs(torch.randn(50, 4, 6, generator=torch.Generator().manual_seed(5)), 0.01)
    probs.requires_grad_(True)
    sample = sample_onehot(probs, torch.Generator().manual_seed(0))
    assert sample.shape == probs.shape
    expected = torch.nn.functional.one_hot(sample.detach().argmax(-1), 6).float()
    assert torch.equal(sample.detach(), expected)  # exactly 0/1 in value, one 1 per row
    weights = torch.randn(6)
    (sample * weights).sum().backward()
    torch.testing.assert_close(probs.grad, weights.expand_as(probs))  # straight through


def test_sample_onehot_frequencies_follow_probs_and_generator():
    probs = torch.tensor([0.1, 0.2, 0.7]).expand(20_000, 3)
    first = sample_onehot(probs, torch.Generator().manual_seed(7))
    again = sample_onehot(probs, torch.Generator().manual_seed(7))
    assert torch.equal(first, again)
    torch.testing.assert_close(first.mean(0), torch.tensor([0.1, 0.2, 0.7]), atol=0.015, rtol=0)


def test_sample_onehot_draws_what_multinomial_draws():
    """The sync-free sampler is torch.multinomial's own one-sample algorithm: the same
    categories from the same generator state, which it leaves where multinomial does."""
    logits = torch.randn(64, 32, 32, generator=torch.Generator().manual_seed(2))
    probs = unimix_probs(logits, 0.01)
    ours, theirs = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    for _ in range(3):  # consecutive draws stay in step
        got = sample_onehot(probs, ours).argmax(-1)  # (64, 32)
        expected = torch.multinomial(probs.reshape(-1, 32), 1, generator=theirs)
        assert torch.equal(got, expected.reshape(64, 32))
    assert torch.equal(ours.get_state(), theirs.get_state())


# --- return normalisation (eq. 11) ----------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 15, 100, 15 * 1024])
def test_quantiles_match_torch_quantile(size):
    values = torch.randn(size, generator=torch.Generator().manual_seed(size))
    levels = (0.0, 0.05, 0.5, 0.95, 1.0)
    expected = torch.quantile(values, torch.tensor(levels))
    torch.testing.assert_close(torch.stack(quantiles(values, levels)), expected)


def test_return_normalizer_tracks_percentile_range():
    returns = torch.arange(101, dtype=torch.float32)  # 5th percentile 5, 95th 95
    normalizer = ReturnNormalizer(decay=0.0)  # no averaging: this batch's range
    torch.testing.assert_close(normalizer.update(returns), torch.tensor(90.0))
    values = np.random.default_rng(0).normal(0, 30, size=(16, 15)).astype(np.float32)
    low, high = np.percentile(values, [5, 95])
    scale = normalizer.update(torch.from_numpy(values))
    torch.testing.assert_close(scale, torch.tensor(float(high - low)), rtol=1e-5, atol=1e-4)


def test_return_normalizer_ema_and_floor():
    normalizer = ReturnNormalizer(decay=0.99)
    returns = torch.arange(101, dtype=torch.float32)
    # The first updates give an EMA below 1 (it starts at 0), so the scale is floored at 1.
    assert normalizer.update(returns).item() == 1.0
    for _ in range(499):
        scale = normalizer.update(returns)
    torch.testing.assert_close(normalizer.spread, torch.tensor(90 * (1 - 0.99**500)))
    torch.testing.assert_close(scale, normalizer.spread)
    small = ReturnNormalizer(decay=0.0)
    assert small.update(torch.linspace(0, 0.1, 50)).item() == 1.0  # never amplifies noise
