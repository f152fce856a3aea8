"""DreamerV3 in PyTorch with two training schedules, ``separate`` and ``coupled``.

Shape legend used in every docstring and comment:

    B  batch (sequences)        T  time steps per sequence     N  imagination starts
    H  imagination horizon      D  deterministic state (GRU)   S  stochastic latents
    K  classes per latent       A  actions                     F  features (D + S*K)

Entry points: :class:`Config` / :func:`make_config` and :class:`Trainer`.
"""

from agent.config import Config, ConfigError, make_config
from agent.trainer import SCHEDULES, Trainer

__all__ = ["SCHEDULES", "Config", "ConfigError", "Trainer", "make_config"]
