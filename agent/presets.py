"""The named presets a config is layered from (see :mod:`agent.config`): size presets
(``debug`` .. ``L``: network sizes) and env presets (``cartpole``, ``atari_<game>``,
``dmc_<task>``, ``dmc_vision_<task>``: the paper's environment settings and budget), each a
dict of dotted keys."""

from __future__ import annotations

from typing import Any

SIZE_PRESETS: dict[str, dict[str, Any]] = {
    # A CPU training step in well under a second: for tests and smoke runs.
    "debug": {
        "model.deter": 64,
        "model.units": 64,
        "model.layers": 1,
        "model.stoch": 8,
        "model.classes": 8,
        "model.cnn_depth": 8,
        "model.bins": 63,
        "train.batch_size": 8,
        "train.seq_len": 16,
        "train.prefill": 256,
        "train.replay_capacity": 100_000,
    },
    # Learns CartPole on a CPU in minutes; a cheap Atari smoke size.
    "small": {
        "model.deter": 256,
        "model.units": 256,
        "model.layers": 2,
        "model.stoch": 16,
        "model.classes": 16,
        "model.cnn_depth": 16,
        "train.batch_size": 16,
        "train.seq_len": 32,
    },
    # The paper's sizes (DreamerV3 2023, Table B.1): deter, units, CNN depth, layers; 32x32 latents.
    "S": {"model.deter": 512, "model.units": 512, "model.cnn_depth": 32, "model.layers": 2},
    "M": {"model.deter": 1024, "model.units": 640, "model.cnn_depth": 48, "model.layers": 3},
    "L": {"model.deter": 2048, "model.units": 768, "model.cnn_depth": 64, "model.layers": 4},
}

# The 26 games of the Atari100k benchmark (Kaiser et al. 2020), plus SpaceInvaders.
ATARI_GAMES = {
    "alien": "Alien", "amidar": "Amidar", "assault": "Assault", "asterix": "Asterix",
    "bank_heist": "BankHeist", "battle_zone": "BattleZone", "boxing": "Boxing",
    "breakout": "Breakout", "chopper_command": "ChopperCommand",
    "crazy_climber": "CrazyClimber", "demon_attack": "DemonAttack", "freeway": "Freeway",
    "frostbite": "Frostbite", "gopher": "Gopher", "hero": "Hero", "jamesbond": "Jamesbond",
    "kangaroo": "Kangaroo", "krull": "Krull", "kung_fu_master": "KungFuMaster",
    "ms_pacman": "MsPacman", "pong": "Pong", "private_eye": "PrivateEye", "qbert": "Qbert",
    "road_runner": "RoadRunner", "seaquest": "Seaquest", "up_n_down": "UpNDown",
    "space_invaders": "SpaceInvaders",
}  # fmt: skip


def _atari_preset(game: str) -> dict[str, Any]:
    # Atari100k as in the paper: 64x64 RGB, repeat 4 (max of last two frames), no sticky
    # actions, up to 30 no-ops, minimal action set, 100k agent steps, train ratio 1024 at 16x64.
    return {
        "env.name": f"atari_{game}",
        "env.suite": "atari",
        "env.id": f"ALE/{ATARI_GAMES[game]}-v5",
        "env.size": 64,
        "env.action_repeat": 4,
        "env.noops": 30,
        "env.max_episode_steps": 27_000,  # 108k frames, the usual Atari cap
        "train.steps": 100_000,
        "train.train_ratio": 1024.0,
        "train.batch_size": 16,
        "train.seq_len": 64,
        "train.eval_every": 10_000,
        "train.eval_episodes": 10,
    }


# The DeepMind Control Suite tasks of the DreamerV3 paper's proprio and vision benchmarks,
# as ``<domain>_<task>`` -> (domain, task).
DMC_TASKS: dict[str, tuple[str, str]] = {
    "acrobot_swingup": ("acrobot", "swingup"),
    "ball_in_cup_catch": ("ball_in_cup", "catch"),
    "cartpole_balance": ("cartpole", "balance"),
    "cartpole_balance_sparse": ("cartpole", "balance_sparse"),
    "cartpole_swingup": ("cartpole", "swingup"),
    "cartpole_swingup_sparse": ("cartpole", "swingup_sparse"),
    "cheetah_run": ("cheetah", "run"),
    "finger_spin": ("finger", "spin"),
    "finger_turn_easy": ("finger", "turn_easy"),
    "finger_turn_hard": ("finger", "turn_hard"),
    "hopper_hop": ("hopper", "hop"),
    "hopper_stand": ("hopper", "stand"),
    "pendulum_swingup": ("pendulum", "swingup"),
    "quadruped_run": ("quadruped", "run"),
    "quadruped_walk": ("quadruped", "walk"),
    "reacher_easy": ("reacher", "easy"),
    "reacher_hard": ("reacher", "hard"),
    "walker_run": ("walker", "run"),
    "walker_stand": ("walker", "stand"),
    "walker_walk": ("walker", "walk"),
}


def _dmc_preset(task: str, vision: bool) -> dict[str, Any]:
    # The paper's DMC settings: action repeat 2, the suite's own 1000-step episodes (500
    # agent steps), train ratio 512; budgets of 500k (proprio) and 1M (vision) env steps,
    # that is 250k and 500k agent steps at repeat 2.
    domain, name = DMC_TASKS[task]
    return {
        "env.name": f"dmc_vision_{task}" if vision else f"dmc_{task}",
        "env.suite": "dmc",
        "env.id": f"{domain}/{name}",
        "env.actions": "continuous",
        "env.vision": vision,
        "env.size": 64,
        "env.action_repeat": 2,
        "train.steps": 500_000 if vision else 250_000,
        "train.train_ratio": 512.0,
        "train.eval_every": 10_000,
        "train.eval_episodes": 10,
    }


def _gym_preset(name: str, gym_id: str, prefill: int, continuous: bool = False) -> dict[str, Any]:
    # The cheap gymnasium control tasks share one CPU-sized budget: 20k agent steps at train
    # ratio 512, evaluated every 1000 steps.
    return {
        "env.name": name,
        "env.suite": "gym",
        "env.id": gym_id,
        **({"env.actions": "continuous"} if continuous else {}),
        "train.steps": 20_000,
        "train.train_ratio": 512.0,
        "train.eval_every": 1000,
        "train.eval_episodes": 10,
        "train.log_every": 250,
        "train.prefill": prefill,
    }


ENV_PRESETS: dict[str, dict[str, Any]] = {
    "cartpole": _gym_preset("cartpole", "CartPole-v1", prefill=500),
    # Pendulum-v1: swing up and hold; 200-step episodes, reward -16.3..0 per step (random
    # about -1200, good policies about -150). The cheap continuous check on a CPU.
    "pendulum": _gym_preset("pendulum", "Pendulum-v1", prefill=1000, continuous=True),
    # Acrobot-v1: swing the tip above the bar; reward -1 per step, 500-step episodes
    # (random about -500, good policies about -80). A second cheap discrete task.
    "acrobot": _gym_preset("acrobot", "Acrobot-v1", prefill=1000),
    **{f"atari_{game}": _atari_preset(game) for game in ATARI_GAMES},
    **{f"dmc_{task}": _dmc_preset(task, vision=False) for task in DMC_TASKS},
    **{f"dmc_vision_{task}": _dmc_preset(task, vision=True) for task in DMC_TASKS},
}
