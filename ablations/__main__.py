"""Run a schedule ablation: ``python -m ablations --env atari_pong --seeds 5``.

Validates everything first (bad input: one line, exit 2, nothing created), creates the
experiment and runs in MLflow, skips FINISHED runs, resumes unfinished ones from their
checkpoints, runs the rest, then prints a per-arm summary and builds the report.
Each run has one trainer at a time: a run whose lease another live command holds is left
to it (see :class:`~ablations.leases.Lease`). Exit codes: 0 all runs finished, 1 some
failed (named at the end), 2 bad input, 3 some runs are being trained by another command,
130 stopped by Ctrl-C, 143 stopped by SIGTERM (either way the run processes are stopped too,
and what this command created or ran is marked KILLED).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psutil
import torch
from mlflow.exceptions import MlflowException

from ablations import adaptive
from ablations.arms import load_arms_file, parse_arm_flag, resolve_arms
from ablations.checkpoints import CHECKPOINT_STORES, default_checkpoint_store
from ablations.estimate import (
    CPU_FIT_SECONDS,
    RunCosts,
    busy_caution,
    cpu_sized_command,
    estimate_seconds,
    format_duration,
    run_costs,
    shared_cpu_slowdown,
    torch_threads,
)
from ablations.gpu_share import GIB, run_memory_need, share_problem
from ablations.launch_plan import FAILED, TAKEN, LauncherError, LaunchPlan, Resources
from ablations.launchers import LAUNCHERS
from ablations.leases import COMMAND_ID
from ablations.retries import retry_locked
from ablations.spec import ARMS, SEED_LIMIT, AblationSpec, RunSpec
from ablations.study import expand_study
from ablations.suites import SUITES, resolve_tasks
from ablations.tracking import AblationStore
from ablations.tracking_store import (
    TrackingError,
    check_reachable,
    resolve_tracking_uri,
    store_creation_lock,
)
from ablations.worker import WorkerJob
from agent.cli import (
    ArgumentParser,
    describe,
    first_line,
    key_value,
    line_buffered_stdout,
    positive_int,
)
from agent.config import ENV_PRESETS, SIZE_PRESETS, ConfigError
from agent.train import parse_overrides


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m ablations",
        description="Compare DreamerV3 training schedules over seeds, logged to MLflow.",
    )
    parser.add_argument(
        "--env",
        default=None,
        help=f"a task or a comma list of tasks, from: {', '.join(sorted(ENV_PRESETS))}",
    )
    parser.add_argument(
        "--suite", default=None, help=f"a named list of tasks instead of --env: {', '.join(SUITES)}"
    )
    parser.add_argument(
        "--study",
        default=None,
        help="a study file (studies/<name>.toml, or a path) that sets tasks, arms, seeds, "
        "preset and config values; the experiment is named after it",
    )
    parser.add_argument(
        "--seeds",
        required=True,
        help="number of seeds per arm (seeds 0..n-1), or 'auto': interims until decided",
    )
    parser.add_argument(
        "--interim", default=None, help="with --seeds auto: seeds per arm per interim (default 5)"
    )
    parser.add_argument(
        "--max-seeds", default=None, help="with --seeds auto: most seeds per arm (default 25)"
    )
    parser.add_argument(
        "--alpha",
        default=None,
        help="with --seeds auto: family-wise error rate vs the first arm (default 0.05)",
    )
    parser.add_argument(
        "--arms", default="separate,coupled", help=f"comma-separated, from: {', '.join(ARMS)}"
    )
    parser.add_argument(
        "--preset",
        default=None,
        help=f"size preset ({', '.join(SIZE_PRESETS)}); default S with CUDA, small without",
    )
    parser.add_argument("--steps", default=None, help="agent steps per run (default: env preset)")
    parser.add_argument(
        "--jobs", default=None, help="parallel runs (default: 1 per GPU, else 1 per 2 cores)"
    )
    parser.add_argument(
        "--experiment", default=None, help="MLflow experiment (default: <env>-<preset>)"
    )
    parser.add_argument(
        "--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or ./mlflow.db"
    )
    parser.add_argument(
        "--launcher",
        default="local",
        choices=list(LAUNCHERS),
        help="local processes, or Ray tasks on $RAY_ADDRESS's cluster (else a local Ray)",
    )
    parser.add_argument(
        "--cpus-per-run", default=None, help="CPUs (torch threads) per run (ray default: 1)"
    )
    parser.add_argument(
        "--gpus-per-run",
        default=None,
        help="GPUs per Ray task, may be fractional (default: 1 if the cluster has GPUs, else 0)",
    )
    parser.add_argument(
        "--runs-per-gpu",
        default=None,
        help="local launcher: run processes sharing each GPU, through CUDA MPS where installed "
        "(default 1); each run's memory is checked against its share first",
    )
    parser.add_argument(
        "--checkpoint-store",
        default=None,
        choices=list(CHECKPOINT_STORES),
        help="where unfinished runs keep state: files in --checkpoint-dir, or artifacts of "
        "their MLflow runs (default: mlflow for an http(s) tracking server, else local)",
    )
    parser.add_argument(
        "--checkpoint-dir",
        default=None,
        help="folder of the local checkpoint store (default: checkpoints/ next to a SQLite store)",
    )
    parser.add_argument(
        "--checkpoint-every",
        default=None,
        help="agent steps between checkpoints (default: 10%% of the budget)",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="config override"
    )
    parser.add_argument(
        "--task-set",
        action="append",
        default=[],
        metavar="TASK:KEY=VALUE",
        help="config override of one task (repeatable), over --set and --steps",
    )
    parser.add_argument(
        "--arm",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE,KEY=VALUE",
        help="a user arm: a name and its config overrides (repeatable)",
    )
    parser.add_argument(
        "--arms-file", default=None, help="TOML file of user arms, one table per arm"
    )
    parser.add_argument(
        "--reference",
        default=None,
        help="the arm every other is compared with (default: separate, else the first arm)",
    )
    parser.add_argument(
        "--grid",
        default=None,
        metavar="KEY=V1,V2 ...",
        help="cross every arm with each value (arm names get a suffix)",
    )
    parser.add_argument("--no-report", action="store_true", help="skip building the PDF report")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the runs and the estimated duration on this machine; create nothing",
    )
    return parser


EXIT_HELD = 3
"""The command's exit code when it trained what it could but another live command trains
some of the runs (rerun once that one ends to see the ablation whole)."""


def _seeds(value: str) -> int:
    seeds = positive_int("SEEDS", value) or 0
    if seeds > SEED_LIMIT:
        raise ConfigError(f"SEEDS must be at most {SEED_LIMIT}, got {value}")
    return seeds


def spec_from_args(args: argparse.Namespace) -> tuple[AblationSpec, adaptive.AdaptiveRule | None]:
    """The validated ablation the parsed flags describe, and its adaptive rule (None for a
    fixed number of seeds). Creates nothing.

    Raises:
        ConfigError: one line for the user.
    """
    preset = args.preset or ("S" if torch.cuda.is_available() else "small")
    tasks, suite = resolve_tasks(args.suite, args.env)
    arm_table = resolve_arms(
        ARMS,
        tuple(a.strip() for a in args.arms.split(",") if a.strip()),
        load_arms_file(args.arms_file) if args.arms_file else {},
        [parse_arm_flag(text) for text in args.arm],
        args.grid or "",
    )
    arms = tuple(arm_table)
    if args.reference in arms:  # adaptive seeding compares every arm with the first
        arms = (args.reference, *(arm for arm in arms if arm != args.reference))
    rule = adaptive.rule_from_flags(
        args.seeds, args.interim, args.max_seeds, args.alpha, arms, tuple(tasks)
    )
    spec = AblationSpec(
        env=tasks[0],
        seeds=rule.seed_budget if rule else _seeds(args.seeds),
        arms=arms,
        preset=preset,
        steps=positive_int("STEPS", args.steps),
        overrides=parse_overrides(args.set),
        name=args.experiment or "",
        tasks=tasks,
        suite=suite,
        arm_table=arm_table,
        reference=args.reference or (rule.reference if rule else ""),
        task_overrides=parse_task_overrides(args.task_set),
    )
    spec.validate()
    return spec, rule


def parse_task_overrides(pairs: list[str]) -> dict[str, dict[str, str]]:
    """``["cartpole:train.steps=3000", ...]`` -> ``{"cartpole": {"train.steps": "3000"}}``."""
    out: dict[str, dict[str, str]] = {}
    for pair in pairs:
        task, sep, setting = pair.partition(":")
        if not sep or not task.strip():
            raise ConfigError(f"--task-set expects TASK:KEY=VALUE, got '{pair}'")
        key, value = key_value(setting, "--task-set expects TASK:KEY=VALUE")
        out.setdefault(task.strip(), {})[key] = value
    return out


def _gpus(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"GPUS_PER_RUN must be a number, got '{value}'") from None
    if not 0 <= number < math.inf:
        raise ConfigError(f"GPUS_PER_RUN must be 0 or more, got {value}")
    return number


def main(argv: list[str] | None = None) -> int:
    """Run the ablation; Ctrl-C or SIGTERM at any point marks what this command created or
    ran KILLED (exit 130 or 143)."""
    line_buffered_stdout()
    created = _Created()
    with _sigterm_as_interrupt():
        try:
            while True:  # one pass per interim with SEEDS=auto, else one pass
                code = _main(argv, created)
                if code is not None:
                    return code
        except KeyboardInterrupt as stop:
            if created.store is not None:
                _mark_killed_quietly(created.store)
            print("stopped; rerun the same command to resume unfinished runs", file=sys.stderr)
            return 143 if isinstance(stop, Terminated) else 130


@dataclass
class _Created:
    store: AblationStore | None = None
    """The ablation's store once opened, whose runs an interruption marks KILLED."""


def _arms_and_seeds(spec: AblationSpec, runs: list[RunSpec]) -> str:
    """``separate, coupled x 5 seeds``; an adaptive interim names its seeds (``seeds 5..9``)."""
    seeds = sorted({run.seed for run in runs})
    arms = ", ".join(dict.fromkeys(run.arm for run in runs)) or ", ".join(spec.arms)
    if not seeds or seeds == list(range(spec.seeds)):
        return f"{arms} x {spec.seeds} seeds"
    if seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{arms} x seeds {seeds[0]}..{seeds[-1]}"
    return f"{arms} x seeds {', '.join(map(str, seeds))}"


def _main(argv: list[str] | None, created: _Created) -> int | None:
    """One pass of the ablation; ``None`` when adaptive seeding asks for another interim."""
    parser = build_parser()
    try:
        argv = expand_study(list(sys.argv[1:] if argv is None else argv))
    except ConfigError as error:
        parser.error(str(error))
    args = parser.parse_args(argv)
    try:
        spec, rule = spec_from_args(args)
        resources = Resources(
            jobs=positive_int("JOBS", args.jobs),
            cpus_per_run=positive_int("CPUS_PER_RUN", args.cpus_per_run),
            gpus_per_run=_gpus(args.gpus_per_run),
            runs_per_gpu=positive_int("RUNS_PER_GPU", args.runs_per_gpu),
        )
        every = positive_int("--checkpoint-every", args.checkpoint_every)
        if args.dry_run:
            return _dry_run(spec, rule, LAUNCHERS["local"](resources))
        uri = resolve_tracking_uri(args.tracking_uri)
        check_reachable(uri)
        checkpoints = CHECKPOINT_STORES[args.checkpoint_store or default_checkpoint_store(uri)]
        # Last, as it may start or join a cluster; still before any run is created.
        plan = LAUNCHERS[args.launcher](resources)
        if rule is not None:  # an ablation recorded under an older rule replays by it
            rule = adaptive.as_recorded(rule, uri, spec.name)
        runs = spec.runs() if rule is None else adaptive.interim_runs(spec, rule, uri)
        costs: dict[str, RunCosts] = {}  # timed once, for the memory check and the estimate
        if plan.runs_per_gpu > 1:
            _check_gpu_share(runs, plan.runs_per_gpu, plan.threads, costs)
    except (ConfigError, TrackingError, LauncherError) as error:
        parser.error(str(error))

    try:
        # Two commands starting at once on one SQLite store take turns here.
        with store_creation_lock(uri):
            store = created.store = AblationStore(uri, spec)
            if rule is not None:
                adaptive.record_rule(store, rule)
            store.record_plan(runs)
            to_train, finished, held = [], 0, []
            for index, run in enumerate(runs):
                device = plan.device(index)
                run_id, status = store.child_for(run, device)
                if status == "FINISHED":
                    finished += 1
                elif store.held_elsewhere(run_id, run.name) is not None:
                    held.append(run.name)  # another live command trains it
                else:
                    to_train.append((run, run_id, device))
            threads = plan.threads_for(len(to_train))
            todo = [
                WorkerJob(
                    run=run,
                    run_id=run_id,
                    tracking_uri=uri,
                    checkpoints=checkpoints(uri, run_id, args.checkpoint_dir),
                    checkpoint_every=every or max(run.config().train.steps // 10, 1),
                    device=device,
                    threads=threads,
                    parent_id=store.parent_id,
                    command=COMMAND_ID,
                )
                for run, run_id, device in to_train
            ]
    except (ConfigError, TrackingError) as error:
        parser.error(str(error))
    except MlflowException as error:  # e.g. a read-only store
        parser.error(f"cannot use the tracking store at {uri}: {first_line(error)}")

    elsewhere = f"{len(held)} being trained by another command, " if held else ""
    tasks = f"{len(spec.tasks)} tasks x " if spec.multi_task else ""
    print(
        f"ablation '{spec.name}': {len(runs)} runs ({tasks}{_arms_and_seeds(spec, runs)}), "
        f"{finished} already finished, {elsewhere}{len(todo)} to run | preset {spec.preset} | "
        f"{min(plan.parallel, max(len(todo), 1))} parallel, {torch_threads(threads)} each "
        f"on {plan.where} | MLflow {uri}"
    )
    if todo:
        # Imports and opening the store so far: what each worker process will also spend.
        startup = _process_age()
        _print_estimate(spec, [job.run for job in todo], plan.parallel, threads, startup, costs)

    def on_done(job: WorkerJob, outcome: str) -> None:
        try:
            if outcome == FAILED:
                _ensure_marked_failed(store, job)
            store.log_parent_summary()
        except Exception as error:  # noqa: BLE001 - the runs go on; a rerun settles them
            print(f"{job.run.name}: tracking store error: {describe(error)}", file=sys.stderr)

    results = plan.launch(todo, plan.parallel, on_done, total=len(runs), already_done=finished)

    failed = sorted(name for name, outcome in results.items() if outcome == FAILED)
    held += sorted(name for name, outcome in results.items() if outcome == TAKEN)
    try:
        if rule is not None and not failed and not held:
            stand = adaptive.record_interim(store, rule)
            if not stand.finished:
                return None  # the next interim, planned again from the store
            adaptive.print_decisions(rule, stand)
        store.settle_parent()
        print_summary(store.log_parent_summary(), spec)
    except Exception as error:  # noqa: BLE001 - every run is safe in the store already
        print(f"tracking store error at the end: {describe(error)}", file=sys.stderr)
        return 1
    if not args.no_report:
        _build_report(spec.name, uri)
    try:
        store.refresh_parent_note()  # it now says where the report is, or that none is
    except Exception as error:  # noqa: BLE001 - the runs and the report are safe already
        print(f"tracking store error at the end: {describe(error)}", file=sys.stderr)
    if failed:
        print(
            f"{len(failed)} run(s) failed: {', '.join(failed)} (see their 'error' tag in MLflow)",
            file=sys.stderr,
        )
        return 1
    if held:
        print(
            f"{len(held)} run(s) are trained by another command: {', '.join(held)}; "
            "rerun once it ends to see the ablation whole",
            file=sys.stderr,
        )
        return EXIT_HELD
    return 0


def _dry_run(spec: AblationSpec, rule: adaptive.AdaptiveRule | None, plan: LaunchPlan) -> int:
    """Print what the ablation would run and how long it would take on this machine, with
    ``plan``'s parallelism; touches no store. With adaptive seeding: the first interim, and
    every interim up to the most seeds the rule allows."""
    runs = spec.runs()
    first = runs if rule is None else [run for run in runs if run.seed < rule.interim]
    tasks = f"{len(spec.tasks)} tasks x " if spec.multi_task else ""
    print(
        f"dry run of ablation '{spec.name}': {len(first)} runs ({tasks}"
        f"{_arms_and_seeds(spec, first)}) | preset {spec.preset} | "
        f"{min(plan.parallel, len(first))} parallel, {torch_threads(plan.threads)} each"
    )
    for task in spec.tasks:
        steps = next(run.config().train.steps for run in first if run.env == task)
        print(f"  {task}: {steps:,} agent steps per run")
    costs: dict[str, RunCosts] = {}
    _print_estimate(spec, first, plan.parallel, plan.threads, _process_age(), costs)
    if rule is not None and len(runs) > len(first):
        print(
            f"adaptive seeding: that is the first interim ({rule.interim} seeds per arm); "
            f"if no interim decides, up to {len(runs)} runs ({rule.max_seeds} seeds per arm)"
        )
        _print_estimate(spec, runs, plan.parallel, plan.threads, _process_age(), costs)
    print("dry run: nothing created")
    return 0


def _mark_killed_quietly(store: AblationStore) -> None:
    try:
        store.mark_killed()
    except Exception as error:  # noqa: BLE001 - stopping anyway; a rerun resumes them
        print(
            f"could not mark the runs KILLED: {describe(error)}",
            file=sys.stderr,
        )


def _process_age() -> float:
    try:
        return max(time.time() - psutil.Process().create_time(), 0.0)
    except psutil.Error:
        return 0.0


def _check_gpu_share(
    runs: list[RunSpec], runs_per_gpu: int, threads: int, costs: dict[str, RunCosts]
) -> None:
    """Raise :class:`LauncherError` unless each run's GPU memory (its peak while its
    updates are timed, per task and arm, kept in ``costs`` for the estimate) fits its share
    of the card with ``runs_per_gpu`` runs on it."""
    torch.set_num_threads(threads)  # time the work as a worker will run it
    print(
        f"measuring each arm's GPU memory for RUNS_PER_GPU={runs_per_gpu} "
        "(its updates timed for the estimate)...",
        flush=True,
    )
    try:
        peak = max(run_costs(run, costs).peak_memory for run in runs)
    except torch.OutOfMemoryError:
        raise LauncherError(
            "a run ran out of GPU memory while its updates were timed, alone on the card; "
            "use a smaller PRESET"
        ) from None
    card = torch.cuda.get_device_properties(0)
    problem = share_problem(peak, card.total_memory, runs_per_gpu, card.name)
    if problem:
        raise LauncherError(problem)
    share = card.total_memory / runs_per_gpu / GIB
    print(
        f"each run needs about {run_memory_need(peak) / GIB:.1f} GiB of GPU memory; "
        f"its share of the {card.name} is {share:.1f} GiB"
    )


def _print_estimate(
    spec: AblationSpec,
    runs: list[RunSpec],
    parallel: int,
    threads: int,
    startup: float,
    costs: dict[str, RunCosts] | None = None,
) -> None:
    """The estimated duration (every kind of work timed, see :mod:`ablations.estimate`, or
    taken from ``costs``); without a GPU, when it is over an hour, a command that fits about
    30 min here."""
    torch.set_num_threads(threads)  # time the work as a worker will run it
    print("estimating the duration: timing env steps, acting and updates per arm...", flush=True)
    cpus = os.cpu_count() or 1
    side_by_side = min(parallel, len(runs))
    slowdown = 1.0
    if not torch.cuda.is_available():
        slowdown = shared_cpu_slowdown(side_by_side, threads, cpus)
    try:
        estimate = estimate_seconds(runs, parallel, startup, costs, slowdown)
    except Exception:  # noqa: BLE001 - a run that cannot start fails in its worker, named
        return
    print(
        f"estimated duration: {format_duration(estimate)} (env steps, acting, updates, "
        "evaluation, metric flushes and start-up, each timed on this machine)"
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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    # A launcher stops its run processes on KeyboardInterrupt. Ctrl-C reaches the whole
    # process group, but `kill PID` (a scheduler, a timeout) reaches this process only and
    # would otherwise leave the runs training with nobody to record them.
    def raise_terminated(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _ensure_marked_failed(store: AblationStore, job: WorkerJob) -> None:
    """A worker that died without recording why (killed, out of memory) is marked here."""
    run = retry_locked(store.client.get_run, job.run_id)
    if run.info.status not in ("FAILED", "FINISHED"):
        message = "worker process died without reporting an error"
        retry_locked(store.client.set_tag, job.run_id, "error", message)
        retry_locked(store.client.set_terminated, job.run_id, "FAILED")


def print_summary(summary: dict[str, dict[str, float]], spec: AblationSpec) -> None:
    """Per-arm (per task and arm over several tasks) table of finished runs: mean final eval
    return and updates/s."""
    keys = [f"{t}/{a}" if spec.multi_task else a for t in spec.tasks for a in spec.arms]
    width = max([14, *(len(key) for key in keys)])
    print(f"\n{'arm':<{width}} {'runs':>4} {'final return':>13} {'updates/s':>10}")
    for key in keys:
        row = summary.get(key, {})
        final = row.get("final_return", math.nan)
        speed = row.get("updates_per_s", math.nan)
        print(f"{key:<{width}} {int(row.get('runs', 0)):>4} {final:>13.2f} {speed:>10.2f}")


def _build_report(experiment: str, uri: str) -> None:
    try:
        from reports.build import build_report
    except ImportError:
        return
    try:
        path = build_report(experiment, tracking_uri=uri)
        print(f"report: {path}")
    except Exception as error:  # noqa: BLE001 - the runs are safe in MLflow; say why and go on
        print(f"report could not be built: {type(error).__name__}: {error}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
