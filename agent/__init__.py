"""DreamerV3 in PyTorch with two training schedules, ``separate`` and ``coupled``.

Shape legend used in every docstring and comment:

    B  batch (sequences)        T  time steps per sequence     N  imagination starts
    H  imagination horizon      D  deterministic state (GRU)   S  stochastic latents
    K  classes per latent       A  actions                     F  features (D + S*K)

Entry points: :class:`Config` / :func:`make_config` and :class:`Trainer`.
"""

from typing import TYPE_CHECKING, Any

from agent.config import Config, ConfigError, make_config

if TYPE_CHECKING:
    from agent.trainer import SCHEDULES, Trainer

__all__ = ["SCHEDULES", "Config", "ConfigError", "Trainer", "make_config"]


def __getattr__(name: str) -> Any:
    # The trainer (and torch) load on first use, so that a module needing only the config or
    # the CLI helpers (the launcher's job records, the planner) does not pay for torch.
    if name in ("SCHEDULES", "Trainer"):
        from agent import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'agent' has no attribute {name!r}")
