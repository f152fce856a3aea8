"""Gradient isolation: an actor-critic update never touches the world model.

With ``ac.actor_grad=dynamics`` the actor's loss is a function of world-model parameters
(the RSSM prior, reward and continue heads), so isolation no longer holds by construction:
every schedule x starts x actor_grad is checked here, and the checks are shown to fail on
deliberately broken variants.
"""

from __future__ import annotations

import functools
import itertools

import pytest
import torch

from agent import SCHEDULES
from agent.policy import ACTOR_GRADIENTS
from agent.trainer import Trainer

# Dynamics needs continuous actions (pendulum); REINFORCE runs on both kinds.
CASES = [
    (schedule, starts, actor_grad, env)
    for schedule, starts in itertools.product(SCHEDULES, ("last", "all"))
    for actor_grad, env in (("dynamics", "pendulum"), ("reinforce", "cartpole"))
]


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def spy_starts(trainer: Trainer) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Record the ``h``, ``z`` every imagination starts from."""
    starts: list[tuple[torch.Tensor, torch.Tensor]] = []
    original = trainer.world_model.rssm.imagine

    def imagine(h, z, *args, **kwargs):
        starts.append((h, z))
        return original(h, z, *args, **kwargs)

    trainer.world_model.rssm.imagine = imagine
    return starts


def isolation_violations(trainer: Trainer, schedule: str) -> list[str]:
    """Run one WM update, then one AC update as ``schedule`` does; return what broke
    isolation. ``joint`` takes the WM gradients first and steps after the AC update: its AC
    update must leave those gradients bitwise as they were; the others' WM has none then."""
    if schedule == "joint":
        states = trainer.world_model_gradients()
    else:
        states = trainer.train_world_model(1)
        trainer.wm_optimizer.zero_grad(set_to_none=True)
    if schedule in ("separate", "interleaved"):
        states = trainer.sample_starts()
    before = snapshot(trainer.world_model)
    grads = {
        k: p.grad.clone() for k, p in trainer.world_model.named_parameters() if p.grad is not None
    }
    starts = spy_starts(trainer)
    trainer.train_actor_critic(states)

    problems = [
        f"{name} changed"
        for name, value in trainer.world_model.state_dict().items()
        if not torch.equal(value, before[name])
    ]
    problems += [
        f"{name} has a gradient"
        for name, parameter in trainer.world_model.named_parameters()
        if parameter.grad is not None and name not in grads
    ]
    problems += [
        f"{name}'s gradient changed"
        for name, parameter in trainer.world_model.named_parameters()
        if name in grads and not torch.equal(parameter.grad, grads[name])
    ]
    assert len(starts) == 1
    for key, tensor in zip("hz", starts[0], strict=True):
        if tensor.requires_grad or tensor.grad_fn is not None:
            problems.append(f"start {key} has a gradient path")
    return problems


@pytest.mark.parametrize(("schedule", "starts", "actor_grad", "env"), CASES)
def test_actor_critic_update_leaves_the_world_model_alone(
    make_trainer, schedule, starts, actor_grad, env
):
    trainer = make_trainer(
        env, train__schedule=schedule, train__starts=starts, ac__actor_grad=actor_grad
    )
    assert trainer.actor_critic.gradient.through_dynamics == (actor_grad == "dynamics")
    actor_before = snapshot(trainer.actor_critic.actor)

    assert isolation_violations(trainer, schedule) == []

    # The update did happen: the actor moved, on a non-zero gradient.
    actor = trainer.actor_critic.actor
    assert any(not torch.equal(v, actor_before[k]) for k, v in actor.state_dict().items())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in actor.parameters())


def test_the_check_catches_gradients_leaking_into_the_world_model(make_trainer):
    # Broken variant: the AC backward left free to reach every parameter it depends on.
    # Through the dynamics those include the RSSM prior and the reward and continue heads.
    trainer = make_trainer("pendulum", ac__actor_grad="dynamics")
    trainer._ac_parameters += list(trainer.world_model.parameters())
    problems = isolation_violations(trainer, "coupled")
    leaked = {p.split()[0] for p in problems if p.endswith("has a gradient")}
    assert any(name.startswith("rssm.prior_net") for name in leaked), problems
    assert any(name.startswith("reward_head") for name in leaked), problems
    assert any(name.startswith("cont_head") for name in leaked), problems
    # The encoder is upstream of the (detached) starts only: still no path to it.
    assert not any(name.startswith("encoder") for name in leaked), problems


def test_the_check_catches_a_joint_step_adding_to_the_world_model_gradients(make_trainer):
    # Broken variant under joint: the WM already holds its own loss's gradients when the AC
    # update runs; a leak would add to them rather than create them.
    trainer = make_trainer("pendulum", train__schedule="joint", ac__actor_grad="dynamics")
    trainer._ac_parameters += list(trainer.world_model.parameters())
    problems = isolation_violations(trainer, "joint")
    changed = {p.split("'")[0] for p in problems if p.endswith("gradient changed")}
    assert any(name.startswith("rssm.prior_net") for name in changed), problems
    assert any(name.startswith("reward_head") for name in changed), problems
    assert not any(name.startswith("encoder") for name in changed), problems


def test_the_check_catches_starts_with_a_gradient_path(make_trainer, monkeypatch):
    # Broken variant: starts that were not detached from the graph they came from.
    import agent.trainer as trainer_module

    original = trainer_module.select_starts

    def attached(states, starts):
        start = original(states, starts)
        start["h"] = start["h"].clone().requires_grad_()
        return start

    monkeypatch.setattr(trainer_module, "select_starts", attached)
    trainer = make_trainer("pendulum", ac__actor_grad="dynamics")
    assert isolation_violations(trainer, "separate") == ["start h has a gradient path"]


def act_detached(ac, feat: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return ac.act(feat.detach(), generator)


def test_the_actor_objective_never_reaches_the_critic(make_trainer):
    """Through the dynamics the lambda-returns bootstrap on the critic's values, yet the
    critic's gradient is that of its own loss alone: the same as with REINFORCE on the
    same trajectory, bitwise (the actor objective uses the critic with fixed parameters)."""
    trainer = make_trainer("pendulum", ac__actor_grad="dynamics")
    states = trainer.sample_starts()
    start = {k: states[k][:, -1] for k in ("h", "z", "cont")}
    ac = trainer.actor_critic
    critic = list(ac.critic.parameters())
    grads = {}
    for name, through_dynamics in (("dynamics", True), ("reinforce", False)):
        generator = torch.Generator().manual_seed(0)
        policy = functools.partial(act_detached, ac, generator=generator)
        with torch.set_grad_enabled(through_dynamics):
            trajectory = trainer.world_model.imagine_trajectory(start, policy, 15, generator)
        assert trajectory["reward"].requires_grad == through_dynamics
        ac.return_norm.spread.zero_()
        ac.gradient = ACTOR_GRADIENTS[name]
        loss, _ = ac.compute_loss(
            trajectory["feat"], trajectory["action"], trajectory["reward"], trajectory["cont"]
        )
        grads[name] = torch.autograd.grad(loss, critic)
    for a, b in zip(grads["dynamics"], grads["reinforce"], strict=True):
        assert torch.equal(a, b)
