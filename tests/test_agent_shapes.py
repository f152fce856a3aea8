"""Shapes at every module boundary, for vector (CartPole) and image (ALE Pong) observations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agent.replay import Replay
from agent.starts import select_starts
from agent.trainer import Trainer

ENVS = ["cartpole", "atari_pong"]


@pytest.fixture(scope="module", params=ENVS)
def trainer(request, tiny) -> Trainer:
    """A debug trainer per env whose replay holds a few sequences of random-action steps."""
    trainer = Trainer(tiny(request.param, train__prefill=48))
    trainer.collect(48)
    return trainer


def sizes(trainer: Trainer) -> dict[str, int]:
    m, t = trainer.config.model, trainer.config.train
    return {
        "B": t.batch_size,
        "T": t.seq_len,
        "D": m.deter,
        "S": m.stoch,
        "K": m.classes,
        "A": trainer.num_actions,
        "H": trainer.config.ac.horizon,
    }


def test_replay_sample_shapes_and_first_flags(trainer):
    n = sizes(trainer)
    B, T = n["B"], n["T"]
    batch = trainer.replay.sample(B, T)
    obs_shape = trainer.env.observation_space[trainer.obs_key].shape
    assert batch[trainer.obs_key].shape == (B, T, *obs_shape)
    for key in ("action", "reward", "is_first", "is_terminal", "uid", "env_step"):
        assert batch[key].shape == (B, T), key
    assert batch["is_first"][:, 0].all()
    # Consecutive replay positions.
    assert (np.diff(batch["uid"], axis=1) == 1).all()


def test_rssm_observe_and_imagine_shapes(trainer):
    n = sizes(trainer)
    B, T, D, S, K, A, H = (n[k] for k in "BTDSKAH")
    wm = trainer.world_model
    batch, _ = trainer._sample_batch()
    with torch.no_grad():
        post = wm.observe(batch, trainer.generator)
    assert post["h"].shape == (B, T, D)
    assert post["z"].shape == (B, T, S, K)
    assert post["post"].shape == post["prior"].shape == (B, T, S, K)

    N = 5
    h, z = post["h"][:N, -1], post["z"][:N, -1]
    with torch.no_grad():
        trajectory = wm.rssm.imagine(
            h, z, lambda feat: trainer.actor_critic.act(feat, trainer.generator), H, None
        )
    assert trajectory["h"].shape == (N, H + 1, D)
    assert trajectory["z"].shape == (N, H + 1, S, K)
    assert trajectory["action"].shape == (N, H, A)
    assert torch.equal(trajectory["h"][:, 0], h) and torch.equal(trajectory["z"][:, 0], z)
    assert torch.equal(trajectory["action"].sum(-1), torch.ones(N, H))


def test_world_model_loss_shapes_and_metric_names(trainer):
    n = sizes(trainer)
    batch, _ = trainer._sample_batch()
    loss, metrics, posterior = trainer.world_model.compute_loss(batch, trainer.generator)
    assert loss.shape == () and torch.isfinite(loss)
    assert loss.requires_grad
    terms = trainer.config.wm.loss_scales
    assert {f"loss/{k}" for k in terms} | {"loss/wm"} <= set(metrics)
    for name, value in metrics.items():
        assert value.shape == () and not value.requires_grad, name
    assert posterior["h"].shape == (n["B"], n["T"], n["D"])
    assert posterior["z"].shape == (n["B"], n["T"], n["S"], n["K"])
    assert posterior["h"].requires_grad  # still attached: the trainer detaches it


def test_policy_and_heads_shapes(trainer):
    n = sizes(trainer)
    feat = torch.zeros(3, 7, trainer.world_model.rssm.feature_dim)
    with torch.no_grad():
        assert trainer.world_model.reward(feat).shape == (3, 7)
        assert trainer.world_model.cont(feat).shape == (3, 7)
        assert trainer.actor_critic.value(feat).shape == (3, 7)
        assert trainer.actor_critic.action_probs(feat).shape == (3, 7, n["A"])
        assert trainer.actor_critic.act(feat[:, 0], None).shape == (3, n["A"])


@pytest.mark.parametrize("starts", ["last", "all"])
def test_select_starts(trainer, starts):
    n = sizes(trainer)
    B, T, D, S, K = (n[k] for k in "BTDSK")
    states = trainer.sample_starts()
    assert states["h"].shape == (B, T, D) and states["z"].shape == (B, T, S, K)
    start = select_starts(states, starts)
    N = B if starts == "last" else B * T
    assert start["h"].shape == (N, D)
    assert start["z"].shape == (N, S, K)
    assert start["cont"].shape == (N,)
    assert start["uid"].shape == start["env_step"].shape == (N,)
    assert "observations" not in start
    if starts == "last":
        assert torch.equal(start["h"], states["h"][:, -1])
        assert np.array_equal(start["uid"], states["uid"][:, -1])
    else:  # row b * T + t is position (b, t)
        b, t = 2, 5
        assert torch.equal(start["h"][b * T + t], states["h"][b, t])
        assert torch.equal(start["z"][b * T + t], states["z"][b, t])
        assert start["uid"][b * T + t] == states["uid"][b, t]


# --- replay alignment on a hand-built buffer -------------------------------------------------


def filled_replay(capacity: int, count: int, episode_length: int) -> Replay:
    """Transitions ``0..count-1``; observation ``[i]``; a new episode every ``episode_length``."""
    replay = Replay(capacity, {"vector": (1,)}, np.random.default_rng(0))
    for i in range(count):
        first = i % episode_length == 0
        replay.add({"vector": np.array([i], np.float32)}, i % 3, float(i), first, False, i)
    return replay


def test_replay_sample_keeps_alignment_and_inner_episode_starts():
    replay = filled_replay(capacity=100, count=40, episode_length=10)
    batch = replay.sample(64, 12)
    obs = batch["vector"][..., 0]  # (B, T)
    assert np.array_equal(obs, batch["uid"].astype(np.float32))
    assert np.array_equal(batch["reward"], obs)
    assert np.array_equal(batch["action"], batch["uid"] % 3)
    assert batch["is_first"][:, 0].all()
    # Inside a sequence, is_first marks real episode starts only.
    assert np.array_equal(batch["is_first"][:, 1:], batch["uid"][:, 1:] % 10 == 0)
    # Forcing is_first at t=0 did not write into the buffer.
    assert replay.data["is_first"][:40].sum() == 4


def test_replay_ring_buffer_samples_only_live_consecutive_steps():
    replay = filled_replay(capacity=10, count=25, episode_length=100)
    assert len(replay) == 10
    batch = replay.sample(200, 4)
    assert batch["uid"].min() >= 15  # only the 10 newest survive
    assert (np.diff(batch["uid"], axis=1) == 1).all()  # never across the write head
    assert set(batch["uid"][:, 0]) == set(range(15, 22))  # every valid start is reachable


def test_replay_refuses_sequences_longer_than_its_contents():
    replay = filled_replay(capacity=10, count=3, episode_length=100)
    with pytest.raises(ValueError, match="fewer than seq_len"):
        replay.sample(2, 4)
