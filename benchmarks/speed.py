"""Speed benchmark (not a test): per-phase time of each schedule, side by side.

    python -m benchmarks.speed [--env atari_pong] [--preset small] [--iterations 10]
    python -m benchmarks.speed --shape peer-tiny      # one WM + AC update at a peer's shape
    python -m benchmarks.speed --shape S
    python -m benchmarks.speed --preset S --full --versus train.compile=off  # compile's speed-up
    python -m benchmarks.speed --shape S --profile        # where one update's time goes, op by op

Both schedules get the same config, the same replay (filled from the real env with random
actions) and alternate iteration by iteration after warm-up, so drift in machine load hits
both alike. Collection is excluded: it is identical for both schedules.
"""

from __future__ import annotations

import copy
import statistics
import sys
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from agent.acceleration import use_compile, use_graphs
from agent.cli import ArgumentParser, line_buffered_stdout
from agent.config import ENV_PRESETS, SIZE_PRESETS, Config, ConfigError, make_config
from agent.timing import PHASES, filled_trainer, time_iteration
from agent.trainer import Trainer, resolve_device

# Shapes of a full update to compare against published PyTorch ports on this CPU.
SHAPES: dict[str, tuple[str, dict[str, object]]] = {
    # dreamerv3-torch's small debugging shape: ~250-290 ms per update on this 2-core CPU.
    "peer-tiny": (
        "debug",
        {
            "model.deter": 128,
            "model.units": 128,
            "model.layers": 2,
            "model.stoch": 8,
            "model.classes": 8,
            "model.cnn_depth": 8,
            "model.bins": 255,
            "train.batch_size": 8,
            "train.seq_len": 32,
        },
    ),
    # The paper's Atari100k size at batch 16 x 64: ~6.5 s per update for that port here.
    "S": ("S", {"train.batch_size": 16, "train.seq_len": 64}),
}


def progress_bar(total: int, unit: str) -> tqdm:
    """A bar on stderr: a benchmark runs for minutes, and says what it is doing meanwhile."""
    return tqdm(total=total, unit=unit, desc="bench", dynamic_ncols=True, file=sys.stderr)


def filled_trainers(configs: dict[str, Config]) -> dict[str, Trainer]:
    """:func:`filled_trainer` of each named config, with a bar over their prefill steps."""
    trainers = {}
    with progress_bar(sum(c.train.prefill for c in configs.values()), "step") as bar:
        for name, config in configs.items():
            bar.set_description(f"bench: filling replay ({name})")
            trainers[name] = filled_trainer(config)
            bar.update(config.train.prefill)
    return trainers


def compare_schedules(config: Config, iterations: int, warmup: int) -> dict[str, dict[str, float]]:
    """Median seconds per iteration for ``separate`` and ``coupled``: each phase of
    :data:`PHASES`, ``other`` (time outside them) and ``total``."""
    num_updates = max(1, round(config.train.updates_per_iteration()))
    configs = {}
    for schedule in ("separate", "coupled"):
        config.train.schedule = schedule
        configs[schedule] = copy.deepcopy(config)
    trainers = filled_trainers(configs)
    samples: dict[str, list[dict[str, float]]] = {s: [] for s in trainers}
    rounds = warmup + iterations
    with progress_bar(rounds * len(trainers) * num_updates, "update") as bar:
        for i in range(rounds):
            for schedule, trainer in trainers.items():  # alternate, so load drift hits both
                bar.set_description(f"bench: {'warm-up' if i < warmup else 'timing'} {schedule}")
                timing = time_iteration(trainer, num_updates)
                bar.update(num_updates)
                if i >= warmup:
                    samples[schedule].append(timing)
    result = {}
    for schedule, timings in samples.items():
        row = {key: statistics.median(t[key] for t in timings) for key in (*PHASES, "total")}
        # Outside every phase: metrics bookkeeping and state-diversity statistics.
        row["other"] = statistics.median(t["total"] - sum(t[p] for p in PHASES) for t in timings)
        result[schedule] = row | {"updates": float(num_updates)}
    return result


@dataclass(frozen=True)
class FullUpdate:
    """One WM + AC update of a config: its median wall-clock and its arithmetic."""

    seconds: float
    flops: int
    """Floating-point operations of one update as torch's counter
    (:class:`~torch.utils.flop_counter.FlopCounterMode`) counts them: matrix products and
    convolutions, forward and backward (2 per multiply-add); elementwise work is not counted."""

    @property
    def gflops_per_s(self) -> float:
        return self.flops / self.seconds / 1e9


def is_eager(config: Config) -> bool:
    """Whether ``config``'s updates run op by op, where the FLOP counter sees every op: a
    CUDA graph replays kernels, and compiled code runs fused kernels, behind its back."""
    device = resolve_device(config.train.device)
    return not use_graphs(config.train.cuda_graphs, device) and not use_compile(
        config.train.compile, device
    )


def counted_update(trainer: Trainer) -> int:
    """Run one full update (see :func:`time_full_update`) of an eager ``trainer`` under
    torch's FLOP counter; returns its FLOPs."""
    assert is_eager(trainer.config), "graphed or compiled ops are invisible to the counter"
    with FlopCounterMode(display=False) as counter:
        time_iteration(trainer, 1)
    return int(counter.get_total_flops())


def update_flops(config: Config) -> int:
    """FLOPs of one full update of ``config``, counted on an eager twin (same maths, CUDA
    graphs and compilation off) with a replay of one sequence's worth of random steps."""
    twin = copy.deepcopy(config)
    twin.train.schedule, twin.train.starts = "coupled", "all"
    twin.train.cuda_graphs, twin.train.compile = "off", "off"
    twin.train.prefill = max(twin.train.seq_len, 64)
    return counted_update(filled_trainer(twin))


def time_full_update(
    configs: dict[str, Config], iterations: int, warmup: int
) -> dict[str, FullUpdate]:
    """Median seconds of one WM update plus one AC update from all its posteriors, for each
    named config, alternating between them so that machine-load drift hits all alike, and
    the FLOPs of that update, counted once per config outside the timed updates: in the
    first warm-up update of an eager config (an extra update without warm-up), on an eager
    twin otherwise (:func:`update_flops`)."""
    for config in configs.values():
        config.train.schedule, config.train.starts = "coupled", "all"
    trainers = filled_trainers(configs)
    flops: dict[str, int] = {}
    for name, trainer in trainers.items():
        if not is_eager(trainer.config):
            flops[name] = update_flops(trainer.config)
        elif warmup == 0:
            flops[name] = counted_update(trainer)
    times: dict[str, list[float]] = {name: [] for name in trainers}
    with progress_bar((warmup + iterations) * len(trainers), "update") as bar:
        for i in range(warmup + iterations):
            for name, trainer in trainers.items():
                if name not in flops:  # the first warm-up update, counted
                    flops[name] = counted_update(trainer)
                    bar.update(1)
                    continue
                seconds = time_iteration(trainer, 1)["total"]
                bar.update(1)
                if i >= warmup:
                    times[name].append(seconds)
    return {name: FullUpdate(statistics.median(t), flops[name]) for name, t in times.items()}


# Kernel launches and host-device synchronisations, as the profiler names them on CUDA.
LAUNCH_EVENTS = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx")
SYNC_EVENTS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")


def profile_update(config: Config, updates: int, warmup: int, rows: int = 25) -> str:
    """The profiler's table of ``updates`` full updates (see :func:`time_full_update`), ops
    sorted by their own device time (CPU time on a CPU), then kernel launches, device syncs
    and scalar reads per update: on a GPU these, not arithmetic, bound a Dreamer update."""
    from torch.profiler import ProfilerActivity, profile

    config.train.schedule, config.train.starts = "coupled", "all"
    trainer = filled_trainers({"profile": config})["profile"]
    for _ in tqdm(range(warmup), desc="bench: warm-up", file=sys.stderr):
        time_iteration(trainer, 1)  # compilation and allocator warm-up stay out of the profile
    cuda = trainer.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(updates):
            time_iteration(trainer, 1)
    events = prof.key_averages()
    sort = "self_device_time_total" if cuda else "self_cpu_time_total"
    lines = [events.table(sort_by=sort, row_limit=rows)]
    counts = {event.key: event.count / updates for event in events}
    launches = sum(counts.get(k, 0.0) for k in LAUNCH_EVENTS)
    syncs = sum(counts.get(k, 0.0) for k in SYNC_EVENTS)
    # Scalar reads: .item() of any tensor (on CUDA each read of a device value is a sync).
    reads = counts.get("aten::_local_scalar_dense", 0.0)
    lines.append(
        f"per update: {launches:.0f} kernel launches, {syncs:.0f} device syncs "
        f"(the bench's timing and metric flush add 3), {reads:.0f} scalar reads"
    )
    return "\n".join(lines)


def rate(update: FullUpdate) -> str:
    """``'131.2 GFLOP/s (802.1 GFLOP per update)'`` (four significant digits of GFLOP)."""
    return f"{update.gflops_per_s:.1f} GFLOP/s ({update.flops / 1e9:.4g} GFLOP per update)"


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="atari_pong", help=", ".join(sorted(ENV_PRESETS)))
    parser.add_argument("--preset", default="small", choices=list(SIZE_PRESETS))
    parser.add_argument("--shape", choices=list(SHAPES), help="time one full update at this shape")
    parser.add_argument(
        "--full", action="store_true", help="time one full update at the preset's own shape"
    )
    parser.add_argument(
        "--versus",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="also time the full update with these overrides, side by side, and print the ratio",
    )
    parser.add_argument(
        "--profile", action="store_true", help="profile full updates op by op (with --shape)"
    )
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    line_buffered_stdout()
    from agent.train import parse_overrides

    try:
        preset, shape_overrides = SHAPES[args.shape] if args.shape else (args.preset, {})
        overrides = {**shape_overrides, "train.device": args.device, **parse_overrides(args.set)}
        overrides.setdefault("train.prefill", 1024)
        config = make_config(args.env, preset, overrides)
        versus = make_config(args.env, preset, {**overrides, **parse_overrides(args.versus)})
    except ConfigError as error:
        parser.error(str(error))
    shape = f"shape {args.shape} (preset {preset} with its overrides)" if args.shape else ""
    print(
        f"{config.env.name} | {shape or f'preset {preset}'} | batch {config.train.batch_size}x"
        f"{config.train.seq_len} | device {args.device} | torch {torch.__version__} | "
        f"{torch.get_num_threads()} threads | compile {config.train.compile} | "
        f"precision {config.train.precision}"
    )

    if args.profile:
        print(profile_update(config, min(args.iterations, 3), max(args.warmup, 1)))
        return 0
    if args.shape or args.full or args.versus:
        configs = {"this": config} | ({"versus": versus} if args.versus else {})
        updates = time_full_update(configs, args.iterations, args.warmup)
        label = f"shape {args.shape}" if args.shape else f"preset {preset}"
        this = updates["this"]
        print(f"one WM + AC update at {label}: {this.seconds * 1000:.1f} ms (median), {rate(this)}")
        if args.versus:
            versus = updates["versus"]
            print(
                f"with {' '.join(args.versus)}: {versus.seconds * 1000:.1f} ms, {rate(versus)}; "
                f"speed-up {versus.seconds / this.seconds:.2f}x"
            )
        return 0

    result = compare_schedules(config, args.iterations, args.warmup)
    sep, cou = result["separate"], result["coupled"]
    print(f"{int(sep['updates'])} updates per iteration; median seconds per iteration:")
    print(f"{'phase':<8} {'separate':>9} {'share':>6} {'coupled':>9} {'share':>6}")
    for key in (*PHASES, "other", "total"):
        cells = [f"{row[key]:>9.3f} {100 * row[key] / row['total']:>5.1f}%" for row in (sep, cou)]
        print(f"{key:<8} {cells[0]} {cells[1]}")
    for name, row in result.items():
        print(f"{name}: {row['updates'] / row['total']:.2f} updates/s")
    measured = cou["total"] / sep["total"]
    ideal = 1 - sep["starts"] / sep["total"]
    print(
        f"iteration time coupled/separate: measured {measured:.3f}, ideal {ideal:.3f} "
        f"(1 - starts/separate_total), off by {100 * (measured - ideal) / ideal:+.1f}%"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
