"""The agent learns: a short CartPole run ends clearly above the random policy.

Both numbers are measured here, on the same env: no constant thresholds from elsewhere.
"""

from __future__ import annotations

import pytest

from agent import Trainer, make_config
from agent.envs import random_policy_return


@pytest.mark.slow
def test_short_cartpole_run_beats_the_random_policy() -> None:
    config = make_config(
        "cartpole",
        "debug",
        {
            "train.schedule": "coupled",
            "train.starts": "all",
            "train.steps": 1500,
            "train.train_ratio": 256,
            "train.eval_every": 0,
            "train.seed": 0,
            "train.device": "cpu",
        },
    )
    trainer = Trainer(config)
    trainer.train()
    trained = trainer.evaluate(episodes=10)["eval/return"]
    random = random_policy_return(config.env, episodes=20, seed=1)
    # Random CartPole lasts ~20 steps; a policy that balances for 3x as long has learned.
    assert trained > 3 * random, (trained, random)
