"""The agent learns: short CartPole and Pendulum runs end clearly above the random policy.

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


@pytest.mark.slow
def test_short_pendulum_run_beats_the_random_policy() -> None:
    """Continuous actions, the actor trained through the dynamics (``actor_grad=auto``).

    Measured on this CPU (1 thread, the machine shared, load about 6.5 on 2 cores): this
    test 387 s. The same training evaluated on the way (3 episodes each): -1425 at 1000
    steps, -1442 at 2000, -479 at 3000, -197 at 4000, then -290 over 10 episodes.
    """
    config = make_config(
        "pendulum",
        "debug",
        {
            "train.schedule": "coupled",
            "train.starts": "all",
            "train.steps": 4000,
            "train.prefill": 500,
            "train.train_ratio": 128,
            "train.eval_every": 0,
            "train.seed": 0,
            "train.device": "cpu",
            # The paper's 3e-5 learns too slowly for a test: -480 after 6000 steps.
            "ac.actor_lr": 1e-4,
            "ac.critic_lr": 3e-4,
        },
    )
    trainer = Trainer(config)
    assert trainer.actor_critic.gradient.through_dynamics
    trainer.train()
    trained = trainer.evaluate(episodes=10)["eval/return"]
    random = random_policy_return(config.env, episodes=20, seed=1)
    # Returns are negative (a cost per step): the trained policy pays under half of random's.
    assert trained > random / 2, (trained, random)
