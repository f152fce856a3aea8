"""Score references of the env presets: what a score is normalised against.

A task's normalised score is ``(score - random) / (best - random)``: 0 is a uniformly random
policy, 1 is the human score (Atari) or the task's maximum return (everything else). Each
table names its source. Env presets without an entry are reported on raw scores and left
out of aggregates over tasks.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.presets import ATARI_GAMES, DMC_TASKS


@dataclass(frozen=True)
class ScoreReference:
    """The two ends of a task's normalised scale, and where they come from."""

    random: float
    """Mean return of a uniformly random policy."""
    best: float
    """The human score (``kind="human"``) or the task's maximum return (``kind="max"``)."""
    kind: str
    source: str

    def normalise(self, score: float) -> float:
        return (score - self.random) / (self.best - self.random)


ATARI_SOURCE = (
    "random and human scores of the Atari-57 table (Mnih et al. 2015, Badia et al. 2020), "
    "as used for Atari100k by IRIS (Micheli et al. 2023) and DreamerV3 (Hafner et al. 2023)"
)
# game -> (random, human)
ATARI_RANDOM_HUMAN: dict[str, tuple[float, float]] = {
    "alien": (227.8, 7127.7),
    "amidar": (5.8, 1719.5),
    "assault": (222.4, 742.0),
    "asterix": (210.0, 8503.3),
    "bank_heist": (14.2, 753.1),
    "battle_zone": (2360.0, 37187.5),
    "boxing": (0.1, 12.1),
    "breakout": (1.7, 30.5),
    "chopper_command": (811.0, 7387.8),
    "crazy_climber": (10780.5, 35829.4),
    "demon_attack": (152.1, 1971.0),
    "freeway": (0.0, 29.6),
    "frostbite": (65.2, 4334.7),
    "gopher": (257.6, 2412.5),
    "hero": (1027.0, 30826.4),
    "jamesbond": (29.0, 302.8),
    "kangaroo": (52.0, 3035.0),
    "krull": (1598.0, 2665.5),
    "kung_fu_master": (258.5, 22736.3),
    "ms_pacman": (307.3, 6951.6),
    "pong": (-20.7, 14.6),
    "private_eye": (24.9, 69571.3),
    "qbert": (163.9, 13455.0),
    "road_runner": (11.5, 7845.0),
    "seaquest": (68.4, 42054.7),
    "up_n_down": (533.4, 11693.2),
    "space_invaders": (148.0, 1668.7),
}

MEASURED = (
    "random: mean return of 100 uniformly random episodes (gymnasium 1.x, reset seeds "
    "0..99), measured for this project"
)
DMC_SOURCE = (
    "DeepMind Control Suite (Tassa et al. 2018): rewards in [0, 1] per step over 1000 steps, "
    "so returns lie in [0, 1000]; random taken as 0, the bottom of that range"
)

SCORE_REFERENCES: dict[str, ScoreReference] = {
    "cartpole": ScoreReference(
        23.7,
        500.0,
        "max",
        "CartPole-v1: max 500 = reward 1 per step to the 500-step cap; " + MEASURED,
    ),
    "acrobot": ScoreReference(
        -497.1, 0.0, "max", "Acrobot-v1: max 0 = the bound of its -1 per step reward; " + MEASURED
    ),
    "pendulum": ScoreReference(
        -1207.6,
        0.0,
        "max",
        "Pendulum-v1: max 0 = the bound of its reward (-16.3..0 per step); " + MEASURED,
    ),
    **{
        f"atari_{game}": ScoreReference(random, human, "human", ATARI_SOURCE)
        for game, (random, human) in ATARI_RANDOM_HUMAN.items()
        if game in ATARI_GAMES
    },
    **{
        f"dmc{vision}_{task}": ScoreReference(0.0, 1000.0, "max", DMC_SOURCE)
        for task in DMC_TASKS
        for vision in ("", "_vision")
    },
}
