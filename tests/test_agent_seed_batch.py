"""Seeds as a batch: a member of a seed batch is its single-seed run (equivalence), members
never touch each other (isolation), the WM/AC boundary holds per member, and a non-finite
member stops alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agent import SCHEDULES
from agent.config import ConfigError
from agent.logger import MemoryLogger
from agent.members import MemberLinear, clip_grad_norms, stack_members
from agent.seed_batch import SeedBatch
from agent.starts import select_starts
from agent.trainer import Trainer
from tests.conftest import tiny_config

SEEDS = (1, 2, 3)


def configs(env: str = "cartpole", seeds=SEEDS, **overrides):
    return [tiny_config(env, train__seed=seed, **overrides) for seed in seeds]


def prefilled_batch(env: str = "cartpole", seeds=SEEDS, **overrides) -> SeedBatch:
    batch = SeedBatch(configs(env, seeds, **overrides))
    for member in batch.members:
        member.collect(member.config.train.prefill)
    return batch


def prefilled_singles(env: str = "cartpole", seeds=SEEDS, **overrides) -> list[Trainer]:
    singles = [Trainer(c) for c in configs(env, seeds, **overrides)]
    for single in singles:
        single.collect(single.config.train.prefill)
    return singles


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {
        f"{part}.{name}": value.detach().clone()
        for part in ("world_model", "actor_critic")
        for name, value in getattr(trainer, part).state_dict().items()
    }


CASES = [("cartpole", schedule, starts) for schedule in SCHEDULES for starts in ("last", "all")] + [
    ("pendulum", "coupled", "all"),
    ("pendulum", "separate", "last"),
]


def assert_close_to_singles(batch: SeedBatch, singles: list[Trainer], initial: list[dict]):
    """Each member's weights against its single run's, per tensor, within 2% of the largest
    move the single run's updates made to that tensor. Not 1e-5: Adam divides each element
    by its own gradient scale, so an element whose gradient cancels to ~0 turns its float
    rounding into a step of order lr (the gradients themselves agree to ~1e-7, see
    test_batched_gradients_equal_each_members_single_gradients)."""
    for k, single in enumerate(singles):
        member, expected = weights(batch.members[k]), weights(single)
        moved_tensors = 0
        for name, value in expected.items():
            moved = float((value - initial[k][name]).abs().max())
            moved_tensors += moved > 0
            worst = float((member[name] - value).abs().max())
            assert worst <= 0.02 * moved + 1e-7, (k, name, worst, moved)
        assert moved_tensors > 10  # the updates did change the weights being compared


@pytest.mark.parametrize(
    ("env", "schedule", "starts"),
    [
        pytest.param(*case, marks=[] if case[1:] == ("coupled", "last") else [pytest.mark.slow])
        for case in CASES
    ],
)
def test_a_batched_update_equals_each_members_single_update(env, schedule, starts):
    overrides = {"train__schedule": schedule, "train__starts": starts}
    batch = prefilled_batch(env, **overrides)
    singles = prefilled_singles(env, **overrides)
    initial = [weights(single) for single in singles]
    for k in range(len(singles)):  # same initial weights: each member is its seed's
        for name, value in weights(batch.members[k]).items():
            assert torch.equal(value, initial[k][name]), name

    SCHEDULES[schedule](batch, 2)
    for single in singles:
        SCHEDULES[schedule](single, 2)

    assert_close_to_singles(batch, singles, initial)
    batch.metrics.settle()
    for k, single in enumerate(singles):
        got, want = batch.members[k].metrics.flush(), single.metrics.flush()
        assert got.keys() == want.keys()
        for name in want:
            assert got[name] == pytest.approx(want[name], rel=1e-3, abs=1e-4), name


def relative_gaps(stacked: torch.nn.Module, singles: list[torch.nn.Module]) -> list[float]:
    """Per member and tensor: ``|g_batched - g_single| / |g_single|`` (norms)."""
    gaps = []
    for k, single in enumerate(singles):
        pairs = zip(stacked.parameters(), single.parameters(), strict=True)
        for p, q in pairs:
            if q.grad is not None and float(q.grad.norm()) > 0:
                gaps.append(float((p.grad[k] - q.grad).norm() / q.grad.norm()))
    return gaps


@pytest.mark.parametrize(
    ("env", "starts"), [("cartpole", "last"), ("cartpole", "all"), ("pendulum", "all")]
)
def test_batched_gradients_equal_each_members_single_gradients(env, starts):
    overrides = {"train__starts": starts}
    batch, singles = prefilled_batch(env, **overrides), prefilled_singles(env, **overrides)
    data, _ = batch._sample_batch()
    loss, _, _ = batch.world_model.compute_loss(data, batch.generator)
    loss.backward()
    for single in singles:
        one, _ = single._sample_batch()
        single.world_model.compute_loss(one, single.generator)[0].backward()
    gaps = relative_gaps(batch.world_model, [s.world_model for s in singles])
    assert len(gaps) > 20 and max(gaps) < 1e-5, max(gaps)

    for trainer in (batch, *singles):
        start = select_starts(trainer.sample_starts(), starts)
        ac = trainer.actor_critic
        # Actor gradients through the dynamics need the rollout's graph; REINFORCE none.
        rollout = trainer._rollout if ac.gradient.through_dynamics else trainer._imagine
        imagined = rollout({k: start[k] for k in ("h", "z", "cont")})
        keys = ("feat", "action", "reward", "cont")
        ac.compute_loss(*(imagined[k] for k in keys))[0].backward()
    gaps = relative_gaps(batch.actor_critic, [s.actor_critic for s in singles])
    assert len(gaps) > 10 and max(gaps) < 1e-5, max(gaps)


@pytest.mark.slow
def test_pixel_members_equal_their_single_runs():
    overrides = {"train__schedule": "coupled", "train__starts": "last"}
    batch = prefilled_batch("atari_pong", seeds=(1, 2), **overrides)
    singles = prefilled_singles("atari_pong", seeds=(1, 2), **overrides)
    initial = [weights(single) for single in singles]
    SCHEDULES["coupled"](batch, 1)
    for single in singles:
        SCHEDULES["coupled"](single, 1)
    assert_close_to_singles(batch, singles, initial)


@pytest.mark.parametrize("schedule", ["separate", "coupled", "joint"])
def test_perturbing_one_members_batch_leaves_the_others_bitwise_unchanged(schedule):
    overrides = {"train__schedule": schedule, "train__starts": "all"}
    plain, perturbed = prefilled_batch(**overrides), prefilled_batch(**overrides)
    target = perturbed.members[1]
    sample = target._sample_batch

    def noisy_sample():
        batch, ids = sample()
        return {**batch, "vector": batch["vector"] + 0.5, "reward": batch["reward"] + 1.0}, ids

    target._sample_batch = noisy_sample
    SCHEDULES[schedule](plain, 2)
    SCHEDULES[schedule](perturbed, 2)
    for k in (0, 2):
        a, b = weights(plain.members[k]), weights(perturbed.members[k])
        for name in a:
            assert torch.equal(a[name], b[name]), (k, name)
    a, b = weights(plain.members[1]), weights(perturbed.members[1])
    assert any(not torch.equal(a[name], b[name]) for name in a)  # the perturbation did land


@pytest.mark.parametrize("starts", ["last", "all"])
def test_the_actor_critic_update_leaves_every_members_world_model_untouched(starts):
    batch = prefilled_batch(train__schedule="coupled", train__starts=starts)
    states = batch.train_world_model(1)
    before = {k: v.clone() for k, v in batch.world_model.state_dict().items()}
    ac_before = {k: v.clone() for k, v in batch.actor_critic.state_dict().items()}
    batch.train_actor_critic(states)
    for name, value in batch.world_model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert any(not torch.equal(v, ac_before[k]) for k, v in batch.actor_critic.state_dict().items())


@pytest.mark.slow
def test_a_non_finite_member_stops_alone():
    batch = prefilled_batch(train__steps=400, train__prefill=200, train__log_every=100)
    with torch.no_grad():
        batch.world_model.reward_head[0].weight[1].fill_(float("nan"))
    batch.train()
    assert set(batch.failures) == {1}
    assert "non-finite" in batch.failures[1]
    for k in (0, 2):
        member = batch.members[k]
        assert member.done
        assert all(torch.isfinite(p).all() for p in member.world_model.parameters())


@pytest.mark.slow
def test_each_member_logs_its_own_run():
    loggers = [MemoryLogger() for _ in SEEDS]
    overrides = {"train.steps": 600, "train.eval_every": 200, "train.eval_episodes": 2}
    batch = SeedBatch([tiny_config(train__seed=s, **overrides) for s in SEEDS], loggers)
    batch.train()
    curves = [tuple(value for _, value in logger.history["eval/return"]) for logger in loggers]
    assert all(len(curve) == 3 for curve in curves)  # steps 200, 400, 600
    assert len(set(curves)) == len(SEEDS), curves  # three seeds, three curves
    for member, logger in zip(batch.members, loggers, strict=True):
        assert member.done and member.wm_updates == batch.wm_updates > 0
        assert logger.last("progress/wm_updates") == batch.wm_updates
        assert "time/wm" in logger.history  # the batch's update phases reach every log


def test_a_seed_batch_refuses_runs_that_differ_in_more_than_the_seed():
    mixed = [tiny_config(train__seed=1), tiny_config(train__seed=2, train__batch_size=4)]
    with pytest.raises(ConfigError, match="train.batch_size"):
        SeedBatch(mixed)
    with pytest.raises(ConfigError, match="seeds must differ"):
        SeedBatch([tiny_config(train__seed=1), tiny_config(train__seed=1)])
    with pytest.raises(ConfigError, match="at least 2"):
        SeedBatch([tiny_config(train__seed=1)])


def test_member_layers_and_clipping_match_their_single_versions():
    torch.manual_seed(0)
    layers = [torch.nn.Linear(5, 3) for _ in range(4)]
    stacked = stack_members([torch.nn.Sequential(layer) for layer in layers])
    assert isinstance(stacked[0], MemberLinear)
    x = torch.randn(4 * 6, 2, 5)
    out = stacked(x)
    for k, layer in enumerate(layers):
        torch.testing.assert_close(out[k * 6 : (k + 1) * 6], layer(x[k * 6 : (k + 1) * 6]))
    out.square().sum().backward()
    grads = [stacked[0].weight.grad.clone(), stacked[0].bias.grad.clone()]
    norms = clip_grad_norms(stacked.parameters(), 1.0, 4)
    for k in range(4):  # each member's norm, as torch computes one run's
        expected = torch.linalg.vector_norm(torch.cat([g[k].flatten() for g in grads]))
        torch.testing.assert_close(norms[k], expected)
        clipped = torch.cat([p.grad[k].flatten() for p in stacked.parameters()])
        want = float(min(1.0, 1.0 / (float(expected) + 1e-6)))
        torch.testing.assert_close(clipped, torch.cat([g[k].flatten() for g in grads]) * want)
    assert np.isclose(float(norms.max()), float(torch.stack(list(norms)).max()))


@pytest.mark.slow
def test_members_resume_from_their_checkpoints_exactly(tmp_path):
    overrides = {"train.steps": 600, "train.train_ratio": 32}
    runs = [tiny_config(train__seed=s, **overrides) for s in SEEDS]
    whole = SeedBatch(runs)
    while whole.members[0].env_steps < 400:
        whole.train_iteration()
    paths = [str(tmp_path / f"member{k}.pt") for k in range(len(SEEDS))]
    for member, path in zip(whole.members, paths, strict=True):
        member.save(path)
    # A checkpoint holds one member's weights, not the whole stack's.
    sizes = [torch.load(p, weights_only=False) for p in paths]
    for state in sizes:
        for name, value in state["state"]["world_model"].items():
            assert value.untyped_storage().nbytes() == value.nbytes, name
    whole.train()

    resumed = SeedBatch(runs)
    for member, path in zip(resumed.members, paths, strict=True):
        member.load(path)
    resumed.resync()
    resumed.train()
    for a, b in zip(whole.members, resumed.members, strict=True):
        wa, wb = weights(a), weights(b)
        for name in wa:
            assert torch.equal(wa[name], wb[name]), name
        assert a.env_steps == b.env_steps == 600

    # A member's checkpoint is its single run's: a plain trainer loads it as it is.
    single = Trainer(runs[1])
    single.load(paths[1])
    state = torch.load(paths[1], weights_only=False)["state"]
    for name, value in single.world_model.state_dict().items():
        assert torch.equal(value, state["world_model"][name]), name
    assert single.env_steps == state["counters"]["env_steps"]


def test_members_at_different_points_refuse_to_resume_as_one_batch():
    batch = prefilled_batch()
    batch.members[1].wm_updates = 3
    with pytest.raises(ConfigError, match="one point of training"):
        batch.resync()


def test_diversity_per_member_is_each_members_own():
    from agent.diversity import imagined_dispersion, start_diversity, start_shift

    gen = torch.Generator().manual_seed(0)
    members, n = 3, 5
    h = torch.randn(members * n, 4, generator=gen)
    z = torch.nn.functional.one_hot(torch.randint(0, 3, (members * n, 2), generator=gen), 3)
    uid = np.array([0, 0, 1, 2, 3] * members)
    env_step = np.arange(members * n)
    batched = start_diversity(h, z, uid, env_step, 100, members)
    seq = torch.randn(members * n, 6, 4, generator=gen)
    after = torch.randn(members * n, 6, 4, generator=gen)
    for k in range(members):
        rows = slice(k * n, (k + 1) * n)
        alone = start_diversity(h[rows], z[rows], uid[rows], env_step[rows], 100)
        for name, value in alone.items():
            assert float(batched[name][k]) == pytest.approx(float(value), rel=1e-6), name
        # By hand: 4 distinct of 5; ages 100 - steps; dispersion as numpy computes it.
        assert float(batched["diversity/distinct_starts"][k]) == pytest.approx(0.8)
        assert float(batched["diversity/replay_age"][k]) == pytest.approx(
            np.mean(100 - env_step[rows])
        )
        want = h[rows].numpy().std(0).mean()
        assert float(batched["diversity/h_dispersion"][k]) == pytest.approx(want, rel=1e-5)
        assert float(imagined_dispersion(seq, members)[k]) == pytest.approx(
            float(imagined_dispersion(seq[rows]))
        )
        assert float(start_shift(seq, after, members)[k]) == pytest.approx(
            float(start_shift(seq[rows], after[rows]))
        )
