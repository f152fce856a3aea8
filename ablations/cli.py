"""The ablation command's flags: ``python -m ablations --env atari_pong --seeds 5``.

Parses the flags (or a study file, ``--study``, expanded into them), validates them into a
:class:`~ablations.run.Request` and hands it to :mod:`ablations.run`, which validates it
against the store and the launcher, creates the experiment and runs in MLflow, skips FINISHED
runs, resumes unfinished ones from their checkpoints, runs the rest, then prints a per-arm
summary and builds the report. Each run has one trainer at a time: a run whose lease another
live command holds is left to it (see :class:`~ablations.integrity.leases.Lease`).

Exit codes: 0 all runs finished, 1 some failed (named at the end), 2 bad input (one line,
nothing created), 3 some runs are being trained by another command
(:data:`~ablations.run.EXIT_HELD`), 130 stopped by Ctrl-C, 143 stopped by SIGTERM (either
way the run processes are stopped too, and what this command created or ran is marked
KILLED).
"""

from __future__ import annotations

import argparse
import math
import sys

import torch

from ablations import adaptive
from ablations.integrity.checkpoints import CHECKPOINT_STORES
from ablations.launch.jobs import LauncherError, Resources
from ablations.launch.launchers import LAUNCHERS
from ablations.plan.arms import load_arms_file, parse_arm_flag, resolve_arms
from ablations.plan.spec import ARMS, SEED_LIMIT, AblationSpec
from ablations.plan.study import expand_study
from ablations.plan.suites import SUITES, resolve_tasks
from ablations.run import BadInputError, Created, Request, run_ablation, stoppable
from ablations.tracking.connection import TrackingError
from agent.cli import ArgumentParser, key_value, line_buffered_stdout, positive_int
from agent.config import ENV_PRESETS, SIZE_PRESETS, ConfigError
from agent.train import parse_overrides


def main(argv: list[str] | None = None) -> int:
    """Run the ablation the flags describe (``argv``, else the command line) and return the
    exit code (see the module's docstring); Ctrl-C or SIGTERM at any point marks what this
    command created or ran KILLED (exit 130 or 143)."""
    line_buffered_stdout()
    return stoppable(lambda created: _run(argv, created))


def _run(argv: list[str] | None, created: Created) -> int:
    parser = build_parser()
    try:
        argv = expand_study(list(sys.argv[1:] if argv is None else argv))
    except ConfigError as error:
        parser.error(str(error))
    args = parser.parse_args(argv)
    try:
        request = request_from_args(args)
    except (ConfigError, TrackingError, LauncherError) as error:
        parser.error(str(error))
    try:
        return run_ablation(request, created)
    except BadInputError as error:
        parser.error(str(error))


def request_from_args(args: argparse.Namespace) -> Request:
    """The validated request the parsed flags make: the ablation, its adaptive rule, the
    resources and where runs are recorded. Creates nothing.

    Raises:
        ConfigError: one line for the user.
    """
    spec, rule = spec_from_args(args)
    return Request(
        spec=spec,
        rule=rule,
        resources=Resources(
            jobs=positive_int("JOBS", args.jobs),
            cpus_per_run=positive_int("CPUS_PER_RUN", args.cpus_per_run),
            gpus_per_run=_gpus(args.gpus_per_run),
            runs_per_gpu=positive_int("RUNS_PER_GPU", args.runs_per_gpu),
            seed_batch=_seed_batch(args.seed_batch),
        ),
        checkpoint_every=positive_int("--checkpoint-every", args.checkpoint_every),
        tracking_uri=args.tracking_uri,
        launcher=args.launcher,
        checkpoint_store=args.checkpoint_store,
        checkpoint_dir=args.checkpoint_dir,
        report=not args.no_report,
        dry_run=args.dry_run,
    )


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
        "--seed-batch",
        default=None,
        help="local launcher: seeds of one arm and task trained by one process as one batched "
        "model, each still its own run, or 'auto': the size the duration estimate says is "
        "fastest (default 1: one run per process)",
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


def _seed_batch(value: str | None) -> int | str | None:
    """``--seed-batch``: a positive number of seeds per process, or ``auto``."""
    if value is not None and value.strip() == "auto":
        return "auto"
    return positive_int("SEED_BATCH", value)


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
