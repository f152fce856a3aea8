"""How long an ablation will take, before it starts: its work counted, each kind timed.

A run's wall-clock is counted from its config, iteration by iteration as the trainer runs
(:func:`count_work`): random-action prefill steps, policy steps, gradient updates,
evaluation episodes and metric flushes, plus a worker's start-up (the driver's own, its
imports and opening the store, stands in for it). Each kind is timed for a few seconds on
the real env and model (:func:`time_costs`). Evaluation episodes are counted at the length
of a random-policy episode, the policy's length at the start of training: a policy that
learns to survive longer (CartPole) makes evaluation take longer than estimated. MLflow
writes are not timed: batched, they take a few percent of a run (each run logs its share
as ``tracking/overhead_fraction``). Runs are packed onto ``parallel`` slots, each as fast as
one run alone times a ``slowdown``: on a CPU, runs whose threads outnumber the cores share
them by time slicing (:func:`shared_cpu_slowdown`).
"""

from __future__ import annotations

import dataclasses
import gc
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ablations.plan.spec import ARMS, AblationSpec, RunSpec, seed_batch_groups
from agent.config import Config, TrainConfig
from agent.envs import make_env
from agent.timing import filled_trainer, time_iteration
from agent.trainer import resolve_device

EPISODE_SECONDS = 5.0
"""Most seconds spent timing one random-policy episode; a longer one counts as what it
reached by then (a lower bound on its length)."""
POLICY_STEPS = 16
"""Policy steps timed (one collection iteration of the presets)."""
CPU_FIT_SECONDS = 30 * 60
"""Without a GPU, an ablation estimated at over twice this gets a command that fits it."""


@dataclass(frozen=True)
class RunCosts:
    """Seconds of each kind of work of one run, and the random-policy episode length."""

    random_step: float
    """One env step with a random action (prefill)."""
    policy_step: float
    """One env step with the policy acting (collection and evaluation)."""
    update: float
    """One gradient update under the run's schedule."""
    flush: float
    """One metric flush of the trainer."""
    episode_length: float
    """Agent steps of one random-policy episode (evaluation episodes are counted at it)."""
    peak_memory: int = 0
    """Bytes of CUDA memory torch allocated at most for the run (its model, replay batches,
    graphs), above what was allocated before; 0 on a CPU."""
    batched_update: dict[int, float] = field(default_factory=dict)
    """Seconds of one update of a seed batch of K runs, by K, timed when first needed."""


@dataclass(frozen=True)
class Work:
    """How much of each kind of work one run does (see :func:`count_work`)."""

    random_steps: int
    policy_steps: int
    updates: int
    evaluations: int
    flushes: int


def count_work(train: TrainConfig) -> Work:
    """The trainer's loop (:meth:`agent.trainer.Trainer.train_iteration`) replayed on
    counters: prefill, then ``collect_every`` steps per iteration with ``train_ratio``'s
    updates, an evaluation every ``eval_every`` steps and at the end, a flush every
    ``log_every`` steps and at the end."""
    prefill = min(train.prefill, train.steps)
    env_steps, credit, per_iteration = prefill, 0.0, train.updates_per_iteration()
    updates = evaluations = flushes = 0
    next_eval, next_log = train.eval_every, train.log_every
    while True:
        env_steps = min(env_steps + train.collect_every, train.steps)
        credit += per_iteration
        updates += int(credit)
        credit -= int(credit)
        done = env_steps >= train.steps
        if train.eval_every and (env_steps >= next_eval or done):
            next_eval, evaluations = env_steps + train.eval_every, evaluations + 1
        if env_steps >= next_log or done:
            next_log, flushes = env_steps + train.log_every, flushes + 1
        if done:
            break
    return Work(int(prefill), int(train.steps - prefill), updates, evaluations, flushes)


def time_costs(config: Config) -> RunCosts:
    """Time each kind of work of ``config`` on its real env and model (a few seconds): one
    random episode, a prefill of one batch, policy steps, updates (best of two pairs after
    a warm-up update) and a flush."""
    config = dataclasses.replace(
        config, train=dataclasses.replace(config.train, prefill=max(config.train.seq_len, 64))
    )
    random_step, episode_length = _random_episode(config)
    cuda = resolve_device(config.train.device).type == "cuda"
    if cuda:
        gc.collect()  # an earlier trainer's reference cycles still hold device memory
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    trainer = filled_trainer(config)
    start = time.perf_counter()
    trainer.collect(POLICY_STEPS)  # past the prefill: the policy acts
    policy_step = (time.perf_counter() - start) / POLICY_STEPS
    time_iteration(trainer, 1)
    update = min(time_iteration(trainer, 2)["total"] / 2 for _ in range(2))
    start = time.perf_counter()
    trainer.flush_metrics()
    flush = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() - before if cuda else 0
    del trainer
    if cuda:
        gc.collect()
        torch.cuda.empty_cache()  # the runs, not this process, need the card from here on
    return RunCosts(random_step, policy_step, update, flush, episode_length, peak)


def _random_episode(config: Config) -> tuple[float, float]:
    """``(seconds per step, episode length)`` of uniform-random actions on the real env."""
    env = make_env(config.env)
    env.reset(seed=config.train.seed)
    env.action_space.seed(config.train.seed)
    steps, done, start = 0, False, time.perf_counter()
    while not done and time.perf_counter() - start < EPISODE_SECONDS:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps, done = steps + 1, terminated or truncated
    seconds = time.perf_counter() - start
    env.close()
    return seconds / steps, float(steps)


def run_seconds(train: TrainConfig, costs: RunCosts, startup: float = 0.0) -> float:
    """Wall-clock of one run: every kind of work of :func:`count_work` at its timed cost,
    plus ``startup`` (a worker process starting and importing)."""
    work = count_work(train)
    eval_steps = work.evaluations * train.eval_episodes * costs.episode_length
    return (
        startup
        + work.random_steps * costs.random_step
        + (work.policy_steps + eval_steps) * costs.policy_step
        + work.updates * costs.update
        + work.flushes * costs.flush
    )


def group_seconds(train: TrainConfig, costs: RunCosts, size: int, startup: float) -> float:
    """Wall-clock of a seed batch of ``size`` runs in one process: each member's env work
    (prefill, acting, evaluation, flushes) in turn, and the updates once for all at the
    batch's timed cost (:func:`time_seed_batch`); for one run, :func:`run_seconds`."""
    if size == 1:
        return run_seconds(train, costs, startup)
    work = count_work(train)
    alone = run_seconds(train, costs)
    env_work = alone - work.updates * costs.update
    return startup + size * env_work + work.updates * costs.batched_update[size]


def time_seed_batch(config: Config, size: int) -> float:
    """Seconds of one update of a seed batch of ``size`` runs of ``config`` (seeds
    ``0..size-1``, each replay filled with one batch's worth of random steps), best of two
    pairs after a warm-up, as :func:`time_costs` times one run's."""
    from agent.seed_batch import SeedBatch

    prefill = max(config.train.seq_len, 64)
    configs = [
        dataclasses.replace(
            config, train=dataclasses.replace(config.train, prefill=prefill, seed=seed)
        )
        for seed in range(size)
    ]
    batch = SeedBatch(configs)
    for member in batch.members:
        member.collect(prefill)
    time_iteration(batch, 1)
    return min(time_iteration(batch, 2)["total"] / 2 for _ in range(2))


def estimate_seconds(
    runs: Sequence[RunSpec],
    parallel: int,
    startup: float = 0.0,
    costs: dict[str, RunCosts] | None = None,
    slowdown: float = 1.0,
    seed_batch: int = 1,
) -> float:
    """Wall-clock of ``runs`` with ``parallel`` at a time, each ``slowdown`` times slower than
    alone (see :func:`packed_seconds`; costs kept in ``costs`` when given, keyed by
    :func:`cost_key`). Each arm is timed whole on the first task of each kind of env (suite,
    observation and action kind); the suite's other tasks of that kind reuse its model costs
    and time only their env (a random episode), so a 26-game suite times two models per arm,
    not 26. With ``seed_batch`` above one, runs are grouped as the local launcher groups
    them (:func:`~ablations.plan.spec.seed_batch_groups`) and each group is one process
    (:func:`group_seconds`), its batched update timed once per task, arm and size."""
    costs = {} if costs is None else costs
    alone = []
    for group in seed_batch_groups(runs, seed_batch):
        run = runs[group[0]]
        run_cost = run_costs(run, costs)
        if len(group) > 1 and len(group) not in run_cost.batched_update:
            run_cost.batched_update[len(group)] = time_seed_batch(run.config(), len(group))
        alone.append(group_seconds(run.config().train, run_cost, len(group), startup))
    return packed_seconds(alone, parallel, slowdown)


SEED_BATCH_SIZES = (1, 2, 4, 8, 16)
"""The seed-batch sizes ``SEED_BATCH=auto`` chooses from."""


def best_seed_batch(
    runs: Sequence[RunSpec],
    parallel: int,
    startup: float = 0.0,
    costs: dict[str, RunCosts] | None = None,
    slowdown: float = 1.0,
) -> tuple[int, float]:
    """``SEED_BATCH=auto``: the size in :data:`SEED_BATCH_SIZES` (up to the most seeds any
    arm and task has) whose estimated wall-clock is the shortest, with that estimate; one run
    per process unless a batch is estimated faster."""
    costs = {} if costs is None else costs
    most = max((len(g) for g in seed_batch_groups(runs, len(runs) or 1)), default=1)
    best = (1, estimate_seconds(runs, parallel, startup, costs, slowdown))
    for size in SEED_BATCH_SIZES[1:]:
        if size > most:
            break
        seconds = estimate_seconds(runs, parallel, startup, costs, slowdown, size)
        if seconds < best[1]:
            best = (size, seconds)
    return best


def packed_seconds(seconds: Sequence[float], parallel: int, slowdown: float = 1.0) -> float:
    """Wall-clock of runs that take ``seconds`` each alone, in that order, ``parallel`` at a
    time: each starts on the slot that frees first and goes ``slowdown`` times slower."""
    slots = [0.0] * max(parallel, 1)
    for alone in seconds:
        slots[slots.index(min(slots))] += alone * slowdown
    return max(slots)


def shared_cpu_slowdown(parallel: int, threads: int, cpus: int) -> float:
    """How many times slower each of ``parallel`` CPU runs of ``threads`` torch threads goes
    than one run alone, when they share ``cpus`` cores: 1 while their threads fit the cores,
    else the cores are time-sliced among them. One run alone was timed with its own threads,
    so it is never slower than that (it had at most ``cpus`` cores then too)."""
    cpus = max(cpus, 1)
    return max(1.0, parallel * min(threads, cpus) / cpus)


def run_costs(run: RunSpec, costs: dict[str, RunCosts]) -> RunCosts:
    """The costs of ``run``, timed once per task and arm and kept in ``costs`` (see
    :func:`estimate_seconds`)."""
    if cost_key(run) not in costs:
        config = run.config()
        env = config.env
        kind = f"{env.suite}:{env.vision}:{env.actions}/{run.arm}"
        if kind in costs:
            random_step, length = _random_episode(config)
            costs[cost_key(run)] = dataclasses.replace(
                costs[kind], random_step=random_step, episode_length=length
            )
        else:
            costs[cost_key(run)] = costs[kind] = time_costs(config)
    return costs[cost_key(run)]


def cost_key(run: RunSpec) -> str:
    """Runs of one task and arm cost the same per step: ``<task>/<arm>``."""
    return f"{run.env}/{run.arm}"


def steps_within(
    runs: Sequence[RunSpec],
    costs: dict[str, RunCosts],
    parallel: int,
    seconds: float,
    startup: float = 0.0,
    slowdown: float = 1.0,
) -> int | None:
    """The most agent steps per run for which ``runs`` (at their ``costs``, each
    ``slowdown`` times slower than alone) fit in ``seconds``, or None when not even one
    iteration after the prefill does."""

    def fits(steps: int) -> bool:
        alone = [
            run_seconds(
                dataclasses.replace(run.config().train, steps=steps), costs[cost_key(run)], startup
            )
            for run in runs
        ]
        return packed_seconds(alone, parallel, slowdown) <= seconds

    train = runs[0].config().train
    low = train.prefill + train.collect_every + 1  # the fewest a config accepts
    if not fits(low):
        return None
    high = 2 * low
    while fits(high) and high < 10**9:  # low fits; double until high does not
        low, high = high, 2 * high
    while high - low > max(low // 100, 1):  # to within 1%
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def cpu_sized_command(
    spec: AblationSpec,
    parallel: int,
    startup: float = 0.0,
    costs: dict[str, RunCosts] | None = None,
    seconds: float = CPU_FIT_SECONDS,
    slowdown: float = 1.0,
) -> str | None:
    """``make ablation ...``: ``spec`` with the debug preset and the most STEPS that fit
    ``seconds`` at the costs timed here (kept in ``costs``; runs ``slowdown`` times slower
    than alone, see :func:`shared_cpu_slowdown`), halving the train ratio while
    not even the fewest steps fit; None if nothing fits, or when tasks have settings of
    their own (a study's per-task budgets, which one STEPS would erase)."""
    if spec.task_overrides:
        return None
    costs = {} if costs is None else costs
    overrides = {k: v for k, v in spec.overrides.items() if k != "train.steps"}
    ratio = 0.0
    for _ in range(12):
        small = dataclasses.replace(
            spec, preset="debug", steps=None, overrides=overrides, name="-"
        ).runs()
        ratio = ratio or small[0].config().train.train_ratio
        first = small[: len(spec.arms) * len(spec.tasks)]
        estimate_seconds(first, 1, startup, costs)  # times each task x arm once
        steps = steps_within(small, costs, parallel, seconds, startup, slowdown)
        if steps is not None:
            where = f"SUITE={spec.suite}" if spec.suite else f"ENV={spec.env}"
            words = [where, f"SEEDS={spec.seeds}"]
            # User or crossed arms: their names alone would not define them again.
            user = any(spec.arm_table.get(arm) != ARMS.get(arm) for arm in spec.arms)
            if spec.arms != ("separate", "coupled") and not user:
                words.append(f"ARMS={','.join(spec.arms)}")
            fewest = small[0].config().train.prefill + small[0].config().train.collect_every + 1
            words += ["PRESET=debug", f"STEPS={max(round_steps(steps), fewest)}"]
            sets = " ".join(f"{k}={v}" for k, v in sorted(overrides.items()))
            default_reference = "separate" if "separate" in spec.arms else spec.arms[0]
            if spec.reference != default_reference:
                words.append(f"REFERENCE={spec.reference}")
            same = " with the same ARMS, ARMS_FILE, ARM and GRID" if user else ""
            command = "make ablation " + " ".join(words) + (f' SET="{sets}"' if sets else "")
            return command + same
        ratio /= 2
        overrides["train.train_ratio"] = f"{ratio:g}"
    return None


def busy_caution(load: float, cpus: int) -> str | None:
    """A caution when the machine was oversubscribed while the work was timed: ``load``
    (the 1-minute load average just after timing, which counts the timing's own threads)
    above ``cpus`` means the timed work waited for a core, so the estimate is too long."""
    if load <= cpus + 0.5:  # the timing's own threads and a little noise
        return None
    return (
        f"the machine was busy while timing (load average {load:.1f} on {cpus} CPUs): "
        "the estimate may be several times too long"
    )


def torch_threads(threads: int) -> str:
    """``'1 torch thread'``, ``'2 torch threads'``."""
    return f"{threads} torch thread{'s' * (threads != 1)}"


def format_duration(seconds: float) -> str:
    """``'about 40 s'``, ``'about 40 min'``, ``'about 3.5 h'``, ``'about 2.1 days'``."""
    if seconds < 90:
        return f"about {seconds:.0f} s"
    if seconds < 3600:
        return f"about {max(seconds / 60, 1):.0f} min"
    if seconds < 2 * 86400:
        return f"about {seconds / 3600:.1f} h"
    return f"about {seconds / 86400:.1f} days"


def round_steps(steps: int) -> int:
    """``steps`` rounded down to two significant digits (5,234 -> 5,200)."""
    if steps < 100:
        return steps
    unit = 10 ** (int(math.log10(steps)) - 1)
    return steps // unit * unit


def print_estimate(
    spec: AblationSpec,
    runs: list[RunSpec],
    parallel: int,
    threads: int,
    startup: float,
    costs: dict[str, RunCosts] | None = None,
    seed_batch: int | str = 1,
) -> int:
    """Print the estimated duration of ``runs`` (each kind of work timed as above, or taken
    from ``costs``); without a GPU, when it is over an hour, a command that fits about 30 min
    here. Returns the seed batch size to run with: ``seed_batch``, or for ``"auto"`` the one
    estimated fastest (:func:`best_seed_batch`), which it says."""
    torch.set_num_threads(threads)  # time the work as a worker will run it
    print("estimating the duration: timing env steps, acting and updates per arm...", flush=True)
    cpus = os.cpu_count() or 1
    fixed = 1 if seed_batch == "auto" else int(seed_batch)
    side_by_side = min(parallel, len(seed_batch_groups(runs, fixed)))
    slowdown = 1.0
    if not torch.cuda.is_available():
        slowdown = shared_cpu_slowdown(side_by_side, threads, cpus)
    try:
        if seed_batch == "auto":
            single = estimate_seconds(runs, parallel, startup, costs, slowdown)
            fixed, estimate = best_seed_batch(runs, parallel, startup, costs, slowdown)
            print(
                f"SEED_BATCH=auto: {fixed} seed{'s' * (fixed != 1)} of an arm per process, "
                f"estimated {format_duration(estimate)} against {format_duration(single)} "
                "with one run per process"
            )
        else:
            estimate = estimate_seconds(runs, parallel, startup, costs, slowdown, fixed)
    except Exception:  # noqa: BLE001 - a run that cannot start fails in its worker, named
        return fixed
    batched = f", up to {fixed} seeds batched per process" if fixed > 1 else ""
    print(
        f"estimated duration: {format_duration(estimate)} (env steps, acting, updates, "
        f"evaluation, metric flushes and start-up, each timed on this machine{batched})"
    )
    if slowdown > 1:
        print(
            f"{side_by_side} runs side by side ({torch_threads(threads)} each) share {cpus} "
            f"CPUs: each is counted {slowdown:.2g}x slower than alone"
        )
    caution = busy_caution(os.getloadavg()[0], cpus)
    if caution:
        print(caution)
    if estimate > 2 * CPU_FIT_SECONDS and not torch.cuda.is_available():
        hint = cpu_sized_command(spec, parallel, startup, slowdown=slowdown)
        if hint:
            print(f"that is a GPU job; a version that fits about 30 min on this CPU: {hint}")
    return fixed
