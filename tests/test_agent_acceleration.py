"""The optimised paths (compiled steps, bf16 autocast) compute the same maths as the plain one."""

from __future__ import annotations

import pytest
import torch

from agent.acceleration import use_bf16, use_compile
from agent.config import ConfigError
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


@pytest.mark.parametrize("key", ["train.compile", "train.precision"])
def test_unknown_speed_option_is_a_config_error(key):
    with pytest.raises(ConfigError, match=key.split(".")[1]):
        tiny_config(**{key.replace(".", "__"): "fast"})
