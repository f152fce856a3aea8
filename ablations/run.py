"""One ablation from a validated request to its outcome, in steps: validate against the store
and the launcher (:func:`_validate`, nothing created), create the experiment and runs
(:func:`_create`), launch the runs left to train, then settle (:func:`_settle`: adaptive
interims, the parent's summary, the report). With adaptive seeding each interim is one more
pass of the same steps, planned again from the store.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import psutil
from mlflow.exceptions import MlflowException

from ablations import adaptive
from ablations.integrity.checkpoints import (
    CHECKPOINT_STORES,
    CheckpointFactory,
    default_checkpoint_store,
)
from ablations.integrity.leases import COMMAND_ID
from ablations.integrity.retries import retry_locked
from ablations.launch.gpu_share import check_gpu_share
from ablations.launch.jobs import (
    FAILED,
    TAKEN,
    LauncherError,
    LaunchPlan,
    Resources,
    WorkerJob,
)
from ablations.launch.launchers import LAUNCHERS
from ablations.plan.estimate import RunCosts, print_estimate, torch_threads
from ablations.plan.spec import AblationSpec, RunSpec
from ablations.tracking.connection import (
    TrackingError,
    check_reachable,
    resolve_tracking_uri,
    store_creation_lock,
)
from ablations.tracking.store import AblationStore
from agent.cli import describe, first_line
from agent.config import ConfigError

EXIT_HELD = 3
"""The command's exit code when it trained what it could but another live command trains
some of the runs (rerun once that one ends to see the ablation whole)."""


class BadInputError(Exception):
    """The request cannot run (bad value, unusable store, launcher that cannot work), found
    before anything is created; one line for the user, who gets exit code 2."""


@dataclass(frozen=True)
class Request:
    """A validated ablation and how to run it: what the command's flags say."""

    spec: AblationSpec
    rule: adaptive.AdaptiveRule | None
    """Adaptive seeding's rule; None for a fixed number of seeds."""
    resources: Resources
    checkpoint_every: int | None
    """Agent steps between checkpoints; None: 10% of each run's budget."""
    tracking_uri: str | None
    """None: ``$MLFLOW_TRACKING_URI`` or ``./mlflow.db``."""
    launcher: str
    """A name in :data:`~ablations.launch.launchers.LAUNCHERS`."""
    checkpoint_store: str | None
    """A name in :data:`~ablations.integrity.checkpoints.CHECKPOINT_STORES`; None: by store."""
    checkpoint_dir: str | None
    report: bool = True
    dry_run: bool = False


@dataclass
class Created:
    store: AblationStore | None = None
    """The ablation's store once opened, whose runs an interruption marks KILLED."""


@dataclass(frozen=True)
class _Setup:
    """What :func:`_validate` found, before anything is created."""

    uri: str
    checkpoints: CheckpointFactory
    plan: LaunchPlan
    rule: adaptive.AdaptiveRule | None
    """The request's rule, or the one the ablation was recorded under."""
    runs: list[RunSpec]
    """This pass's runs: all of them, or an adaptive interim's."""
    costs: dict[str, RunCosts] = field(default_factory=dict)
    """Timed once, for the memory check and the estimate."""


@dataclass
class _Batch:
    """The runs as the store has them after :func:`_create`."""

    store: AblationStore
    todo: list[WorkerJob]
    finished: int
    held: list[str]
    """Runs that another live command trains."""
    threads: int


def stoppable(body: Callable[[Created], int]) -> int:
    """``body``'s exit code; on Ctrl-C or SIGTERM, what it created or ran (``Created``) is
    marked KILLED and the exit code is 130 or 143."""
    created = Created()
    with _sigterm_as_interrupt():
        try:
            return body(created)
        except KeyboardInterrupt as stop:
            if created.store is not None:
                _mark_killed_quietly(created.store)
            print("stopped; rerun the same command to resume unfinished runs", file=sys.stderr)
            return 143 if isinstance(stop, Terminated) else 130


def run_ablation(request: Request, created: Created) -> int:
    """Run ``request`` to its outcome and return the exit code: one pass per adaptive
    interim, else one pass. ``created`` learns the store as soon as it is opened.

    Raises:
        BadInputError: before anything of that pass is created; one line for the user.
    """
    while True:
        code = run_pass(request, created)
        if code is not None:
            return code


def run_pass(request: Request, created: Created) -> int | None:
    """One pass of the ablation; ``None`` when adaptive seeding asks for another interim."""
    try:
        if request.dry_run:
            local = LAUNCHERS["local"](request.resources)
            return _dry_run(request.spec, request.rule, local)
        setup = _validate(request)
    except (ConfigError, TrackingError, LauncherError) as error:
        raise BadInputError(str(error)) from None
    batch = _create(request, setup, created)
    seed_batch = _announce(request.spec, setup, batch)
    # A size the estimate chose (SEED_BATCH=auto) goes to the launch; a fixed one is in it.
    chosen = {"seed_batch": seed_batch} if setup.plan.seed_batch == "auto" else {}
    results = setup.plan.launch(
        batch.todo,
        setup.plan.parallel,
        _on_done(batch.store),
        total=len(setup.runs),
        already_done=batch.finished,
        **chosen,
    )
    return _settle(request, setup, batch, results)


def _validate(request: Request) -> _Setup:
    """The store reachable, the checkpoint store, the launcher's plan, this pass's runs and
    (with runs sharing a GPU) each run's memory against its share; creates nothing."""
    spec, rule = request.spec, request.rule
    uri = resolve_tracking_uri(request.tracking_uri)
    check_reachable(uri)
    checkpoints = CHECKPOINT_STORES[request.checkpoint_store or default_checkpoint_store(uri)]
    # Last, as it may start or join a cluster; still before any run is created.
    plan = LAUNCHERS[request.launcher](request.resources)
    if rule is not None:  # an ablation recorded under an older rule replays by it
        rule = adaptive.as_recorded(rule, uri, spec.name)
    runs = spec.runs() if rule is None else adaptive.interim_runs(spec, rule, uri)
    setup = _Setup(uri, checkpoints, plan, rule, runs)
    if plan.runs_per_gpu > 1:
        check_gpu_share(runs, plan.runs_per_gpu, plan.threads, setup.costs)
    return setup


def _create(request: Request, setup: _Setup, created: Created) -> _Batch:
    """Open the ablation in the store (experiment, parent, one child run per run), and the
    jobs of the runs left to train: neither FINISHED nor trained by another live command."""
    uri, plan = setup.uri, setup.plan
    try:
        # Two commands starting at once on one SQLite store take turns here.
        with store_creation_lock(uri):
            store = created.store = AblationStore(uri, request.spec)
            if setup.rule is not None:
                adaptive.record_rule(store, setup.rule)
            store.record_plan(setup.runs)
            to_train, finished, held = [], 0, []
            for index, run in enumerate(setup.runs):
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
                    checkpoints=setup.checkpoints(uri, run_id, request.checkpoint_dir),
                    checkpoint_every=request.checkpoint_every
                    or max(run.config().train.steps // 10, 1),
                    device=device,
                    threads=threads,
                    parent_id=store.parent_id,
                    command=COMMAND_ID,
                )
                for run, run_id, device in to_train
            ]
    except (ConfigError, TrackingError) as error:
        raise BadInputError(str(error)) from None
    except MlflowException as error:  # e.g. a read-only store
        message = f"cannot use the tracking store at {uri}: {first_line(error)}"
        raise BadInputError(message) from None
    return _Batch(store, todo, finished, held, threads)


def _announce(spec: AblationSpec, setup: _Setup, batch: _Batch) -> int:
    """The opening line (runs, what is left, parallelism, store) and the estimate; returns
    the seed batch size to run with (the estimate's choice for ``SEED_BATCH=auto``)."""
    plan, runs, todo = setup.plan, setup.runs, batch.todo
    elsewhere = f"{len(batch.held)} being trained by another command, " if batch.held else ""
    tasks = f"{len(spec.tasks)} tasks x " if spec.multi_task else ""
    print(
        f"ablation '{spec.name}': {len(runs)} runs ({tasks}{_arms_and_seeds(spec, runs)}), "
        f"{batch.finished} already finished, {elsewhere}{len(todo)} to run | preset "
        f"{spec.preset} | {min(plan.parallel, max(len(todo), 1))} parallel, "
        f"{torch_threads(batch.threads)} each on {plan.where} | MLflow {setup.uri}"
    )
    if todo:
        # Imports and opening the store so far: what each worker process will also spend.
        startup = _process_age()
        jobs = [job.run for job in todo]
        return print_estimate(
            spec, jobs, plan.parallel, batch.threads, startup, setup.costs, plan.seed_batch
        )
    return 1


def _on_done(store: AblationStore) -> Callable[[WorkerJob, str], None]:
    """The launcher's callback as each job ends: a dead worker's run marked FAILED, and the
    parent's summary brought up to date."""

    def on_done(job: WorkerJob, outcome: str) -> None:
        try:
            if outcome == FAILED:
                _ensure_marked_failed(store, job)
            store.log_parent_summary()
        except Exception as error:  # noqa: BLE001 - the runs go on; a rerun settles them
            print(f"{job.run.name}: tracking store error: {describe(error)}", file=sys.stderr)

    return on_done


def _settle(request: Request, setup: _Setup, batch: _Batch, results: dict[str, str]) -> int | None:
    """After the launch: record the adaptive interim (``None`` when another is due), settle
    the parent, print the summary, build the report, and the exit code."""
    spec, rule, store = request.spec, setup.rule, batch.store
    failed = sorted(name for name, outcome in results.items() if outcome == FAILED)
    held = batch.held + sorted(name for name, outcome in results.items() if outcome == TAKEN)
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
    if request.report:
        _build_report(spec.name, setup.uri)
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


def _arms_and_seeds(spec: AblationSpec, runs: list[RunSpec]) -> str:
    """``separate, coupled x 5 seeds``; an adaptive interim names its seeds (``seeds 5..9``)."""
    seeds = sorted({run.seed for run in runs})
    arms = ", ".join(dict.fromkeys(run.arm for run in runs)) or ", ".join(spec.arms)
    if not seeds or seeds == list(range(spec.seeds)):
        return f"{arms} x {spec.seeds} seeds"
    if seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{arms} x seeds {seeds[0]}..{seeds[-1]}"
    return f"{arms} x seeds {', '.join(map(str, seeds))}"


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
    print_estimate(spec, first, plan.parallel, plan.threads, _process_age(), costs, plan.seed_batch)
    if rule is not None and len(runs) > len(first):
        print(
            f"adaptive seeding: that is the first interim ({rule.interim} seeds per arm); "
            f"if no interim decides, up to {len(runs)} runs ({rule.max_seeds} seeds per arm)"
        )
        print_estimate(
            spec, runs, plan.parallel, plan.threads, _process_age(), costs, plan.seed_batch
        )
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
