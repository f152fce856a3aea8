"""The method page's claims, each against the trainer or an independent computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from agent import SCHEDULES
from analysis import method, summary
from tests.test_agent_schedules import clone_parameters


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_world_model_lag_is_what_the_coupled_schedule_does(make_trainer, n):
    # Count, at each AC update, the WM updates it has seen; separate's all see n.
    trainer = make_trainer(train__schedule="coupled")
    seen: list[int] = []
    original = trainer.train_actor_critic

    def counting(*args, **kwargs):
        seen.append(trainer.wm_updates)
        return original(*args, **kwargs)

    trainer.train_actor_critic = counting
    SCHEDULES["coupled"](trainer, n)
    assert np.mean([n - k for k in seen]) == pytest.approx(method.world_model_lag(n))


def test_updates_per_iteration_from_params_matches_the_config(tiny):
    config = tiny()
    params = {
        "train.train_ratio": str(config.train.train_ratio),
        "train.collect_every": str(config.train.collect_every),
        "train.batch_size": str(config.train.batch_size),
        "train.seq_len": str(config.train.seq_len),
    }
    expected = config.train.updates_per_iteration()
    assert method.updates_per_iteration(params) == expected
    assert np.isnan(method.updates_per_iteration({}))


def test_shared_seeds_share_weights_and_prefill_but_not_the_streams(make_trainer):
    # The README's and the report's "not paired": same start, different random streams.
    separate = make_trainer(train__schedule="separate", train__seed=4)
    coupled = make_trainer(train__schedule="coupled", train__seed=4)
    first, second = clone_parameters(separate.world_model), clone_parameters(coupled.world_model)
    assert all(torch.equal(first[k], second[k]) for k in first)
    size = separate.replay.size if hasattr(separate.replay, "size") else None
    assert size is None or size == coupled.replay.size
    assert (
        separate.replay.sample(4, 8)["uid"].tolist() == coupled.replay.sample(4, 8)["uid"].tolist()
    )
    separate.train_iteration()
    coupled.train_iteration()
    # Separate drew twice the replay batches: the next draws differ.
    assert (
        separate.replay.sample(4, 8)["uid"].tolist() != coupled.replay.sample(4, 8)["uid"].tolist()
    )


def _scores(
    speeds: dict[str, list[float]], loads: list[float], hardware: str = "cpu"
) -> pd.DataFrame:
    rows = [
        (f"{arm}-seed{seed}", arm, "FINISHED", speed, hardware)
        for arm, values in speeds.items()
        for seed, speed in enumerate(values)
    ]
    frame = pd.DataFrame(rows, columns=["run_name", "arm", "status", "updates_per_s", "hardware"])
    frame["load_per_core"] = loads
    return frame


def test_speed_conditions_flag_load_outliers_and_mixed_hardware():
    calm = _scores({"separate": [10, 11, 10.5], "coupled": [20, 19, 21]}, [0.5] * 6)
    assert summary.speed_conditions(calm) == []
    # The Pong case: one run trained ~8x slower than the other three, on a loaded machine.
    loaded = _scores({"separate": [2.0, 15.0], "coupled": [14.0, 16.0]}, [2.1, 0.6, 0.5, 0.55])
    warnings = summary.speed_conditions(loaded)
    assert any("mean load per core 0.50 to 2.10 (highest: separate-seed0)" in w for w in warnings)
    assert any(w.startswith("separate-seed0 trained at 2 updates/s") for w in warnings)
    mixed = calm.assign(hardware=["a", "a", "a", "b", "b", "b"])
    assert any("different hardware (a; b)" in w for w in summary.speed_conditions(mixed))
    unknown = calm.assign(load_per_core=np.nan)
    assert any("No machine load was recorded" in w for w in summary.speed_conditions(unknown))
