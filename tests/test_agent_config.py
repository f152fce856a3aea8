"""Config: preset layering, string conversion, validation, and the dict round trip."""

from __future__ import annotations

import dataclasses

import pytest

from agent import ConfigError, make_config
from agent.config import (
    ENV_PRESETS,
    SIZE_PRESETS,
    Config,
    flatten,
    from_dict,
    set_field,
    to_dict,
)


def test_presets_layer_defaults_env_size_then_overrides():
    default = Config()
    config = make_config("cartpole", "debug")
    assert config.preset == "debug"
    assert config.train.steps == ENV_PRESETS["cartpole"]["train.steps"]  # env preset
    assert config.model.deter == SIZE_PRESETS["debug"]["model.deter"]  # size preset
    # Both presets set the prefill; the size preset is the later layer.
    assert ENV_PRESETS["cartpole"]["train.prefill"] != SIZE_PRESETS["debug"]["train.prefill"]
    assert config.train.prefill == SIZE_PRESETS["debug"]["train.prefill"]
    assert config.ac.horizon == default.ac.horizon  # untouched default
    # User overrides beat both presets.
    config = make_config("cartpole", "debug", {"train.prefill": 32, "model.deter": 16})
    assert config.train.prefill == 32 and config.model.deter == 16


def test_atari_preset_carries_the_paper_settings():
    config = make_config("atari_pong", "S")
    assert config.env.id == "ALE/Pong-v5" and config.env.suite == "atari"
    assert config.env.action_repeat == 4 and config.env.size == 64
    assert (config.train.batch_size, config.train.seq_len) == (16, 64)
    assert config.train.train_ratio == 1024.0 and config.train.steps == 100_000
    assert config.model.deter == 512
    assert config.train.updates_per_iteration() == 1024 * 16 / (16 * 64)
    assert make_config("atari_pong", "debug").train.batch_size == 8  # size layer wins


def test_unknown_env_and_preset_list_the_known_ones():
    with pytest.raises(ConfigError) as error:
        make_config("nope", "debug")
    message = str(error.value)
    assert "unknown env 'nope'" in message
    assert all(name in message for name in ENV_PRESETS)
    with pytest.raises(ConfigError) as error:
        make_config("cartpole", "XXL")
    assert all(name in str(error.value) for name in SIZE_PRESETS)


def test_overrides_convert_strings_to_field_types():
    config = make_config(
        "cartpole",
        "debug",
        {
            "train.batch_size": "12",
            "train.seq_len": "1e1",
            "train.train_ratio": "256",
            "wm.lr": "3e-4",
            "train.schedule": "coupled",
            "wm.loss_scales": {"decoder": "2", "reward": 1, "cont": 1, "dyn": 0.5, "rep": 0.1},
        },
    )
    assert config.train.batch_size == 12 and type(config.train.batch_size) is int
    assert config.train.seq_len == 10 and type(config.train.seq_len) is int
    assert config.train.train_ratio == 256.0 and type(config.train.train_ratio) is float
    assert config.wm.lr == 3e-4
    assert config.train.schedule == "coupled"
    assert config.wm.loss_scales["decoder"] == 2.0
    # One entry of the mapping through its dotted key, the others kept.
    config = make_config("cartpole", "debug", {"wm.loss_scales.reward": "10"})
    assert config.wm.loss_scales == {**Config().wm.loss_scales, "reward": 10.0}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("train.batch_size", "abc", "train.batch_size expects int, got 'abc'"),
        ("train.batch_size", "2.5", "expects int"),  # no silent truncation to 2
        ("train.batch_size", 2.5, "expects int"),
        ("train.batch_size", "inf", "expects int"),
        ("train.batch_size", "nan", "expects int"),
        ("wm.lr", "fast", "wm.lr expects float"),
        ("train.nope", 1, "unknown config key 'train.nope'"),
        ("nope.batch_size", 1, "unknown config key"),
        ("train", 1, "unknown config key 'train'"),
        ("wm.loss_scales", "1", "expects a mapping"),
        ("wm.loss_scales.rewrd", 1, "unknown config key 'wm.loss_scales.rewrd'; wm.loss_scales"),
        ("wm.loss_scales.reward", "big", "wm.loss_scales.reward expects float"),
        ("wm.loss_scales.reward", "-1", "wm.loss_scales.reward must be in [0, inf)"),
    ],
)
def test_bad_overrides_raise_one_line_config_errors(key, value, message):
    with pytest.raises(ConfigError) as error:
        make_config("cartpole", "debug", {key: value})
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train.schedule": "bogus"}, "schedule must be one of separate, coupled"),
        ({"train.starts": "first"}, "starts must be one of last, all"),
        ({"train.batch_size": 0}, "train.batch_size must be positive"),
        ({"train.train_ratio": "nan"}, "train.train_ratio must be positive"),
        ({"train.train_ratio": "inf"}, "train.train_ratio must be positive"),
        ({"ac.horizon": -1}, "ac.horizon must be positive"),
        ({"model.bins": 64}, "model.bins must be odd"),
        ({"wm.loss_scales": {"decoder": 1.0}}, "wm.loss_scales must have exactly the keys"),
        ({"env.suite": "procgen"}, "env.suite must be"),
        ({"train.replay_capacity": 8}, "replay_capacity must hold at least one sequence"),
        ({"train.prefill": 0, "train.seq_len": 64}, "must be at least train.seq_len (64)"),
    ],
)
def test_validation_rejects_inconsistent_values(overrides, message):
    with pytest.raises(ConfigError) as error:
        make_config("cartpole", "debug", overrides)
    assert message in str(error.value)


def test_steps_too_small_for_one_iteration():
    base = {"train.prefill": 200, "train.collect_every": 16}
    with pytest.raises(ConfigError, match="must exceed prefill \\+ collect_every \\(216\\)"):
        make_config("cartpole", "debug", {**base, "train.steps": 215})
    assert make_config("cartpole", "debug", {**base, "train.steps": 216}).train.steps == 216


@pytest.mark.parametrize(("env", "preset"), [("cartpole", "debug"), ("atari_pong", "M")])
def test_to_dict_from_dict_and_flatten_round_trip(env, preset):
    overrides = {"train.schedule": "coupled", "wm.lr": 2e-4, "wm.loss_scales.dyn": 0.25}
    config = make_config(env, preset, overrides)
    restored = from_dict(to_dict(config))
    assert restored == config
    assert flatten(restored) == flatten(config)
    flat = flatten(config)
    assert flat["train.schedule"] == "coupled" and flat["preset"] == preset
    assert flat["wm.loss_scales.dyn"] == 0.25
    assert not any(isinstance(v, dict) or dataclasses.is_dataclass(v) for v in flat.values())
    # Every leaf, the mapping's entries included, can be set back through its dotted key.
    rebuilt = Config()
    for key, value in flat.items():
        set_field(rebuilt, key, value)
    assert rebuilt == config


def test_from_dict_rejects_unknown_keys():
    data = to_dict(make_config("cartpole", "debug"))
    data["train"]["warp_speed"] = 9
    with pytest.raises(ConfigError, match="unknown config key 'train.warp_speed'"):
        from_dict(data)
