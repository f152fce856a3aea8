"""Continuous actions through the agent: the bounded normal policy, the env's action range,
replay of action vectors, ``ac.actor_grad`` and its validation, a Pendulum run end to end."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from agent import ConfigError, make_config
from agent.config import ACTOR_GRADS, EnvConfig
from agent.dists import bounded_normal, normal_entropy, normal_log_prob
from agent.envs import ContinuousActions, DiscreteActions, action_space, make_env
from agent.policy import ACTOR_GRADIENTS, AUTO_ACTOR_GRADIENT, BoundedNormalHead
from agent.replay import Replay
from tests.conftest import tiny_config
from tests.test_agent_training import TINY_CLI, run_cli, run_history

# --- the bounded normal ----------------------------------------------------------------------


def test_bounded_normal_hand_values_and_bounds():
    raw = torch.tensor([[0.0, 100.0, -2.0, -100.0], [-100.0, 0.0, 100.0, 0.0]])
    mean, std = bounded_normal(raw, 0.1, 1.0)
    torch.testing.assert_close(mean, torch.tensor([[0.0, 1.0], [-1.0, 0.0]]))
    # std = 0.9 * sigmoid(s + 2) + 0.1: s = -2 gives the midpoint, s -> -inf the minimum,
    # s -> inf the maximum.
    torch.testing.assert_close(
        std, torch.tensor([[0.55, 0.1], [1.0, 0.9 / (1 + math.e**-2) + 0.1]])
    )


def test_normal_log_prob_and_entropy_match_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mean, std = torch.randn(5, 3, generator=g), torch.rand(5, 3, generator=g) + 0.1
    x = torch.randn(5, 3, generator=g)
    reference = torch.distributions.Independent(torch.distributions.Normal(mean, std), 1)
    torch.testing.assert_close(normal_log_prob(x, mean, std), reference.log_prob(x))
    torch.testing.assert_close(normal_entropy(std), reference.entropy())


def test_bounded_normal_samples_are_reparameterised_and_distributed_as_stated():
    head = BoundedNormalHead(make_config("pendulum", "debug"))
    raw = torch.tensor([[0.5, -1.0]]).repeat(20_000, 1).requires_grad_()
    params = head.params(raw)
    sample = head.sample(params, torch.Generator().manual_seed(0))
    assert sample.shape == (20_000, 1)
    # Reparameterised: the sample is differentiable in the distribution's parameters.
    sample.sum().backward()
    assert raw.grad is not None and raw.grad.abs().sum() > 0
    expected_std = 0.9 / (1 + math.exp(-1.0)) + 0.1
    assert sample.mean().item() == pytest.approx(math.tanh(0.5), abs=0.02)
    assert sample.std().item() == pytest.approx(expected_std, rel=0.02)
    torch.testing.assert_close(head.mode(params), params["mean"])


# --- the env's action range ------------------------------------------------------------------


def test_continuous_actions_map_the_unit_cube_onto_the_env_box():
    actions = ContinuousActions(
        gym.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 10.0], np.float32))
    )
    out = actions.to_env(np.array([[-1.0, 1.0], [0.0, 0.0], [5.0, -7.0]])[0])
    np.testing.assert_allclose(out, [-2.0, 10.0])
    np.testing.assert_allclose(actions.to_env(np.array([0.0, 0.0])), [0.0, 5.0])
    np.testing.assert_allclose(actions.to_env(np.array([5.0, -7.0])), [2.0, 0.0])  # clipped
    draws = np.stack([actions.random(np.random.default_rng(i)) for i in range(200)])
    assert draws.shape == (200, 2) and draws.min() >= -1 and draws.max() <= 1
    assert draws.min() < -0.9 and draws.max() > 0.9


def test_discrete_actions_draw_as_before():
    actions = DiscreteActions(gym.spaces.Discrete(3))
    a, b = np.random.default_rng(4), np.random.default_rng(4)
    assert [actions.random(a) for _ in range(20)] == [int(b.integers(3)) for _ in range(20)]
    assert actions.from_policy(np.array([0.0, 0.0, 1.0])) == 2


def test_unbounded_or_mismatched_action_spaces_are_refused():
    with pytest.raises(ValueError, match="bounded 1-D Box"):
        ContinuousActions(gym.spaces.Box(-np.inf, np.inf, (2,)))
    with pytest.raises(ValueError, match="continuous actions, but env.actions is discrete"):
        make_env(EnvConfig(name="pendulum", id="Pendulum-v1", actions="discrete"))


def test_replay_stores_action_vectors():
    replay = Replay(50, {"vector": (3,)}, np.random.default_rng(0), action_shape=(2,))
    for i in range(20):
        replay.add({"vector": np.full(3, i, np.float32)}, np.array([i, -i]), 0.0, i == 0, False, i)
    batch = replay.sample(4, 5)
    assert batch["action"].shape == (4, 5, 2) and batch["action"].dtype == np.float32
    np.testing.assert_array_equal(batch["action"][..., 0], batch["uid"])
    np.testing.assert_array_equal(batch["action"][..., 1], -batch["uid"])


# --- ac.actor_grad ---------------------------------------------------------------------------


def test_actor_grad_registry_and_auto():
    assert set(ACTOR_GRADIENTS) == set(ACTOR_GRADS) - {"auto"}
    assert AUTO_ACTOR_GRADIENT == {"continuous": "dynamics", "discrete": "reinforce"}
    assert make_config("pendulum", "debug").env.actions == "continuous"
    assert make_config("cartpole", "debug").env.actions == "discrete"


def test_bad_actor_grad_is_a_config_error():
    with pytest.raises(ConfigError, match="ac.actor_grad must be one of auto, reinforce"):
        tiny_config(ac__actor_grad="backprop")
    with pytest.raises(ConfigError, match="actor_grad=dynamics needs continuous actions"):
        tiny_config("cartpole", ac__actor_grad="dynamics")
    with pytest.raises(ConfigError, match="min_std"):
        tiny_config("pendulum", ac__min_std=2.0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "ac.actor_grad=dynamics"], "actor_grad=dynamics needs continuous actions"),
        (["--env", "dmc_walker_fly"], "unknown DMC domain or task 'walker_fly'"),
    ],
)
def test_cli_refuses_with_one_line(args, message):
    result = run_cli(*TINY_CLI, *args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert message in line and result.stdout == ""


# --- the trainer on Pendulum -----------------------------------------------------------------


@pytest.mark.parametrize("actor_grad", ["dynamics", "reinforce"])
def test_pendulum_collects_action_vectors_and_updates(make_trainer, actor_grad):
    trainer = make_trainer("pendulum", ac__actor_grad=actor_grad)
    A = trainer.num_actions
    assert isinstance(trainer.env.action_space, gym.spaces.Box) and A == 1
    assert trainer.replay.data["action"].shape == (trainer.replay.capacity, A)
    prefill = trainer.replay.data["action"][: len(trainer.replay)]
    assert prefill.min() >= -1 and prefill.max() <= 1 and prefill.std() > 0.3

    trainer.train_iteration()  # the policy acts: its samples are stored as they are
    acted = trainer.replay.data["action"][len(prefill) : len(trainer.replay)]
    assert acted.shape[1] == A and np.isfinite(acted).all()
    assert trainer.wm_updates == trainer.ac_updates == 8
    metrics = trainer.metrics.flush()
    assert all(math.isfinite(v) for v in metrics.values())
    feat = torch.zeros(4, trainer.world_model.rssm.feature_dim)
    with torch.no_grad():
        assert trainer.actor_critic.act(feat, None).shape == (4, A)
    result = trainer.evaluate(1)
    assert result["eval/length"] == 200  # Pendulum-v1 truncates at 200 steps


def test_pendulum_env_is_the_gymnasium_one():
    env = make_env(make_config("pendulum", "debug").env)
    assert env.unwrapped.spec.id == "Pendulum-v1"
    assert isinstance(action_space(env), ContinuousActions)


def test_dynamics_update_under_bf16_autocast_stays_close_to_fp32(make_trainer):
    def one_update(precision: str) -> dict[str, float]:
        trainer = make_trainer("pendulum", train__starts="all", train__precision=precision)
        trainer.train_actor_critic(trainer.train_world_model(1))
        return trainer.metrics.flush()

    fp32, bf16 = one_update("fp32"), one_update("bf16")
    assert all(math.isfinite(v) for v in bf16.values())
    assert bf16["grad_norm/actor"] > 0  # the backward through the bf16 imagination ran
    # (At initialisation the actor's gradient is ~1e-5, mostly the entropy term: too small
    # to compare across precisions. The losses are not.)
    for name in ("loss/wm", "loss/critic"):
        assert bf16[name] == pytest.approx(fp32[name], rel=0.02), name


def test_pendulum_runs_are_reproducible_from_the_seed(tiny):
    # Prefill draws, policy samples and imagined actions all come from seeded generators.
    options = {"env": "pendulum", "train__seed": 3, "train__eval_every": 140}
    first, history = run_history(tiny, train__eval_episodes=1, **options)
    second, again = run_history(tiny, train__eval_episodes=1, **options)
    assert "eval/return" in history and "loss/actor" in history and history == again
    np.testing.assert_array_equal(first.replay.data["action"], second.replay.data["action"])
