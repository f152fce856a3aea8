"""Run a schedule ablation: ``python -m ablations --env atari_pong --seeds 5``.

Validates everything first (bad input: one line, exit 2, nothing created), creates the
experiment and runs in MLflow, skips FINISHED runs, resumes unfinished ones from their
checkpoints, runs the rest, then prints a per-arm summary and builds the report.
Exit codes: 0 all runs finished, 1 some failed (named at the end), 2 bad input, 130 stopped
by Ctrl-C, 143 stopped by SIGTERM (either way the run processes are stopped too).
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
from collections.abc import Iterator

import torch

from ablations import adaptive
from ablations.checkpoints import CHECKPOINT_STORES, default_checkpoint_store
from ablations.estimate import estimate_seconds, format_duration
from ablations.launchers import LAUNCHERS, LauncherError, Resources
from ablations.spec import ARMS, AblationSpec
from ablations.tracking import AblationStore, TrackingError, check_reachable, resolve_tracking_uri
from ablations.worker import WorkerJob
from agent.cli import ArgumentParser, positive_int
from agent.config import ENV_PRESETS, SIZE_PRESETS, ConfigError
from agent.train import parse_overrides


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m ablations",
        description="Compare DreamerV3 training schedules over seeds, logged to MLflow.",
    )
    parser.add_argument("--env", required=True, help=f"one of: {', '.join(sorted(ENV_PRESETS))}")
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
        "--checkpoint-store",
        default=None,
        choices=list(CHECKPOINT_STORES),
        help="where unfinished runs keep state: files in --checkpoint-dir, or artifacts of "
        "their MLflow runs (default: mlflow for an http(s) tracking server, else local)",
    )
    parser.add_argument(
        "--checkpoint-dir", default="checkpoints", help="folder of the local checkpoint store"
    )
    parser.add_argument(
        "--checkpoint-every",
        default=None,
        help="agent steps between checkpoints (default: 10%% of the budget)",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="config override"
    )
    parser.add_argument("--no-report", action="store_true", help="skip building the PDF report")
    return parser


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
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        preset = args.preset or ("S" if torch.cuda.is_available() else "small")
        arms = tuple(a.strip() for a in args.arms.split(",") if a.strip())
        rule = adaptive.rule_from_flags(args.seeds, args.interim, args.max_seeds, args.alpha, arms)
        spec = AblationSpec(
            env=args.env,
            seeds=rule.seed_budget if rule else positive_int("SEEDS", args.seeds) or 0,
            arms=arms,
            preset=preset,
            steps=positive_int("STEPS", args.steps),
            overrides=parse_overrides(args.set),
            name=args.experiment or "",
        )
        spec.validate()
        resources = Resources(
            jobs=positive_int("JOBS", args.jobs),
            cpus_per_run=positive_int("CPUS_PER_RUN", args.cpus_per_run),
            gpus_per_run=_gpus(args.gpus_per_run),
        )
        every = positive_int("--checkpoint-every", args.checkpoint_every)
        uri = resolve_tracking_uri(args.tracking_uri)
        check_reachable(uri)
        checkpoints = CHECKPOINT_STORES[args.checkpoint_store or default_checkpoint_store(uri)]
        # Last, as it may start or join a cluster; still before any run is created.
        plan = LAUNCHERS[args.launcher](resources)
        runs = spec.runs() if rule is None else adaptive.interim_runs(spec, rule, uri)
    except (ConfigError, TrackingError, LauncherError) as error:
        parser.error(str(error))

    try:
        store = AblationStore(uri, spec)
        if rule is not None:
            adaptive.record_rule(store, rule)
        todo, finished = [], 0
        for index, run in enumerate(runs):
            device = plan.device(index)
            run_id, status = store.child_for(run, device)
            if status == "FINISHED":
                finished += 1
                continue
            steps = run.config().train.steps
            todo.append(
                WorkerJob(
                    run=run,
                    run_id=run_id,
                    tracking_uri=uri,
                    checkpoints=checkpoints(uri, run_id, args.checkpoint_dir),
                    checkpoint_every=every or max(steps // 10, 1),
                    device=device,
                    threads=plan.threads,
                )
            )
    except (ConfigError, TrackingError) as error:
        parser.error(str(error))

    print(
        f"ablation '{spec.name}': {len(runs)} runs ({', '.join(spec.arms)} x {spec.seeds} seeds), "
        f"{finished} already finished, {len(todo)} to run | preset {spec.preset} | "
        f"{min(plan.parallel, max(len(todo), 1))} parallel, {plan.threads} torch threads each "
        f"on {plan.where} | MLflow {uri}"
    )
    if todo:
        torch.set_num_threads(plan.threads)  # time updates as a worker will run them
        try:
            estimate = estimate_seconds([job.run for job in todo], plan.parallel)
        except Exception:  # noqa: BLE001 - a run that cannot start fails in its worker, named
            estimate = None
        if estimate is not None:
            print(f"estimated duration: {format_duration(estimate)} (from timed updates per arm)")
            if estimate > 86400 and not torch.cuda.is_available():
                print("that is a GPU job; to try it on this CPU: PRESET=debug STEPS=5000")

    def on_done(job: WorkerJob, succeeded: bool) -> None:
        if not succeeded:
            _ensure_marked_failed(store, job)
        store.log_parent_summary()

    try:
        with _sigterm_as_interrupt():
            results = plan.launch(
                todo, plan.parallel, on_done, total=len(runs), already_done=finished
            )
    except KeyboardInterrupt as stop:
        print("stopped; rerun the same command to resume unfinished runs", file=sys.stderr)
        return 143 if isinstance(stop, Terminated) else 130

    failed = sorted(name for name, ok in results.items() if not ok)
    if rule is not None and not failed:
        stand = adaptive.record_interim(store, rule)
        if not stand.finished:
            return main(argv)  # the next interim, planned again from the store
        adaptive.print_decisions(rule, stand)
    store.finish_parent(failed=bool(failed))
    print_summary(store.log_parent_summary(), spec)
    if not args.no_report:
        _build_report(spec.name, uri)
    if failed:
        print(
            f"{len(failed)} run(s) failed: {', '.join(failed)} (see their 'error' tag in MLflow)",
            file=sys.stderr,
        )
        return 1
    return 0


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
    run = store.client.get_run(job.run_id)
    if run.info.status not in ("FAILED", "FINISHED"):
        store.client.set_tag(job.run_id, "error", "worker process died without reporting an error")
        store.client.set_terminated(job.run_id, "FAILED")


def print_summary(summary: dict[str, dict[str, float]], spec: AblationSpec) -> None:
    """Per-arm table of finished runs: mean final eval return and updates/s."""
    print(f"\n{'arm':<14} {'runs':>4} {'final return':>13} {'updates/s':>10}")
    for arm in spec.arms:
        row = summary.get(arm, {})
        final = row.get("final_return", math.nan)
        speed = row.get("updates_per_s", math.nan)
        print(f"{arm:<14} {int(row.get('runs', 0)):>4} {final:>13.2f} {speed:>10.2f}")


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
