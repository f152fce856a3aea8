"""The schedules: gradient isolation, where imagination starts come from, update order."""

from __future__ import annotations

import pytest
import torch

from agent import SCHEDULES
from agent.starts import replay_steps, select_starts
from agent.trainer import Trainer
from agent.world_model import features

STARTS_SOURCE = {
    "separate": "sample_starts",
    "coupled": "train_world_model",
    "interleaved": "sample_starts",
    "joint": "world_model_gradients",
}
"""The trainer method whose posterior states each schedule imagines from."""


def test_every_schedule_says_where_its_starts_come_from():
    assert set(STARTS_SOURCE) == set(SCHEDULES)


def spy_imagine(trainer: Trainer, events: list[str] | None = None) -> list[dict]:
    """Wrap the instance's ``rssm.imagine``; returns the list its ``h``/``z`` starts go to."""
    calls: list[dict] = []
    original = trainer.world_model.rssm.imagine

    def imagine(h, z, *args, **kwargs):
        calls.append({"h": h.clone(), "z": z.clone()})
        if events is not None:
            events.append("imagine")
        return original(h, z, *args, **kwargs)

    trainer.world_model.rssm.imagine = imagine
    return calls


def spy_method(trainer: Trainer, name: str, events: list[str] | None = None) -> list:
    """Wrap the bound method ``trainer.<name>``; returns the list its results go to."""
    results: list = []
    original = getattr(trainer, name)

    def wrapper(*args, **kwargs):
        if events is not None:
            events.append(name)
        result = original(*args, **kwargs)
        results.append(result)
        return result

    setattr(trainer, name, wrapper)
    return results


def clone_parameters(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_actor_critic_update_leaves_world_model_untouched(make_trainer):
    trainer = make_trainer()
    states = trainer.train_world_model(1)
    trainer.wm_optimizer.zero_grad(set_to_none=True)
    wm_before = clone_parameters(trainer.world_model)
    ac_before = clone_parameters(trainer.actor_critic)

    trainer.train_actor_critic(states)

    for name, value in trainer.world_model.state_dict().items():
        assert torch.equal(value, wm_before[name]), name
    for name, parameter in trainer.world_model.named_parameters():
        assert parameter.grad is None, name
    # The update did happen: the actor and critic moved and received gradients.
    changed = [
        k for k, v in trainer.actor_critic.state_dict().items() if not torch.equal(v, ac_before[k])
    ]
    assert any(k.startswith("actor.") for k in changed)
    assert any(k.startswith("critic.") for k in changed)
    assert all(p.grad is not None for p in trainer.actor_critic.actor.parameters())
    assert trainer.ac_updates == 1


def test_posterior_states_are_detached(make_trainer):
    trainer = make_trainer()
    for states in (trainer.train_world_model(1), trainer.sample_starts()):
        assert not states["h"].requires_grad
        assert not states["z"].requires_grad
        assert states["h"].grad_fn is None and states["z"].grad_fn is None


def test_coupled_imagines_from_the_last_posteriors_of_the_batch_just_trained(make_trainer):
    trainer = make_trainer(train__schedule="coupled")
    events: list[str] = []
    imagined = spy_imagine(trainer, events)
    trained = spy_method(trainer, "train_world_model", events)
    sampled = spy_method(trainer, "sample_starts", events)

    SCHEDULES["coupled"](trainer, 3)

    assert events == ["train_world_model", "imagine"] * 3  # interleaved, one to one
    assert sampled == []
    assert len(imagined) == len(trained) == 3
    B = trainer.config.train.batch_size
    for states, start in zip(trained, imagined, strict=True):
        assert start["h"].shape[0] == B
        assert torch.equal(start["h"], states["h"][:, -1])
        assert torch.equal(start["z"], states["z"][:, -1])
    # Each update trained on a fresh batch, so the starts differ between updates.
    assert not torch.equal(imagined[0]["h"], imagined[1]["h"])
    assert trainer.wm_updates == trainer.ac_updates == 3


def test_separate_samples_fresh_starts_once_per_actor_critic_update(make_trainer):
    trainer = make_trainer(train__schedule="separate")
    events: list[str] = []
    imagined = spy_imagine(trainer, events)
    trained = spy_method(trainer, "train_world_model", events)
    sampled = spy_method(trainer, "sample_starts", events)

    SCHEDULES["separate"](trainer, 3)

    assert events == ["train_world_model"] + ["sample_starts", "imagine"] * 3
    assert len(trained) == 1 and len(sampled) == 3
    for states, start in zip(sampled, imagined, strict=True):
        assert torch.equal(start["h"], states["h"][:, -1])
        assert torch.equal(start["z"], states["z"][:, -1])
    # Separate starts are not the WM batch's posteriors.
    assert not torch.equal(imagined[-1]["h"], trained[0]["h"][:, -1])
    assert trainer.wm_updates == trainer.ac_updates == 3


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_training_iteration_runs_the_configured_schedule(make_trainer, schedule):
    trainer = make_trainer(train__schedule=schedule)
    sampled = spy_method(trainer, "sample_starts")
    trainer.train_iteration()
    updates = trainer.config.train.updates_per_iteration()
    assert updates == 8
    assert trainer.wm_updates == trainer.ac_updates == updates
    fresh = STARTS_SOURCE[schedule] == "sample_starts"
    assert len(sampled) == (updates if fresh else 0)


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_an_iteration_with_less_than_one_update_trains_next_time(make_trainer, schedule):
    # 4 * 16 / 128 = 0.5 updates per iteration: the first iteration runs none.
    trainer = make_trainer(train__train_ratio=4, train__schedule=schedule)
    trainer.train_iteration()
    assert trainer.wm_updates == trainer.ac_updates == 0
    trainer.train_iteration()
    assert trainer.wm_updates == trainer.ac_updates == 1


def test_fractional_updates_carry_over_between_iterations(make_trainer):
    trainer = make_trainer(train__train_ratio=20)  # 20 * 16 / 128 = 2.5 per iteration
    trainer.train_iteration()
    assert trainer.wm_updates == 2
    trainer.train_iteration()
    assert trainer.wm_updates == 5


def test_interleaved_alternates_updates_and_imagines_from_fresh_starts(make_trainer):
    trainer = make_trainer(train__schedule="interleaved")
    events: list[str] = []
    imagined = spy_imagine(trainer, events)
    trained = spy_method(trainer, "train_world_model", events)
    sampled = spy_method(trainer, "sample_starts", events)

    SCHEDULES["interleaved"](trainer, 3)

    assert events == ["train_world_model", "sample_starts", "imagine"] * 3
    for states, start in zip(sampled, imagined, strict=True):
        assert torch.equal(start["h"], states["h"][:, -1])
        assert torch.equal(start["z"], states["z"][:, -1])
    # Fresh starts, not the WM batch's posteriors.
    for states, start in zip(trained, imagined, strict=True):
        assert not torch.equal(start["h"], states["h"][:, -1])
    assert trainer.wm_updates == trainer.ac_updates == 3


def test_joint_imagines_from_its_batch_in_the_world_model_before_its_step(make_trainer):
    trainer = make_trainer(train__schedule="joint")
    coupled = make_trainer(train__schedule="coupled")  # same seed: same weights and replay
    wm_seen: list[dict[str, torch.Tensor]] = []
    original = trainer.world_model.rssm.imagine

    def imagine(h, z, *args, **kwargs):
        wm_seen.append(clone_parameters(trainer.world_model))
        return original(h, z, *args, **kwargs)

    trainer.world_model.rssm.imagine = imagine
    imagined = spy_imagine(trainer)
    gradients = spy_method(trainer, "world_model_gradients")
    initial = clone_parameters(trainer.world_model)

    SCHEDULES["joint"](trainer, 1)
    SCHEDULES["coupled"](coupled, 1)

    (states,), (start,), (seen,) = gradients, imagined, wm_seen
    assert torch.equal(start["h"], states["h"][:, -1])
    assert torch.equal(start["z"], states["z"][:, -1])
    for name, value in seen.items():  # imagination ran in the WM before its step
        assert torch.equal(value, initial[name]), name
    # The WM step is coupled's step on the same batch and draws; the AC imagined elsewhere.
    for name, value in trainer.world_model.state_dict().items():
        assert torch.equal(value, coupled.world_model.state_dict()[name]), name
    assert any(
        not torch.equal(v, coupled.actor_critic.state_dict()[k])
        for k, v in trainer.actor_critic.state_dict().items()
    )
    assert trainer.wm_updates == trainer.ac_updates == 1


def test_joint_actor_critic_step_leaves_the_world_model_gradients_as_they_were(make_trainer):
    trainer = make_trainer(train__schedule="joint")
    states = trainer.world_model_gradients()
    params = clone_parameters(trainer.world_model)
    grads = {k: p.grad.clone() for k, p in trainer.world_model.named_parameters()}
    trainer.train_actor_critic(states)
    for name, parameter in trainer.world_model.named_parameters():
        assert torch.equal(parameter.detach(), params[name]), name
        assert torch.equal(parameter.grad, grads[name]), name
    assert trainer.wm_updates == 0  # the WM has not stepped yet
    trainer.step_world_model()
    assert trainer.wm_updates == 1
    assert any(not torch.equal(v, params[k]) for k, v in trainer.world_model.state_dict().items())


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_all_starts_imagine_from_every_posterior_step(make_trainer, schedule):
    trainer = make_trainer(train__schedule=schedule, train__starts="all")
    imagined = spy_imagine(trainer)
    produced = spy_method(trainer, STARTS_SOURCE[schedule])
    SCHEDULES[schedule](trainer, 1)
    t = trainer.config.train
    (start,), (states,) = imagined, produced
    assert start["h"].shape[0] == t.batch_size * t.seq_len
    assert torch.equal(start["h"], states["h"].flatten(0, 1))
    assert torch.equal(start["z"], states["z"].flatten(0, 1))
    metrics = trainer.metrics.flush()
    assert metrics["diversity/num_starts"] == t.batch_size * t.seq_len


@pytest.mark.parametrize("starts", ["last", "all"])
def test_replay_critic_loss_trains_the_critic_only(make_trainer, starts):
    trainer = make_trainer(ac__replay_critic=0.3, train__starts=starts)
    states = trainer.train_world_model(1)
    ac = trainer.actor_critic
    start = select_starts(states, starts)
    with torch.no_grad():
        trajectory = trainer.world_model.rssm.imagine(
            start["h"], start["z"], lambda f: ac.act(f, trainer.generator), 15, trainer.generator
        )
        feat = features(trajectory["h"], trajectory["z"])
        returns = torch.randn(feat.shape[0])
    loss = ac.replay_critic_loss(replay_steps(states, starts), returns)
    assert loss.dim() == 0 and torch.isfinite(loss) and loss > 0
    loss.backward()
    assert all(p.grad is None for p in ac.actor.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in ac.critic.parameters())
    trainer.train_actor_critic(states)
    assert "loss/replay_critic" in trainer.metrics.flush()


def test_replay_critic_is_off_by_default(make_trainer):
    trainer = make_trainer()
    trainer.train_actor_critic(trainer.train_world_model(1))
    assert "loss/replay_critic" not in trainer.metrics.flush()


@pytest.mark.parametrize("env", ["cartpole", "pendulum"])
@pytest.mark.parametrize("starts", ["last", "all"])
@pytest.mark.parametrize("schedule", ["interleaved", "joint"])
def test_one_update_of_the_published_schedules_moves_both_learners(
    make_trainer, schedule, starts, env
):
    trainer = make_trainer(env, train__schedule=schedule, train__starts=starts)
    imagined = spy_imagine(trainer)
    wm_before = clone_parameters(trainer.world_model)
    ac_before = clone_parameters(trainer.actor_critic)

    SCHEDULES[schedule](trainer, 1)

    t, rssm = trainer.config.train, trainer.world_model.rssm
    (start,) = imagined
    N = t.batch_size * (t.seq_len if starts == "all" else 1)
    assert start["h"].shape == (N, rssm.deter)
    assert start["z"].shape == (N, rssm.stoch, rssm.classes)
    moved = {
        name: [k for k, v in module.state_dict().items() if not torch.equal(v, before[k])]
        for name, module, before in (
            ("wm", trainer.world_model, wm_before),
            ("ac", trainer.actor_critic, ac_before),
        )
    }
    assert moved["wm"]
    assert any(k.startswith("actor.") for k in moved["ac"])
    assert any(k.startswith("critic.") for k in moved["ac"])
    assert trainer.wm_updates == trainer.ac_updates == 1
