"""Seeds as a batch: ``K`` runs of one configuration, differing only in their seed, trained
by one process as one member-batched model (see :mod:`agent.members`).

Each member is a whole :class:`~agent.trainer.Trainer` of its own seed: its env, replay,
generators, counters, logger, evaluation and acting are its run's, untouched. What the
members share is the learning: one stacked world model and actor-critic whose slices *are*
the members' weights (their modules' parameters are views of it), one optimiser per part
over the stacked parameters (Adam is elementwise, so a stacked Adam is each member's own
Adam), and the schedule of :data:`agent.trainer.SCHEDULES`, run once for all members on a
batch that holds each member's own replay batch as one block of rows. Gradient clipping,
the return normaliser and the slow critic are per member; every random draw of a member
comes from its own generator in its single run's order. A member of a seed batch is
therefore its single-seed run, up to float rounding of the batched matmuls.

A member whose losses become non-finite stops alone: its run ends with the error, while
the others go on (nothing crosses between members, so its NaNs cannot reach them).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from agent.acceleration import use_bf16
from agent.config import Config, ConfigError, to_dict
from agent.logger import Logger
from agent.members import MemberGenerators, alias_members, stack_members
from agent.starts import BATCH_KEYS
from agent.trainer import NonFiniteLossError, Trainer


class MemberMetrics:
    """A seed batch's metrics: each :meth:`add` stacks its values into one ``(n, K)`` row
    (a ``(K,)`` tensor is one value per member, a scalar or plain number every member's),
    one kernel per add however many members there are. :meth:`settle` hands each member
    its share, ``(R, n)`` rows, before the members flush or checkpoint their means."""

    def __init__(self, members: Sequence[Trainer]):
        self.members = list(members)
        self._rows: dict[tuple[str, ...], list[torch.Tensor]] = defaultdict(list)
        self._numbers: dict[str, list[float]] = defaultdict(list)

    def add(self, metrics: Mapping[str, torch.Tensor | float]) -> None:
        K = len(self.members)
        names = tuple(name for name, value in metrics.items() if torch.is_tensor(value))
        if names:
            values = [metrics[name].detach().float().expand(K) for name in names]
            self._rows[names].append(torch.stack(values))  # (n, K)
        for name, value in metrics.items():
            if not torch.is_tensor(value):
                self._numbers[name].append(float(value))

    def settle(self) -> None:
        """Move every value added so far to the members' own means (their ``metrics``,
        which loading a checkpoint replaces: read afresh here)."""
        for names, rows in self._rows.items():
            stacked = torch.stack(rows)  # (R, n, K)
            for k, member in enumerate(self.members):
                member.metrics.add_rows(names, stacked[..., k])
        for name, values in self._numbers.items():
            for member in self.members:
                member.metrics.add_numbers(name, values)
        self._rows.clear()
        self._numbers.clear()

    def flush(self) -> list[dict[str, float]]:
        """Each member's means since its last flush (see :class:`agent.logger.MetricMeans`)."""
        self.settle()
        return [member.metrics.flush() for member in self.members]


class MemberOptimizer:
    """Member ``k``'s view of a stacked optimiser, in a single run's format: what a member's
    checkpoint saves and loads (:mod:`agent.checkpoint` sees a plain optimiser), so that a
    member's checkpoint is exactly the checkpoint of its single-seed run, and either resumes
    the other."""

    def __init__(self, stacked: torch.optim.Optimizer, k: int, members: int):
        self.stacked, self.k, self.members = stacked, k, members

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.stacked.param_groups

    def state_dict(self) -> dict[str, Any]:
        whole = self.stacked.state_dict()
        state = {
            index: {
                name: value if name == "step" else value[self.k].clone()
                for name, value in entry.items()
            }
            for index, entry in whole["state"].items()
        }
        return {"state": state, "param_groups": whole["param_groups"]}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        params = [p for group in self.stacked.param_groups for p in group["params"]]
        for index, entry in state["state"].items():
            target = self.stacked.state[params[index]]
            for name, value in entry.items():
                if name == "step":  # the members step together: one count for all
                    target[name] = value.detach().clone().to(params[index].device)
                    continue
                if name not in target:
                    target[name] = torch.zeros_like(
                        params[index], memory_format=torch.preserve_format
                    )
                target[name][self.k].copy_(value)


def _flat(config: Config) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for part, values in to_dict(config).items():
        if isinstance(values, dict):
            flat.update({f"{part}.{key}": value for key, value in values.items()})
        else:
            flat[part] = values
    return flat


def _differs_only_in_seed(configs: Sequence[Config]) -> None:
    first = _flat(configs[0])
    for config in configs[1:]:
        other = _flat(config)
        differing = sorted(k for k in first if first[k] != other[k] and k != "train.seed")
        if differing:
            raise ConfigError(f"a seed batch's runs may differ only in train.seed: {differing}")


class SeedBatch(Trainer):
    """``K >= 2`` runs of one config (seeds differ) trained as one batched model.

    ``members[k]`` is run ``k``'s own trainer; :meth:`train` trains them all. The schedule
    methods (``train_world_model``, ``sample_starts``, ``refilter``, ``train_actor_critic``
    and the joint schedule's halves) are the trainer's own, run on batches of ``(K * B, T)``.
    """

    def __init__(self, configs: Sequence[Config], loggers: Sequence[Logger] | None = None):
        if len(configs) < 2:
            raise ConfigError(f"a seed batch needs at least 2 runs, got {len(configs)}")
        _differs_only_in_seed(configs)
        seeds = [c.train.seed for c in configs]
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"a seed batch's seeds must differ, got {seeds}")
        loggers = list(loggers) if loggers is not None else [None] * len(configs)
        self.members = [Trainer(c, lg) for c, lg in zip(configs, loggers, strict=True)]
        first = self.members[0]
        self.config = first.config
        if self.config.train.compile == "on" or self.config.train.cuda_graphs == "on":
            raise ConfigError("a seed batch runs without train.compile and train.cuda_graphs")
        self.device = first.device
        self.obs_key = first.obs_key
        self.num_actions = first.num_actions
        self.generator = MemberGenerators(m.generator for m in self.members)
        self.world_model = stack_members([m.world_model for m in self.members])
        self.actor_critic = stack_members([m.actor_critic for m in self.members])
        alias_members(self.world_model, [m.world_model for m in self.members])
        alias_members(self.actor_critic, [m.actor_critic for m in self.members])
        self.bf16 = use_bf16(self.config.train.precision, self.device)
        self.graphs = False
        self._init_learning()
        self._init_counters()
        self.metrics = MemberMetrics(self.members)
        self.failures: dict[int, str] = {}  # member index -> why its run stopped
        # Each member checkpoints through its own trainer (agent.checkpoint, unchanged): its
        # optimisers become views of its slice of the stacked ones.
        size = len(self.members)
        for k, member in enumerate(self.members):
            member.wm_optimizer = MemberOptimizer(self.wm_optimizer, k, size)
            member.actor_optimizer = MemberOptimizer(self.actor_optimizer, k, size)
            member.critic_optimizer = MemberOptimizer(self.critic_optimizer, k, size)

    def resync(self) -> None:
        """Take the members' counters after they loaded their checkpoints (all must be at
        one point of training: a seed batch trains its members in step)."""
        names = ("env_steps", "wm_updates", "ac_updates", "iterations", "_update_credit")
        points = {tuple(getattr(m, name) for name in names) for m in self.members}
        if len(points) != 1:
            raise ConfigError(
                "a seed batch's members must resume from one point of training, got "
                f"{sorted(points)}"
            )
        (point,) = points
        for name, value in zip(names[1:], point[1:], strict=True):
            setattr(self, name, value)

    @property
    def env_steps(self) -> int:
        """The members' agent steps (they collect in step)."""
        return self.members[0].env_steps

    @env_steps.setter
    def env_steps(self, value: int) -> None:
        pass  # each member counts its own steps

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def running(self) -> list[Trainer]:
        """The members still training (not stopped by a non-finite loss)."""
        return [m for k, m in enumerate(self.members) if k not in self.failures]

    def _sample_batch(self) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray]]:
        """Each member's replay batch ``(B, T)`` from its own replay, stacked member-major
        into ``(K * B, T)`` (see :mod:`agent.members`)."""
        parts = [m._sample_batch() for m in self.members]
        batch = {key: torch.cat([p[0][key] for p in parts]) for key in (self.obs_key, *BATCH_KEYS)}
        ids = {key: np.concatenate([p[1][key] for p in parts]) for key in ("uid", "env_step")}
        return batch, ids

    def train_iteration(self) -> None:
        """Each member collects; one schedule of batched updates; each member evaluates and
        logs as its single run would, a member with non-finite losses stopping alone."""
        start = time.perf_counter()
        for member in self.members:
            member._collect_iteration()
        self._run_schedule()
        self.iterations += 1
        due = [member._due() for member in self.members]
        if any(any(d) for d in due) and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elapsed = time.perf_counter() - start
        if any(flushing for _, flushing in due):
            self.metrics.settle()
            # The updates ran once for all: every member's log carries the batch's phases.
            phases = self.timer.flush()
            for member in self.members:
                for phase, seconds in phases.items():
                    member.timer.seconds[phase] += seconds
        for k, (member, (evaluating, flushing)) in enumerate(zip(self.members, due, strict=True)):
            member.iterations = self.iterations
            member.wm_updates, member.ac_updates = self.wm_updates, self.ac_updates
            member._add_training_time(elapsed)
            if k in self.failures:
                if flushing:
                    member.metrics.flush()  # a stopped member's means are nobody's: dropped
                continue
            try:
                member._evaluate_and_flush(evaluating, flushing)
            except NonFiniteLossError as error:
                self.failures[k] = str(error)

    @property
    def done(self) -> bool:
        return all(member.done for member in self.members) or not self.running

    def train(self, progress: bool = False) -> dict[str, float]:  # type: ignore[override]
        """Train every member to ``train.steps``; returns the first member's summary (each
        member's own is ``members[k].summary()``; a failed one's reason is in
        :attr:`failures`)."""
        while not self.done:
            self.train_iteration()
        return self.members[0].summary()

    def state_dict(self) -> dict[str, Any]:
        raise TypeError("a seed batch checkpoints member by member: members[k].state_dict()")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise TypeError("a seed batch loads member by member, then resync()")
