"""The optimised paths (compiled steps, bf16 autocast) compute the same maths as the plain one."""

from __future__ import annotations

import pytest
import torch

from agent.acceleration import use_bf16, use_compile, use_graphs
from agent.config import ConfigError
from agent.dists import sample_onehot
from tests.conftest import tiny_config


def one_update(make_trainer, **overrides) -> dict[str, float]:
    """Losses and gradient norms of one coupled WM + AC update on Pong from all starts.

    Parameters after the step are not compared: Adam's first step moves each weight by about
    ``lr * sign(grad)``, so rounding noise in a near-zero gradient flips it.
    """
    trainer = make_trainer("atari_pong", train__starts="all", **overrides)
    trainer.train_actor_critic(trainer.train_world_model(1))
    metrics = trainer.metrics.flush()
    return {k: v for k, v in metrics.items() if k.startswith(("loss/", "grad_norm/"))}


@pytest.mark.slow
def test_compiled_steps_give_the_plain_losses_and_updates(make_trainer):
    plain = one_update(make_trainer, train__compile="off")
    compiled = one_update(make_trainer, train__compile="on")
    assert plain.keys() == compiled.keys() and {"loss/actor", "grad_norm/wm"} <= plain.keys()
    for name, value in plain.items():
        assert compiled[name] == pytest.approx(value, rel=1e-4, abs=1e-6), name


def test_bf16_autocast_stays_close_to_fp32(make_trainer):
    fp32 = one_update(make_trainer, train__precision="fp32")
    bf16 = one_update(make_trainer, train__precision="bf16")
    for name in ("loss/wm", "loss/decoder", "loss/reward", "loss/critic"):
        # bf16 keeps 8 bits of mantissa: 2% is loose for it, tight against a wrong formula.
        assert bf16[name] == pytest.approx(fp32[name], rel=0.02), name


def test_auto_means_cuda_only():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not use_compile("auto", cpu) and use_compile("auto", cuda)
    assert use_compile("on", cpu) and not use_compile("off", cuda)
    assert not use_bf16("auto", cpu) and use_bf16("auto", cuda) and use_bf16("bf16", cpu)
    assert not use_graphs("auto", cpu) and use_graphs("auto", cuda) and use_graphs("on", cuda)
    assert not use_graphs("off", cuda)


def test_cuda_graphs_on_a_cpu_is_a_config_error():
    with pytest.raises(ConfigError, match="cuda_graphs=on needs a CUDA device"):
        tiny_config(train__cuda_graphs="on")  # TINY runs on the CPU


def test_graphs_off_runs_the_plain_steps(make_trainer):
    trainer = make_trainer(train__cuda_graphs="auto")  # auto on a CPU: nothing to capture
    assert not trainer.graphs and trainer._world_model_step == trainer._world_model_update
    assert all(group["capturable"] is False for group in trainer.wm_optimizer.param_groups)


@pytest.mark.parametrize("key", ["train.compile", "train.precision", "train.cuda_graphs"])
def test_unknown_speed_option_is_a_config_error(key):
    with pytest.raises(ConfigError, match=key.split(".")[1]):
        tiny_config(**{key.replace(".", "__"): "fast"})


def test_observe_equals_the_joint_posterior_layer_stepped_one_by_one(make_trainer):
    """``observe`` runs the embed half of the posterior's first layer and the prior outside
    the time loop; it must equal the textbook step: one layer over ``[h, embed]``, prior
    and posterior both inside the loop, same generator."""
    rssm = make_trainer("cartpole", prefill=False).world_model.rssm
    B, T, E, A = 3, 6, rssm.post_embed.in_features, rssm.num_actions
    inputs = torch.Generator().manual_seed(1)
    embed = torch.randn(B, T, E, generator=inputs)
    action = torch.nn.functional.one_hot(torch.randint(A, (B, T), generator=inputs), A).float()
    is_first = torch.zeros(B, T, dtype=torch.bool)
    is_first[:, 0] = is_first[1, 3] = True

    joint = torch.cat([rssm.post_deter.weight, rssm.post_embed.weight], 1)  # (U, D + E)
    h, z = rssm.initial(B, embed.device)
    draws = torch.Generator().manual_seed(0)
    expected = {"h": [], "z": [], "post": [], "prior": []}
    with torch.no_grad():
        for t in range(T):
            keep = (~is_first[:, t]).float()
            h, prior = rssm.img_step(
                h * keep[:, None], z * keep[:, None, None], action[:, t] * keep[:, None]
            )
            x = torch.nn.functional.linear(torch.cat([h, embed[:, t]], -1), joint)
            post = rssm._probs(rssm.post_out, x)
            z = sample_onehot(post, draws)
            for key, value in zip(expected, (h, z, post, prior), strict=True):
                expected[key].append(value)
        got = rssm.observe(embed, action, is_first, torch.Generator().manual_seed(0))
    for key, steps in expected.items():
        torch.testing.assert_close(got[key], torch.stack(steps, 1), rtol=1e-5, atol=1e-6)
