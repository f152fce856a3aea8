"""Throughput benchmark (not a test): aggregate updates/s of k concurrent runs on one device.

    python -m benchmarks.throughput [--env atari_pong] [--shape S] [--ks 1,2,4,8]

What an ablation costs is device-hours for all its runs, and one run leaves a large GPU
mostly idle. This starts ``max(KS)`` training processes on one device (CUDA MPS's daemon
around them where it is installed, as ``RUNS_PER_GPU`` does), each with its own env,
replay and seed, training as a run does (collect ``collect_every`` steps, then the
schedule's updates for them). Each fills its replay and warms up (compilation, CUDA
graphs); then, for each k in turn, the first k processes train ``--updates`` more WM + AC
updates at once while the others wait. The aggregate rate of k is all their updates over
the span from the first start to the last end. From the best k it estimates the wall-clock
of a SEEDS x ARMS ablation on that one device:

    runs x updates per run / aggregate updates/s

with updates per run counted from the config as the trainer runs it (``train_ratio`` and
``steps``: 100k agent steps for Atari100k) and k runs in flight throughout. The rate
includes collection, so the estimate is training time: prefill, evaluation and start-up
are not in it. Every process trains one arm (``--arm``, default ``separate``, the costlier
update of the two default arms, so the estimate errs long).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any

import torch

from ablations.launch.gpu_share import GIB, gpu_sharing
from ablations.plan.estimate import count_work, format_duration, torch_threads
from ablations.plan.spec import ARMS
from agent.cli import ArgumentParser, line_buffered_stdout, positive_int
from agent.config import ENV_PRESETS, SIZE_PRESETS, Config, ConfigError, make_config
from agent.trainer import Trainer, resolve_device
from benchmarks.speed import SHAPES

STEPS_FOREVER = 10**9
"""A budget the benchmark's processes never reach."""


@dataclass(frozen=True)
class Span:
    """What one process did in one measurement: its updates between two readings of the
    system-wide monotonic clock (comparable between processes)."""

    start: float
    end: float
    updates: int


@dataclass(frozen=True)
class Throughput:
    """The ``k`` processes' updates together and the span they took."""

    k: int
    updates: int
    seconds: float

    @property
    def rate(self) -> float:
        """Aggregate updates per second."""
        return self.updates / self.seconds


def aggregate(spans: list[Span]) -> Throughput:
    """Every process's updates over the span from the first start to the last end."""
    start, end = min(s.start for s in spans), max(s.end for s in spans)
    return Throughput(len(spans), sum(s.updates for s in spans), end - start)


def ablation_seconds(updates_per_run: int, runs: int, rate: float) -> float:
    """Wall-clock of ``runs`` runs of ``updates_per_run`` updates each on one device that
    does ``rate`` updates/s in all: ``runs x updates_per_run / rate``."""
    return runs * updates_per_run / rate


def table(results: list[Throughput]) -> str:
    """One row per k: updates, seconds, aggregate and per-run updates/s, and the aggregate
    against the first row's (k = 1 when measured)."""
    lines = [
        f"{'k':>3} {'updates':>8} {'seconds':>8} {'updates/s':>10} {'per run':>8} {'vs first':>9}"
    ]
    for row in results:
        lines.append(
            f"{row.k:>3} {row.updates:>8} {row.seconds:>8.2f} {row.rate:>10.2f} "
            f"{row.rate / row.k:>8.2f} {row.rate / results[0].rate:>8.2f}x"
        )
    return "\n".join(lines)


def _train_updates(trainer: Trainer, updates: int) -> None:
    """Train iterations as a run does until ``updates`` more WM updates are done."""
    target = trainer.wm_updates + updates
    while trainer.wm_updates < target:
        trainer.train_iteration()


def _worker(
    index: int, config: Config, warmup: int, threads: int, commands: Any, results: Any
) -> None:
    """One training process: fill, warm up, say ready (with its peak device memory), then
    train each commanded number of updates and report its :class:`Span`; ``None`` ends it."""
    try:
        torch.set_num_threads(threads)
        trainer = Trainer(config)
        cuda = trainer.device.type == "cuda"
        trainer.collect(config.train.prefill)  # random-action prefill, never timed
        _train_updates(trainer, warmup)
        if cuda:
            torch.cuda.synchronize(trainer.device)
        peak = torch.cuda.max_memory_allocated(trainer.device) if cuda else 0
        results.put(("ready", index, peak))
        while (updates := commands.get()) is not None:
            before = trainer.wm_updates
            start = time.monotonic()
            _train_updates(trainer, updates)
            if cuda:
                torch.cuda.synchronize(trainer.device)
            span = Span(start, time.monotonic(), trainer.wm_updates - before)
            results.put(("done", index, span))
    except Exception as error:  # noqa: BLE001 - reported to the driver, which names it
        last = traceback.format_exception_only(error)[-1].strip()
        results.put(("error", index, last))


class WorkerError(RuntimeError):
    """A training process failed or died; the message names it."""


def _receive(results: Any, processes: list[Any], kind: str) -> tuple[Any, ...]:
    """The next message of ``kind`` from the processes; raises :class:`WorkerError` on an
    error message or a process that died."""
    while True:
        try:
            message = results.get(timeout=1.0)
        except queue.Empty:
            dead = [i for i, p in enumerate(processes) if not p.is_alive()]
            if dead:
                code = processes[dead[0]].exitcode
                raise WorkerError(f"process {dead[0]} died (exit code {code})") from None
            continue
        if message[0] == "error":
            raise WorkerError(f"process {message[1]} failed: {message[2]}")
        if message[0] == kind:
            return message


@dataclass
class Measurement:
    """The throughputs measured, each process's peak device bytes after its warm-up (0 on a
    CPU), and why the measurement stopped early (a process failed), if it did."""

    throughputs: list[Throughput]
    peaks: list[int]
    failure: str | None = None


def measure(
    configs: list[Config], ks: list[int], updates: int, warmup: int, threads: int
) -> Measurement:
    """Start one process per config, warm each up by ``warmup`` updates, then measure
    ``updates`` more per process for the first k processes, for each k of ``ks``. A process
    that fails or dies ends the measurement, keeping what was measured before."""
    context = mp.get_context("spawn")
    results = context.Queue()
    commands = [context.Queue() for _ in configs]
    processes = [
        context.Process(
            target=_worker,
            args=(i, config, warmup, threads, commands[i], results),
            name=f"throughput-{i}",
        )
        for i, config in enumerate(configs)
    ]
    result = Measurement([], [0] * len(processes))
    try:
        for process in processes:
            process.start()
        for _ in processes:
            _, index, peak = _receive(results, processes, "ready")
            result.peaks[index] = peak
        print(f"{len(processes)} processes filled their replays and warmed up")
        for k in ks:
            for i in range(k):
                commands[i].put(updates)
            spans = [_receive(results, processes, "done")[2] for _ in range(k)]
            row = aggregate(spans)
            result.throughputs.append(row)
            print(f"k={k}: {row.rate:.2f} updates/s in all ({row.updates} in {row.seconds:.2f} s)")
        for command in commands:
            command.put(None)
        for process in processes:
            process.join(timeout=60)
    except WorkerError as error:
        result.failure = str(error)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join(timeout=10)
    return result


def _ks(text: str) -> list[int]:
    try:
        ks = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"KS must be comma-separated whole numbers, got '{text}'") from None
    if not ks or min(ks) < 1:
        raise ConfigError(f"KS must be positive whole numbers, got '{text}'")
    return sorted(set(ks))


def _non_negative(name: str, text: str) -> int:
    return 0 if text.strip() == "0" else positive_int(name, text) or 0


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m benchmarks.throughput", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--env", default="atari_pong", help=", ".join(sorted(ENV_PRESETS)))
    parser.add_argument("--shape", default="S", choices=list(SHAPES), help="default S")
    parser.add_argument(
        "--preset", default=None, choices=list(SIZE_PRESETS), help="a size preset instead"
    )
    parser.add_argument("--ks", default="1,2,4,8", help="concurrent processes to measure")
    parser.add_argument("--updates", default="64", help="timed updates per process and k")
    parser.add_argument("--warmup", default="16", help="updates per process before timing")
    parser.add_argument("--arm", default="separate", choices=list(ARMS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seeds", default="5", help="seeds per arm of the estimated ablation")
    parser.add_argument("--arms", default="2", help="arms of the estimated ablation")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    line_buffered_stdout()
    from agent.train import parse_overrides

    try:
        ks = _ks(args.ks)
        updates = positive_int("UPDATES", args.updates) or 0
        warmup = _non_negative("WARMUP", args.warmup)
        runs = (positive_int("SEEDS", args.seeds) or 0) * (positive_int("ARMS", args.arms) or 0)
        preset, shape = (args.preset, {}) if args.preset else SHAPES[args.shape]
        overrides = {**shape, **ARMS[args.arm], **parse_overrides(args.set)}
        device = resolve_device(args.device)
        # One device: all processes on the same card.
        overrides["train.device"] = "cuda:0" if device.type == "cuda" else str(device)
        ablation = make_config(args.env, preset, overrides)
        # The benchmark's processes: never done, never evaluating (not training time).
        bench = {"train.steps": STEPS_FOREVER, "train.eval_every": 0}
        configs = [
            make_config(args.env, preset, {**overrides, **bench, "train.seed": i})
            for i in range(max(ks))
        ]
    except (ConfigError, RuntimeError) as error:
        parser.error(str(error))
    # Threads split the cores between the processes, the same for every k.
    threads = max(1, (os.cpu_count() or 1) // max(ks))
    label = f"preset {preset}" if args.preset else f"shape {args.shape}"
    where = torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU"
    print(
        f"{args.env} | {label} | arm {args.arm} | batch {ablation.train.batch_size}x"
        f"{ablation.train.seq_len} | {where} | torch {torch.__version__} | "
        f"{torch_threads(threads)} per process | k = {', '.join(map(str, ks))} | timed: whole "
        f"training iterations of at least {updates} updates per process"
    )
    with gpu_sharing(max(ks), device.type == "cuda"):
        result = measure(configs, ks, updates, warmup, threads)
    if result.failure:
        print(f"stopped: {result.failure}", file=sys.stderr)
    measured = result.throughputs
    if not measured:
        return 1
    print(table(measured))
    if any(result.peaks):
        print(f"peak GPU memory per process after its warm-up: {max(result.peaks) / GIB:.2f} GiB")
    best = max(measured, key=lambda row: row.rate)
    per_run = count_work(ablation.train).updates
    seconds = ablation_seconds(per_run, runs, best.rate)
    print(
        f"best k = {best.k}: {best.rate:.2f} updates/s in all, "
        f"{best.rate / measured[0].rate:.2f}x the rate at k = {measured[0].k}"
    )
    print(
        f"estimated {args.seeds}-seed x {args.arms}-arm {args.env} ablation ({label}, "
        f"{ablation.train.steps:,} steps at train ratio {ablation.train.train_ratio:g}) on "
        f"one {where} at k = {best.k}: {runs} runs x {per_run:,} updates / "
        f"{best.rate:.2f} updates/s = {seconds / 3600:.2f} h ({format_duration(seconds)}; "
        "training time, with k runs in flight throughout)"
    )
    return 0 if len(measured) == len(ks) else 1


if __name__ == "__main__":
    sys.exit(main())
