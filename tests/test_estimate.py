"""The duration estimate counts every kind of work a run does, and its CPU hint fits."""

from __future__ import annotations

import dataclasses
import heapq
import random
import re

import pytest

from ablations.plan.estimate import (
    RunCosts,
    best_seed_batch,
    busy_caution,
    count_work,
    cpu_sized_command,
    estimate_seconds,
    packed_seconds,
    run_seconds,
    shared_cpu_slowdown,
    steps_within,
    torch_threads,
)
from ablations.plan.spec import AblationSpec
from agent import Trainer
from tests.conftest import tiny_config


class CountingLogger:
    def __init__(self) -> None:
        self.points: dict[str, int] = {}

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for key in metrics:
            self.points[key] = self.points.get(key, 0) + 1


@pytest.mark.parametrize("ratio", [8, 40])
def test_counted_work_is_what_a_real_run_does(ratio: int) -> None:
    overrides = {"train__train_ratio": ratio, "train__steps": 300, "train__prefill": 100}
    overrides |= {"train__eval_every": 70, "train__eval_episodes": 1, "train__log_every": 50}
    config = tiny_config(**overrides)
    logger = CountingLogger()
    summary = Trainer(config, logger).train()
    work = count_work(config.train)
    assert work.random_steps + work.policy_steps == summary["env_steps"] == 300
    assert work.random_steps == 100
    assert work.updates == summary["wm_updates"]
    assert work.evaluations == logger.points["eval/return"]
    assert work.flushes == logger.points["time/total"]


def test_every_kind_of_work_counts_in_the_estimate() -> None:
    config = tiny_config(train__steps=1000, train__eval_every=500, train__eval_episodes=2)
    work = count_work(config.train)
    costs = RunCosts(random_step=1, policy_step=10, update=100, flush=1000, episode_length=7)
    expected = (
        work.random_steps * 1
        + (work.policy_steps + work.evaluations * 2 * 7) * 10
        + work.updates * 100
        + work.flushes * 1000
        + 5
    )
    assert run_seconds(config.train, costs, startup=5) == expected
    assert work.evaluations == 2 and work.updates > 0 and work.flushes > 0


@pytest.mark.slow
def test_the_cpu_hint_fits_its_time_and_differs_from_what_was_typed() -> None:
    # What the user typed: PRESET=debug STEPS=5000 on Pong, estimated at days.
    spec = AblationSpec("atari_pong", 1, ("coupled",), "debug", 5000)
    costs: dict[str, RunCosts] = {}
    typed = estimate_seconds(spec.runs(), 1, costs=costs)
    # The search at a budget a test can check (30 min in the CLI): four times the fewest
    # steps' estimate, whatever this machine's speed.
    fewest = AblationSpec("atari_pong", 1, ("coupled",), "debug", 256 + 16 + 1)
    budget = 4 * estimate_seconds(fewest.runs(), 1, costs=costs)
    hint = cpu_sized_command(spec, 1, costs=costs, seconds=budget)
    assert hint is not None and typed > budget
    steps = int(re.search(r"STEPS=(\d+)", hint).group(1))
    ratio = re.search(r"train\.train_ratio=([\d.]+)", hint)
    overrides = {"train.train_ratio": ratio.group(1)} if ratio else {}
    hinted = AblationSpec("atari_pong", 1, ("coupled",), "debug", steps, overrides)
    assert steps != 5000
    assert 0.8 * budget <= estimate_seconds(hinted.runs(), 1, costs=costs) <= budget


def test_busy_caution_only_when_the_timing_waited_for_a_core() -> None:
    # The load average counts the timing's own threads: at most one per CPU (plus noise) is
    # a quiet machine.
    assert busy_caution(0.3, 2) is None
    assert busy_caution(2.5, 2) is None
    caution = busy_caution(5.2, 2)
    assert caution is not None and "load average 5.2 on 2 CPUs" in caution
    assert "too long" in caution


def test_runs_that_outnumber_the_cores_share_them() -> None:
    # (parallel runs, torch threads each, cores) -> each run's slowdown against one alone.
    assert shared_cpu_slowdown(1, 1, 2) == 1.0
    assert shared_cpu_slowdown(2, 1, 2) == 1.0  # one core each, as when timed
    assert shared_cpu_slowdown(3, 1, 2) == 1.5  # 3 threads time-sliced on 2 cores
    assert shared_cpu_slowdown(2, 2, 2) == 2.0
    assert shared_cpu_slowdown(1, 4, 2) == 1.0  # timed alone with its 4 threads already
    assert shared_cpu_slowdown(4, 4, 2) == 4.0  # 4 runs on 2 cores, each timed on 2
    assert shared_cpu_slowdown(3, 1, 0) == 3.0  # an unknown core count counts as one


def test_the_slowdown_stretches_every_slot_and_shrinks_the_steps_that_fit() -> None:
    spec = AblationSpec("cartpole", 3, ("coupled",), "debug", 1000)
    runs = spec.runs()
    costs = {f"cartpole/{run.arm}": RunCosts(0.001, 0.002, 0.05, 0.01, 20) for run in runs}
    alone = run_seconds(runs[0].config().train, costs["cartpole/coupled"], startup=2)
    # Brute force: 3 equal runs on 2 slots take two runs' time; on 3 slots, one run's.
    assert estimate_seconds(runs, 2, 2, costs) == pytest.approx(2 * alone)
    assert estimate_seconds(runs, 3, 2, costs, slowdown=1.5) == pytest.approx(1.5 * alone)
    budget = 1.2 * alone
    fast = steps_within(runs, costs, 3, budget, 2)
    slow = steps_within(runs, costs, 3, budget, 2, slowdown=1.5)
    assert fast is not None and slow is not None and slow < fast
    # The steps found fit at their slowdown, and about 1% more would not.
    for steps, slowdown in ((fast, 1.0), (slow, 1.5)):
        at = dataclasses.replace(spec, steps=steps).runs()
        over = dataclasses.replace(spec, steps=int(steps * 1.02) + 1).runs()
        assert estimate_seconds(at, 3, 2, costs, slowdown) <= budget
        assert estimate_seconds(over, 3, 2, costs, slowdown) > budget


def test_packing_matches_a_clock_driven_simulation() -> None:
    # An independent model of the launcher: a clock jumps to the next run's end, and the
    # next queued run starts there, on the freed slot, taking slowdown x its time alone.
    def simulate(seconds: list[float], parallel: int, slowdown: float) -> float:
        queue, running, clock = list(seconds), [], 0.0
        while queue or running:
            while queue and len(running) < parallel:
                heapq.heappush(running, clock + queue.pop(0) * slowdown)
            clock = heapq.heappop(running)
        return clock

    rng = random.Random(0)
    for _ in range(200):
        seconds = [
            rng.choice([1.0, 2.5, 7.0, rng.uniform(0.1, 9)]) for _ in range(rng.randint(1, 9))
        ]
        parallel, slowdown = rng.randint(1, 4), rng.choice([1.0, 1.5, 3.0])
        assert packed_seconds(seconds, parallel, slowdown) == pytest.approx(
            simulate(seconds, parallel, slowdown)
        )
    assert packed_seconds([], 2) == 0.0
    assert packed_seconds([4.0, 1.0, 1.0, 1.0], 2) == 4.0  # the short ones share one slot
    assert packed_seconds([3.0], 0) == 3.0  # no slot counts as one


def test_thread_counts_read_in_the_singular_and_plural() -> None:
    assert [torch_threads(n) for n in (1, 2)] == ["1 torch thread", "2 torch threads"]


def test_a_seed_batch_is_one_process_whose_members_share_the_updates() -> None:
    # Two arms x 4 seeds; env work costs 1 s per run, an update 0.1 s alone and 0.25 s for a
    # batch of 2, 0.9 s for a batch of 4 (costlier than 4 updates alone).
    spec = AblationSpec("cartpole", 4, ("coupled", "separate"), "debug", 400, {}, "x")
    runs = spec.runs()
    train = runs[0].config().train
    updates = count_work(train).updates
    base = RunCosts(0.0, 0.0, 0.1, 0.0, 1.0)
    env_work = run_seconds(train, base) - updates * 0.1  # every kind but the updates
    costs = {
        f"cartpole/{arm}": dataclasses.replace(base, batched_update={2: 0.25, 4: 0.9})
        for arm in spec.arms
    }
    one = estimate_seconds(runs, 2, 0.0, costs)
    assert one == pytest.approx(4 * (env_work + updates * 0.1))  # 8 runs on 2 slots
    two = estimate_seconds(runs, 2, 0.0, costs, seed_batch=2)
    assert two == pytest.approx(2 * (2 * env_work + updates * 0.25))  # 4 batches on 2 slots
    four = estimate_seconds(runs, 2, 0.0, costs, seed_batch=4)
    assert four == pytest.approx(4 * env_work + updates * 0.9)  # 2 batches side by side
    size, seconds = best_seed_batch(runs, 2, 0.0, costs)
    expected = min((one, 1), (two, 2), (four, 4))
    assert (size, seconds) == (expected[1], pytest.approx(expected[0]))
    # A batch no faster than one run per process is never chosen.
    slow = {k: dataclasses.replace(v, batched_update={2: 0.2, 4: 0.4}) for k, v in costs.items()}
    assert best_seed_batch(runs, 2, 0.0, slow)[0] == 1
