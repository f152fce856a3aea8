"""Seed-batch benchmark (not a test): updates/s per core of K seeds trained as one batched
model against K runs, one per process.

    python -m benchmarks.seed_batch [--env cartpole] [--presets debug,small]
        [--starts last,all] [--ks 1,2,4,8,10] [--schedule coupled] [--reps 5]

In one process with one torch thread, each round times one update of the schedule (one WM
and one AC update) for a single run and for a seed batch of each K, in turn, so that every
figure is measured side by side under the same load; the median over the rounds is kept.
K runs, one per process, each on its own core, do ``1 / t(1)`` updates per second per core;
a seed batch of K does ``K / t(K)`` on one core. The ratio ``K * t(1) / t(K)`` is printed
per preset, start set and K. It is an upper bound for the processes (K processes on K
cores never share memory bandwidth perfectly), so the batch's advantage is if anything
understated. Collection is not timed: it is the same per run either way.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

from agent.cli import ArgumentParser, line_buffered_stdout, positive_int
from agent.config import ENV_PRESETS, SIZE_PRESETS, ConfigError, make_config
from agent.seed_batch import SeedBatch
from agent.trainer import SCHEDULES, Trainer, resolve_device
from benchmarks.speed import SHAPES

STEPS_FOREVER = 10**9


def _ints(name: str, text: str) -> list[int]:
    values = [positive_int(name, part) or 0 for part in text.split(",") if part.strip()]
    if not values:
        raise ConfigError(f"{name} must list at least one number, got {text!r}")
    return sorted(set(values))


def _build(env: str, preset: str, overrides: dict, k: int) -> Trainer:
    """A prefilled single run (``k == 1``) or seed batch of seeds ``0..k-1``, warmed up."""
    configs = [make_config(env, preset, {**overrides, "train.seed": seed}) for seed in range(k)]
    trainer = Trainer(configs[0]) if k == 1 else SeedBatch(configs)
    members = [trainer] if k == 1 else trainer.members
    for member in members:
        member.collect(member.config.train.prefill)
    SCHEDULES[configs[0].train.schedule](trainer, 2)  # warm-up: first-call allocations
    return trainer


def measure(env: str, preset: str, overrides: dict, ks: list[int], reps: int) -> dict[int, float]:
    """Median seconds of one schedule update (one WM + one AC) per K, rounds interleaved."""
    trainers = {k: _build(env, preset, overrides, k) for k in ks}
    schedule = SCHEDULES[next(iter(trainers.values())).config.train.schedule]
    times: dict[int, list[float]] = {k: [] for k in ks}
    for _ in range(reps):
        for k, trainer in trainers.items():
            start = time.perf_counter()
            schedule(trainer, 1)
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(values) for k, values in times.items()}


def lines(preset: str, starts: str, seconds: dict[int, float], reps: int) -> list[str]:
    """One line per K: the per-core throughput ratio, with the times behind it."""
    single = seconds[1]
    out = []
    for k, batched in seconds.items():
        ratio = k * single / batched
        out.append(
            f"seed batch: K={k}, {preset}, starts={starts}: {ratio:.1f}x the updates/s per "
            f"core of one run per process (one update: 1 run {single * 1e3:.1f} ms, {k} "
            f"batched {batched * 1e3:.1f} ms; median of {reps})"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m benchmarks.seed_batch", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--env", default="cartpole", help=", ".join(sorted(ENV_PRESETS)))
    parser.add_argument("--presets", default="debug,small", help="size presets, comma-separated")
    parser.add_argument("--shape", default=None, choices=list(SHAPES), help="a shape instead")
    parser.add_argument("--starts", default="last,all")
    parser.add_argument("--ks", default="1,2,4,8,10", help="seed batch sizes (1 is always run)")
    parser.add_argument("--schedule", default="coupled", choices=list(SCHEDULES))
    parser.add_argument("--reps", default="5", help="timed rounds (median kept)")
    parser.add_argument("--device", default="auto", help="auto: CUDA where there is one")
    args = parser.parse_args(argv)
    line_buffered_stdout()
    try:
        ks = sorted({1, *_ints("KS", args.ks)})
        reps = positive_int("REPS", args.reps) or 0
        starts_list = [s for s in args.starts.split(",") if s]
        if args.shape:
            presets = [(f"shape {args.shape}", *SHAPES[args.shape])]
        else:
            presets = [(name, name, {}) for name in args.presets.split(",") if name]
        for _, preset, _ in presets:
            if preset not in SIZE_PRESETS:
                raise ConfigError(f"unknown preset {preset!r}; one of {', '.join(SIZE_PRESETS)}")
        base = {
            "train.schedule": args.schedule,
            "train.steps": STEPS_FOREVER,
            "train.eval_every": 0,
            "train.compile": "off",
            "train.cuda_graphs": "off",
        }
        for starts in starts_list:
            make_config(args.env, presets[0][1], {**base, "train.starts": starts})
    except ConfigError as error:
        parser.error(str(error))
    device = resolve_device(args.device)
    base["train.device"] = str(device)
    if device.type == "cpu":
        torch.set_num_threads(1)  # one run per core is what the ratio compares with
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU, 1 thread"
    print(
        f"{args.env} | schedule {args.schedule} | {where} | torch {torch.__version__} | "
        f"K = {', '.join(map(str, ks))} | timed: one update (WM + AC) per round, {reps} rounds"
    )
    for label, preset, shape in presets:
        for starts in starts_list:
            overrides = {**shape, **base, "train.starts": starts}
            seconds = measure(args.env, preset, overrides, ks, reps)
            for line in lines(label, starts, seconds, reps):
                print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
