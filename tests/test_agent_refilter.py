"""The control arm: coupled's batch re-filtered through the updated WM before imagining."""

from __future__ import annotations

import pytest
import torch

from ablations.plan.spec import ARMS, AblationSpec
from agent import SCHEDULES, make_config
from agent.config import ConfigError
from tests.test_agent_schedules import clone_parameters, spy_imagine, spy_method


def test_refiltered_coupled_imagines_from_the_updated_wm_on_the_same_batch(make_trainer):
    trainer = make_trainer(train__schedule="coupled", train__refilter_starts=True)
    imagined = spy_imagine(trainer)
    trained = spy_method(trainer, "train_world_model")
    weights: list[dict] = []
    observed: list[dict] = []
    original = trainer._observe_step

    def observe(batch):
        weights.append(clone_parameters(trainer.world_model))
        observed.append(batch)
        return original(batch)

    trainer._observe_step = observe
    before = clone_parameters(trainer.world_model)

    SCHEDULES["coupled"](trainer, 2)

    assert len(trained) == len(observed) == len(imagined) == 2
    # The refilter ran on the WM batch itself, after that batch's WM step.
    for states, batch in zip(trained, observed, strict=True):
        assert torch.equal(batch["vector"], states["observations"])
        assert torch.equal(batch["action"], states["action"])
    assert any(not torch.equal(before[k], weights[0][k]) for k in before)
    # Imagination starts from the refiltered posteriors, not the pre-step ones.
    for states, start in zip(trained, imagined, strict=True):
        assert not torch.equal(start["h"], states["h"][:, -1])
    metrics = trainer.metrics.flush()
    assert metrics["staleness/start_h_shift"] > 0
    assert trainer.wm_updates == trainer.ac_updates == 2


def test_refiltered_starts_match_a_fresh_filter_with_the_same_draws(make_trainer):
    trainer = make_trainer(train__schedule="coupled", train__refilter_starts=True)
    imagined = spy_imagine(trainer)
    states = trainer.train_world_model(1)
    state = trainer.generator.get_state()
    trainer.train_actor_critic(trainer.refilter(states))
    trainer.generator.set_state(state)
    batch = {"vector": states["observations"], "action": states["action"]}
    expected = trainer._observe({**batch, "is_first": states["is_first"]})
    assert torch.equal(imagined[0]["h"], expected["h"][:, -1])


def test_refilter_is_timed_as_its_own_phase(make_trainer):
    trainer = make_trainer(train__schedule="coupled", train__refilter_starts=True)
    trainer.train_iteration()
    metrics = trainer.flush_metrics()
    assert metrics["time/refilter"] > 0
    plain = make_trainer(train__schedule="coupled")
    plain.train_iteration()
    assert "time/refilter" not in plain.flush_metrics()


def test_refilter_needs_the_coupled_schedule():
    with pytest.raises(ConfigError, match="refilter_starts needs train.schedule=coupled"):
        make_config("cartpole", "debug", {"train.refilter_starts": "true"})


@pytest.mark.parametrize(
    ("arm", "starts"), [("coupled_refiltered", "last"), ("coupled_refiltered_all", "all")]
)
def test_control_arms_are_coupled_with_refiltered_starts(arm, starts):
    spec = AblationSpec(env="cartpole", seeds=1, arms=(arm,), preset="debug")
    spec.validate()
    (run,) = spec.runs()
    train = run.config().train
    assert (train.schedule, train.starts, train.refilter_starts) == ("coupled", starts, True)
    assert "re-filtered" in run.description() and arm in ARMS
