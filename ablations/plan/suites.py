"""Named task lists: an ablation over a suite runs every task x arm x seed."""

from __future__ import annotations

from agent.config import ConfigError
from agent.presets import ATARI_GAMES, DMC_TASKS

ATARI100K_GAMES = tuple(game for game in ATARI_GAMES if game != "space_invaders")

SUITES: dict[str, tuple[str, ...]] = {
    # CPU-sized: two discrete tasks and a continuous one.
    "classic": ("cartpole", "acrobot", "pendulum"),
    # The 26 games of Atari100k (Kaiser et al. 2020), each with its paper settings.
    "atari100k": tuple(f"atari_{game}" for game in ATARI100K_GAMES),
    # The DeepMind Control proprio tasks that have an env preset.
    "dmc_proprio": tuple(f"dmc_{task}" for task in DMC_TASKS),
}


def resolve_tasks(suite: str | None, env: str | None) -> tuple[tuple[str, ...], str]:
    """The tasks of ``SUITE=`` or ``ENV=a,b,c`` (exactly one of them), and the suite's name
    ("" for an env list). Raises :class:`ConfigError` with one line for the user."""
    if suite and env:
        raise ConfigError(
            f"give either SUITE ({suite}) or ENV ({env}), not both; SUITE names a list of tasks"
        )
    if suite:
        if suite not in SUITES:
            raise ConfigError(f"unknown suite '{suite}'; known suites: {', '.join(SUITES)}")
        return SUITES[suite], suite
    if not env:
        raise ConfigError("give ENV=<task>[,<task>...] or SUITE=<name> to say what to train on")
    tasks = tuple(task.strip() for task in env.split(",") if task.strip())
    twice = sorted({task for task in tasks if tasks.count(task) > 1})
    if twice:
        raise ConfigError(f"task(s) listed twice in ENV: {', '.join(twice)}; list each once")
    # Unknown tasks are named by the spec's validation, with the known envs.
    return tasks, ""
