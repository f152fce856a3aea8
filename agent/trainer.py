"""The trainer: collects experience and runs one schedule of WM and AC updates.

This is the only module that knows every other. The schedules of the ablation sit side by
side in :data:`SCHEDULES`; everything else is shared:

    separate     collect; n x (batch -> WM update); n x (fresh starts -> imagine -> AC)
    coupled      collect; n x (batch -> WM update -> its posteriors -> imagine -> AC)
    interleaved  collect; n x (batch -> WM update; fresh starts -> imagine -> AC)
    joint        collect; n x (batch -> WM gradients, its posteriors -> imagine -> AC;
                               WM step)

with ``n = train_ratio * collect_every / (B * T)`` updates per iteration. Fresh starts are
a new replay batch filtered through the WM as it is then; ``coupled`` with
``train.refilter_starts`` filters its batch again through the updated WM before imagining
(a control: coupled's data with posteriors as fresh as separate's). ``joint`` takes both
gradients before either optimiser steps, as one step on the sum of both losses does, so its
imagination runs in the WM from before its step. Shape symbols: ``B`` batch, ``T`` time,
``N`` starts, ``H`` horizon, ``D`` deter, ``S`` latents, ``K`` classes, ``A`` actions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch

from agent import checkpoint
from agent.acceleration import (
    autocast,
    compile_steps,
    maybe_graphed,
    use_bf16,
    use_compile,
    use_graphs,
)
from agent.actor_critic import ActorCritic
from agent.config import SCHEDULES as SCHEDULE_NAMES
from agent.config import Config, ConfigError
from agent.diversity import imagined_dispersion, start_diversity, start_shift
from agent.envs import action_space, make_env, observation_shapes
from agent.logger import Logger, MetricMeans, NullLogger, PhaseTimer
from agent.members import clip_grad_norms
from agent.replay import Replay
from agent.starts import BATCH_KEYS, PosteriorStates, replay_steps, select_starts
from agent.world_model import WorldModel, features


def _hand_on(start: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The imagine step when imagination runs inside the AC step: the starts as they are."""
    return start


def _separate(trainer: Trainer, num_updates: int) -> None:
    # The seed plan's current code (IRIS/DIAMOND-like phases): all WM updates, then AC
    # updates, each from fresh replay starts.
    trainer.train_world_model(num_updates)
    for _ in range(num_updates):
        trainer.train_actor_critic(trainer.sample_starts())


def _coupled(trainer: Trainer, num_updates: int) -> None:
    # The seed plan's target: each AC update imagines from the posteriors the WM just computed
    # (with refilter_starts, the control: the same batch filtered again by the updated WM).
    for _ in range(num_updates):
        states = trainer.train_world_model(1)
        if trainer.config.train.refilter_starts:
            states = trainer.refilter(states)
        trainer.train_actor_critic(states)


def _interleaved(trainer: Trainer, num_updates: int) -> None:
    # STORM-like: one WM update, then one AC update from fresh replay starts filtered by the
    # WM just updated; interleaving without coupled's reuse of the WM's batch.
    for _ in range(num_updates):
        trainer.train_world_model(1)
        trainer.train_actor_critic(trainer.sample_starts())


def _joint(trainer: Trainer, num_updates: int) -> None:
    # Official DreamerV3 (2024 code): one step on the WM and AC losses of one batch. The AC
    # imagines from that batch's detached posteriors in the WM before its step.
    for _ in range(num_updates):
        states = trainer.world_model_gradients()
        trainer.train_actor_critic(states)
        trainer.step_world_model()


SCHEDULES: dict[str, Callable[[Trainer, int], None]] = {
    "separate": _separate,
    "coupled": _coupled,
    "interleaved": _interleaved,
    "joint": _joint,
}
assert tuple(SCHEDULES) == SCHEDULE_NAMES, "agent.config.SCHEDULES names the schedules here"


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite: the weights are garbage from here on."""


def stop_if_not_finite(metrics: dict[str, float], env_steps: int) -> None:
    """Raise :class:`NonFiniteLossError` naming every non-finite ``loss/*`` mean of a flush
    (checked once per flush, where the means reach the host anyway)."""
    bad = sorted(k for k, v in metrics.items() if k.startswith("loss/") and not np.isfinite(v))
    if bad:
        raise NonFiniteLossError(
            f"{', '.join(bad)} became non-finite by step {env_steps}; lower the learning "
            "rates or check the overrides"
        )


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Trainer:
    """DreamerV3 training of one run: env, replay, world model, actor-critic, schedule."""

    def __init__(self, config: Config, logger: Logger | None = None):
        self.config = config
        self.logger = logger or NullLogger()
        self.device = resolve_device(config.train.device)
        seed = config.train.seed
        # Independent seeded streams: env resets + prefill actions, replay sampling, torch;
        # evaluation has its own, so that evaluating (or not) leaves training unchanged.
        self.np_rng = np.random.default_rng(seed)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.eval_np_rng = np.random.default_rng([seed, 2])
        eval_seed = int(np.random.SeedSequence([seed, 3]).generate_state(1)[0])
        self.eval_generator = torch.Generator(device=self.device).manual_seed(eval_seed)

        self.env = make_env(config.env)
        self.eval_env = make_env(config.env)
        obs_shapes = observation_shapes(self.env)
        (self.obs_key,) = obs_shapes
        self.actions = action_space(self.env)
        self.num_actions = self.actions.size
        rng = np.random.default_rng([seed, 1])
        self.replay = Replay(
            config.train.replay_capacity, obs_shapes, rng, self.actions.replay_shape
        )

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.world_model = WorldModel(config, obs_shapes, self.num_actions).to(self.device)
            self.actor_critic = ActorCritic(
                config, self.world_model.rssm.feature_dim, self.num_actions
            ).to(self.device)
        if self.obs_key == "image":
            # NHWC: the layout images arrive in, the fastest for cuDNN and oneDNN convolutions,
            # and one in which the per-pixel channel LayerNorm needs no copies. Same maths.
            self.world_model.encoder.to(memory_format=torch.channels_last)
            self.world_model.decoder.to(memory_format=torch.channels_last)
        if use_compile(config.train.compile, self.device):
            compile_steps(self.world_model, self.actor_critic)
        self.bf16 = use_bf16(config.train.precision, self.device)
        self.graphs = use_graphs(config.train.cuda_graphs, self.device)
        if config.train.cuda_graphs == "on" and not self.graphs:
            raise ConfigError(f"train.cuda_graphs=on needs a CUDA device, got {self.device}")
        self._init_learning()
        self._init_counters()

    def _init_learning(self) -> None:
        """The optimisers and the update steps over ``world_model`` and ``actor_critic``
        (a seed batch calls this on its stacked models)."""
        config = self.config
        wm, ac = config.wm, config.ac
        # Fused Adam: one kernel per step for all parameters (same update as the loop);
        # capturable keeps its step count on the device, where a CUDA graph can advance it.
        adam = {"fused": True, "capturable": self.graphs}
        self.wm_optimizer = torch.optim.Adam(
            self.world_model.parameters(), lr=wm.lr, eps=wm.eps, **adam
        )
        self.actor_optimizer = torch.optim.Adam(
            self.actor_critic.actor.parameters(), lr=ac.actor_lr, eps=ac.eps, **adam
        )
        self.critic_optimizer = torch.optim.Adam(
            self.actor_critic.critic.parameters(), lr=ac.critic_lr, eps=ac.eps, **adam
        )
        # What the AC step may update: with actor gradients through the dynamics its loss
        # also depends on world-model parameters, which get neither gradient nor update.
        actor, critic = self.actor_critic.actor, self.actor_critic.critic
        self._ac_parameters = [*actor.parameters(), *critic.parameters()]
        # The update steps, each one CUDA graph when graphs are on (see GraphedStep). With
        # actor gradients through the dynamics, imagination belongs to the AC step (its
        # backward runs through it) and the imagine step hands the starts on unchanged.
        imagine, update = (self._imagine, self._actor_critic_update)
        if self.actor_critic.gradient.through_dynamics:
            imagine, update = (_hand_on, self._imagine_and_update)
        # The joint schedule splits the WM update in two around the AC step; a schedule uses
        # either the whole update or its two halves, and graphs capture only what runs.
        steps = (
            self._world_model_update,
            self._observe,
            imagine,
            update,
            self._world_model_gradients,
            self._world_model_apply,
        )
        self._steps = tuple(
            step if step is _hand_on else maybe_graphed(step, self.graphs, self.generator)
            for step in steps
        )
        (
            self._world_model_step,
            self._observe_step,
            self._imagine_step,
            self._actor_critic_step,
            self._world_model_gradients_step,
            self._world_model_apply_step,
        ) = self._steps

    def _init_counters(self) -> None:
        config = self.config
        self.env_steps = 0
        self.wm_updates = 0
        self.ac_updates = 0
        self.iterations = 0
        self.episodes = 0
        self._update_credit = 0.0
        self._next_log = config.train.log_every
        self._next_eval = config.train.eval_every
        self._wall_seconds = 0.0  # training wall-clock, carried across resumes
        self._last_flush = {"time": time.perf_counter(), "wm": 0, "ac": 0, "env": 0, "iter": 0}
        self._window_seconds = 0.0  # training time since the last flush
        self._episode: dict[str, Any] | None = None  # the collect env's open episode
        self.metrics = MetricMeans()
        self.timer = PhaseTimer(self.device)

    # --- acting ------------------------------------------------------------------------

    @torch.no_grad()
    def _policy_step(
        self,
        state: dict[str, torch.Tensor],
        obs: dict[str, np.ndarray],
        is_first: bool,
        generator: torch.Generator,
    ) -> Any:
        """Filter one observation into ``state`` (updated in place) and sample an action,
        returned in replay form (see :class:`agent.envs.Actions`)."""
        wm = self.world_model
        x = torch.as_tensor(obs[self.obs_key], device=self.device)[None]
        first = torch.tensor([is_first], device=self.device)
        out = wm.rssm.obs_step(
            state["h"], state["z"], state["action"], wm.embed(x), first, generator
        )
        action = self.actor_critic.act(features(out["h"], out["z"]), generator)  # (1, A)
        state.update(h=out["h"], z=out["z"], action=action)
        return self.actions.from_policy(action[0].float().cpu().numpy())

    def _new_policy_state(self) -> dict[str, torch.Tensor]:
        h, z = self.world_model.rssm.initial(1, self.device)
        return {"h": h, "z": z, "action": torch.zeros(1, self.num_actions, device=self.device)}

    def _reset_episode(self) -> None:
        obs, _ = self.env.reset(seed=int(self.np_rng.integers(2**31)))
        self.replay.add(obs, 0, 0.0, True, False, self.env_steps)
        self._episode = {
            "obs": obs,
            "first": True,
            "return": 0.0,
            "length": 0,
            "state": self._new_policy_state(),
        }

    def collect(self, steps: int) -> None:
        """Step the env ``steps`` times (uniform-random actions until ``prefill``), storing
        every transition in replay and logging ``episode/return``/``episode/length``."""
        with self.timer.phase("collect"):
            for _ in range(steps):
                if self._episode is None:
                    self._reset_episode()
                ep = self._episode
                prefilling = self.env_steps < self.config.train.prefill
                if prefilling:
                    action = self.actions.random(self.np_rng)
                else:
                    action = self._policy_step(ep["state"], ep["obs"], ep["first"], self.generator)
                obs, reward, terminated, truncated, _ = self.env.step(self.actions.to_env(action))
                self.env_steps += 1
                self.replay.add(obs, action, float(reward), False, terminated, self.env_steps)
                # A policy taking over mid-episode starts its filter afresh, as at is_first.
                ep.update(obs=obs, first=ep["first"] and prefilling)
                ep["return"] += float(reward)
                ep["length"] += 1
                if terminated or truncated:
                    self.episodes += 1
                    self.logger.log_metrics(
                        {"episode/return": ep["return"], "episode/length": ep["length"]},
                        self.env_steps,
                    )
                    self._episode = None

    @torch.no_grad()
    def evaluate(self, episodes: int) -> dict[str, float]:
        """Run ``episodes`` full episodes with the current policy on a separate env.

        Returns ``{"eval/return": mean, "eval/return_std": std, "eval/length": mean}``.
        """
        returns, lengths = [], []
        for _ in range(episodes):
            obs, _ = self.eval_env.reset(seed=int(self.eval_np_rng.integers(2**31)))
            state, first, done = self._new_policy_state(), True, False
            total, length = 0.0, 0
            while not done:
                action = self._policy_step(state, obs, first, self.eval_generator)
                obs, reward, terminated, truncated, _ = self.eval_env.step(
                    self.actions.to_env(action)
                )
                total, length, first = total + float(reward), length + 1, False
                done = terminated or truncated
            returns.append(total)
            lengths.append(length)
        return {
            "eval/return": float(np.mean(returns)),
            "eval/return_std": float(np.std(returns)),
            "eval/length": float(np.mean(lengths)),
        }

    # --- learning ----------------------------------------------------------------------

    def _autocast(self) -> AbstractContextManager:
        return autocast(self.device, self.bf16, cache=not self.graphs)

    def _sample_batch(self) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray]]:
        """A replay batch ``(B, T)``: its tensors on the device, and the replay identity
        (``uid``, ``env_step``) of every position as numpy arrays."""
        t = self.config.train
        arrays = self.replay.sample(t.batch_size, t.seq_len)
        batch = {key: self._upload(arrays[key]) for key in (self.obs_key, *BATCH_KEYS)}
        return batch, {"uid": arrays["uid"], "env_step": arrays["env_step"]}

    def _upload(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(array)
        if self.device.type == "cuda":  # from pinned memory the copy does not stall the host
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor

    def _posterior_states(
        self,
        batch: dict[str, torch.Tensor],
        ids: dict[str, np.ndarray],
        posterior: dict[str, torch.Tensor],
    ) -> PosteriorStates:
        B, T = batch["reward"].shape
        assert posterior["h"].shape[:2] == posterior["z"].shape[:2] == (B, T)
        assert ids["uid"].shape == ids["env_step"].shape == (B, T)
        return PosteriorStates(
            h=posterior["h"].detach(),
            z=posterior["z"].detach(),
            cont=(~batch["is_terminal"]).float(),
            reward=batch["reward"],
            is_first=batch["is_first"],
            action=batch["action"],
            observations=batch[self.obs_key],
            uid=ids["uid"],
            env_step=ids["env_step"],
        )

    # The four update steps work on device tensors alone, so that each can be one CUDA graph.

    def _world_model_update(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """One WM update on ``batch``; returns its posteriors ``h (B, T, D)``, ``z (B, T, S,
        K)`` detached, and its metrics."""
        out = self._world_model_gradients(batch)
        self._world_model_apply()
        return out

    def _world_model_gradients(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The WM loss's gradients on ``batch``, clipped, left in the parameters' ``.grad``
        for :meth:`_world_model_apply`; returns what :meth:`_world_model_update` returns."""
        wm = self.world_model
        with self._autocast():
            loss, metrics, posterior = wm.compute_loss(batch, self.generator)
        self.wm_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        metrics["grad_norm/wm"] = clip_grad_norms(
            wm.parameters(), self.config.wm.grad_clip, wm.members
        )
        return {"h": posterior["h"].detach(), "z": posterior["z"].detach(), "metrics": metrics}

    def _world_model_apply(self) -> None:
        """The WM optimiser's step on the gradients :meth:`_world_model_gradients` left."""
        self.wm_optimizer.step()

    @torch.no_grad()
    def _observe(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The posterior filter over ``batch`` without gradients: ``h``, ``z`` ``(B, T, ...)``."""
        with self._autocast():
            posterior = self.world_model.observe(batch, self.generator)
        return {"h": posterior["h"], "z": posterior["z"]}

    @torch.no_grad()
    def _imagine(self, start: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """:meth:`_rollout` without gradients (the REINFORCE actor's imagine step)."""
        return self._rollout(start)

    def _rollout(self, start: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """:meth:`WorldModel.imagine_trajectory` under the actor from ``start``; the actor
        reads its states detached (gradients reach it only through its actions)."""
        ac = self.actor_critic
        with self._autocast():
            return self.world_model.imagine_trajectory(
                start,
                lambda feat: ac.act(feat.detach(), self.generator),
                self.config.ac.horizon,
                self.generator,
            )

    def _imagine_and_update(
        self, start: dict[str, torch.Tensor], replay: dict[str, torch.Tensor] | None
    ) -> dict[str, torch.Tensor]:
        """The AC step of actor gradients through the dynamics: :meth:`_rollout` from
        ``start`` with gradients, then :meth:`_actor_critic_update` on it."""
        return self._actor_critic_update(self._rollout(start), replay)

    def _actor_critic_update(
        self, imagined: dict[str, torch.Tensor], replay: dict[str, torch.Tensor] | None
    ) -> dict[str, torch.Tensor]:
        """One actor and critic update on an imagined trajectory (see :meth:`_rollout`) and,
        with ``ac.replay_critic``, the replayed sequences behind it; returns its metrics."""
        ac, clip = self.actor_critic, self.config.ac.grad_clip
        with self._autocast():
            loss, metrics = ac.compute_loss(
                imagined["feat"], imagined["action"], imagined["reward"], imagined["cont"], replay
            )
        self.actor_optimizer.zero_grad(set_to_none=True)
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=self._ac_parameters)
        members = ac.members
        metrics["diversity/imagined_h_dispersion"] = imagined_dispersion(
            imagined["h"].detach(), members
        )
        metrics["grad_norm/actor"] = clip_grad_norms(ac.actor.parameters(), clip, members)
        metrics["grad_norm/critic"] = clip_grad_norms(ac.critic.parameters(), clip, members)
        self.actor_optimizer.step()
        self.critic_optimizer.step()
        ac.update_slow_critic()
        return metrics

    def train_world_model(self, num_updates: int = 1) -> PosteriorStates:
        """``num_updates`` WM updates, each on a fresh replay batch ``(B, T)``.

        Returns the last update's posterior states, detached (see :data:`PosteriorStates`):
        gradients from the actor-critic must never reach the world model.
        """
        if num_updates < 1:
            raise ValueError(f"num_updates must be at least 1, got {num_updates}")
        for _ in range(num_updates):
            with self.timer.phase("wm"):
                batch, ids = self._sample_batch()
                out = self._world_model_step(batch)
            self.metrics.add(out["metrics"])
            self.wm_updates += 1
        return self._posterior_states(batch, ids, out)

    def world_model_gradients(self) -> PosteriorStates:
        """The first half of a WM update (the joint schedule's): the WM loss's gradients on
        a fresh replay batch ``(B, T)``, kept for :meth:`step_world_model`; returns the
        batch's posterior states from the WM as it is, detached, as
        :meth:`train_world_model` does."""
        with self.timer.phase("wm"):
            batch, ids = self._sample_batch()
            out = self._world_model_gradients_step(batch)
        self.metrics.add(out["metrics"])
        return self._posterior_states(batch, ids, out)

    def step_world_model(self) -> None:
        """The second half: the WM optimiser steps on the gradients of
        :meth:`world_model_gradients` (an AC update in between leaves them as they were)."""
        with self.timer.phase("wm"):
            self._world_model_apply_step()
        self.wm_updates += 1

    def sample_starts(self) -> PosteriorStates:
        """A fresh replay batch filtered through the WM without gradients (the separate
        schedule's starts): same structure as :meth:`train_world_model`'s return."""
        with self.timer.phase("starts"):
            batch, ids = self._sample_batch()
            return self._posterior_states(batch, ids, self._observe_step(batch))

    def refilter(self, states: PosteriorStates) -> PosteriorStates:
        """The batch filtered again through the WM as it is now (after its step): the states
        with fresh ``h``, ``z``; logs :func:`start_shift` as ``staleness/start_h_shift``."""
        batch = {"action": states["action"], "is_first": states["is_first"]}
        with self.timer.phase("refilter"):
            fresh = self._observe_step({self.obs_key: states["observations"], **batch})
        members = self.world_model.members
        shift = start_shift(states["h"], fresh["h"], members)
        self.metrics.add({"staleness/start_h_shift": shift})
        return {**states, "h": fresh["h"], "z": fresh["z"]}

    def train_actor_critic(self, states: PosteriorStates) -> None:
        """One AC update on trajectories imagined from posterior ``states`` (from
        :meth:`train_world_model`, :meth:`sample_starts` or :meth:`refilter`): from their
        last step ``(h[:, -1], z[:, -1])``, or every step with ``starts=all``."""
        cfg = self.config
        assert not states["h"].requires_grad and not states["z"].requires_grad
        start = select_starts(states, cfg.train.starts)

        with self.timer.phase("imagine"):
            imagined = self._imagine_step({k: start[k] for k in ("h", "z", "cont")})
        with self.timer.phase("ac"):
            replay = replay_steps(states, cfg.train.starts) if cfg.ac.replay_critic else None
            metrics = dict(self._actor_critic_step(imagined, replay))

        members = self.world_model.members
        keys = ("h", "z", "uid", "env_step")
        metrics.update(start_diversity(*(start[k] for k in keys), self.env_steps, members))
        metrics["diversity/num_starts"] = float(start["h"].shape[0] // members)
        self.metrics.add(metrics)
        self.ac_updates += 1

    # --- the loop ----------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.env_steps >= self.config.train.steps

    def train_iteration(self) -> None:
        """Collect ``collect_every`` steps, then run the schedule's updates for them."""
        start = time.perf_counter()
        self._collect_iteration()
        self._run_schedule()
        self.iterations += 1
        evaluating, flushing = self._due()
        if (evaluating or flushing) and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # queued updates are training time, not eval's
        self._add_training_time(time.perf_counter() - start)
        self._evaluate_and_flush(evaluating, flushing)

    def _collect_iteration(self) -> None:
        t = self.config.train
        if self.env_steps < t.prefill:
            self.collect(t.prefill - self.env_steps)
        self.collect(min(t.collect_every, t.steps - self.env_steps))

    def _run_schedule(self) -> None:
        t = self.config.train
        self._update_credit += t.updates_per_iteration()
        num_updates = int(self._update_credit)
        self._update_credit -= num_updates
        if num_updates:  # a ratio below one update per iteration trains every few iterations
            SCHEDULES[t.schedule](self, num_updates)

    def _due(self) -> tuple[bool, bool]:
        """Whether this iteration ends with an evaluation, and with a metric flush."""
        t = self.config.train
        evaluating = bool(t.eval_every) and (self.env_steps >= self._next_eval or self.done)
        return evaluating, self.env_steps >= self._next_log or self.done

    def _add_training_time(self, elapsed: float) -> None:
        self._wall_seconds += elapsed
        self._window_seconds += elapsed

    def _evaluate_and_flush(self, evaluating: bool, flushing: bool) -> None:
        t = self.config.train
        if evaluating:
            self._next_eval = self.env_steps + t.eval_every
            with self.timer.phase("eval"):
                self.logger.log_metrics(self.evaluate(t.eval_episodes), self.env_steps)
        if flushing:
            self._next_log = self.env_steps + t.log_every
            stop_if_not_finite(self.flush_metrics(), self.env_steps)

    def flush_metrics(self) -> dict[str, float]:
        """Log the means since the last flush, per-phase seconds per iteration and speeds.
        Speeds divide by training time (collect + updates), never by time that includes
        evaluation; ``time/other`` is training time outside every phase timer, so the training
        phases add up to it exactly."""
        last = self._last_flush
        iterations = max(self.iterations - last["iter"], 1)
        seconds = max(self._window_seconds, 1e-9)
        metrics = self.metrics.flush()
        phases = self.timer.flush()
        for phase, spent in phases.items():
            metrics[f"time/{phase}"] = spent / iterations
        timed = sum(spent for phase, spent in phases.items() if phase != "eval")
        metrics["time/other"] = (self._window_seconds - timed) / iterations
        metrics.update(
            {
                "speed/updates_per_s": (self.wm_updates - last["wm"]) / seconds,
                "speed/env_steps_per_s": (self.env_steps - last["env"]) / seconds,
                "time/total": self._wall_seconds,
                "progress/wm_updates": float(self.wm_updates),
                "progress/ac_updates": float(self.ac_updates),
                "progress/episodes": float(self.episodes),
                "progress/iterations": float(self.iterations),
            }
        )
        self._window_seconds = 0.0
        self._last_flush = {
            "time": time.perf_counter(),
            "wm": self.wm_updates,
            "ac": self.ac_updates,
            "env": self.env_steps,
            "iter": self.iterations,
        }
        self.logger.log_metrics(metrics, self.env_steps)
        return metrics

    def train(self, progress: bool = False) -> dict[str, float]:
        """Train until ``train.steps`` agent steps; returns a summary of the run."""
        from tqdm.auto import tqdm

        bar = tqdm(
            total=self.config.train.steps,
            initial=self.env_steps,
            unit="step",
            disable=not progress,
            dynamic_ncols=True,
        )
        while not self.done:
            before = self.env_steps
            self.train_iteration()
            bar.update(self.env_steps - before)
        bar.close()
        return self.summary()

    def summary(self) -> dict[str, float]:
        return {
            "env_steps": float(self.env_steps),
            "wm_updates": float(self.wm_updates),
            "ac_updates": float(self.ac_updates),
            "episodes": float(self.episodes),
            "wall_seconds": self._wall_seconds,
        }

    # --- checkpoints -------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly (see :mod:`agent.checkpoint`)."""
        return checkpoint.state_dict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`, the open episode included where the env allows."""
        checkpoint.load_state_dict(self, state)

    def save(self, path: str) -> None:
        """Write a checkpoint atomically (a crash mid-write leaves the old one intact)."""
        checkpoint.save(self, path)

    def load(self, path: str) -> None:
        checkpoint.load(self, path)
