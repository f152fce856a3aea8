"""Published studies as one ablation: studies that ran different arms of one question at the
same tasks and settings, crossed in one report (e.g. the ``starts=last`` arms of one study
with the ``starts=all`` arms of another, a 2x2).

Merging is sound only when, task by task, every run trained the same thing apart from what
makes its arm: the config keys in :data:`ARM_KEYS`, and its seed. :func:`merge` checks that
on the recorded configs and refuses otherwise; :func:`check_same_agent` checks, with git,
that the agent's code did not change between the commits the runs record. Only the tasks
every study ran are kept. Speeds are compared only between runs that ran side by side (the
report pairs runs by their overlap in time), so two studies' arms are never compared in
speed. Each study's own adaptive decisions are kept as text in ``provenance``; the merged
ablation itself has fixed seeds.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from analysis.decisions import AdaptiveRecord
from analysis.load import AblationData, AblationDataError, concat_metrics

ARM_KEYS = ("train.schedule", "train.starts", "train.refilter_starts")
"""Config keys that may differ between the merged studies' arms."""
RUN_KEYS = ("train.seed", "train.device")
"""Config keys that differ between runs of one arm (the seed) or do not change what trains."""
AGENT_PATHS = ("agent",)
"""The code whose change between the studies' commits would make their runs incomparable."""


class MergeError(AblationDataError):
    """The studies cannot be merged; one-line message."""


@dataclass(frozen=True)
class Part:
    """One published study to merge: its name, its ablation and its adaptive record."""

    name: str
    data: AblationData
    adaptive: AdaptiveRecord | None = None


def merge(parts: Sequence[Part], name: str, reference: str) -> AblationData:
    """One ablation named ``name`` from ``parts``: their runs at the tasks every part ran,
    every arm of every part (in the parts' order), compared with ``reference``.

    Raises:
        MergeError: fewer than two parts, an arm in two parts, no task in common, an unknown
            reference, or a task whose runs differ in a config key outside :data:`ARM_KEYS`.
    """
    if len(parts) < 2:
        raise MergeError(f"merging needs at least two studies, got {len(parts)}")
    arms: list[str] = []
    for part in parts:
        for arm in part.data.arm_order or sorted(set(part.data.runs["arm"])):
            if arm in arms:
                raise MergeError(f"arm '{arm}' is in more than one of the studies")
            arms.append(arm)
    if reference not in arms:
        raise MergeError(f"reference '{reference}' is not an arm of {', '.join(arms)}")
    tasks = [t for t in parts[0].data.tasks if all(t in p.data.tasks for p in parts[1:])]
    if not tasks:
        raise MergeError(f"the studies {', '.join(p.name for p in parts)} share no task")
    kept = [replace(p, data=_restrict(p.data, tasks)) for p in parts]
    run_params = {r: c for p in kept for r, c in p.data.run_params.items()}
    runs = pd.concat([p.data.runs for p in kept], ignore_index=True)
    for task in tasks:
        _check_same_training(task, runs[runs["task"] == task], run_params, kept)
    first = kept[0].data
    return AblationData(
        experiment=name,
        experiment_id="",
        parent_run_id=None,
        runs=runs,
        metrics=concat_metrics([p.data.metrics for p in kept]),
        params=first.params,
        reference=reference,
        arm_order=tuple(arms),
        tasks=tuple(tasks),
        planned_seeds={a: n for p in kept for a, n in p.data.planned_seeds.items()},
        run_params=run_params,
        provenance=tuple(_provenance(parts, tasks)),
    )


def _restrict(data: AblationData, tasks: list[str]) -> AblationData:
    runs = data.runs[data.runs["task"].isin(tasks)]
    ids = set(runs["run_id"])
    return replace(
        data,
        runs=runs,
        metrics=data.metrics[data.metrics["run_id"].isin(ids)],
        tasks=tuple(tasks),
        run_params={r: c for r, c in data.run_params.items() if r in ids},
    )


def _check_same_training(
    task: str, runs: pd.DataFrame, run_params: dict[str, dict[str, str]], parts: list[Part]
) -> None:
    """Every run of ``task`` trained one config, up to :data:`ARM_KEYS` and :data:`RUN_KEYS`."""
    study_of = {r: p.name for p in parts for r in p.data.runs["run_id"]}
    seen: tuple[str, dict[str, str]] | None = None
    for run_id in runs["run_id"]:
        if run_id not in run_params:
            raise MergeError(f"{task}: run {run_id} of {study_of[run_id]} has no recorded config")
        config = {
            k: v for k, v in run_params[run_id].items() if k not in ARM_KEYS and k not in RUN_KEYS
        }
        if seen is None:
            seen = (study_of[run_id], config)
            continue
        other, expected = seen
        for key in sorted(set(config) | set(expected)):
            if config.get(key) != expected.get(key):
                raise MergeError(
                    f"{task}: {key} is {expected.get(key, 'unset')} in {other} but "
                    f"{config.get(key, 'unset')} in {study_of[run_id]}; only "
                    f"{', '.join(ARM_KEYS)} may differ"
                )


def _provenance(parts: Sequence[Part], tasks: list[str]) -> list[str]:
    lines = []
    for part in parts:
        data = part.data
        left = [t for t in data.tasks if t not in tasks]
        arms = ", ".join(data.arm_order)
        commits = ", ".join(sorted({str(c) for c in data.runs["git_commit"] if str(c)}))
        line = f"{part.name}: arms {arms}; code at {commits or 'an unrecorded commit'}"
        if left:
            line += f"; its {', '.join(left)} runs left out (not in every study)"
        kept = data.runs[data.runs["task"].isin(tasks)]
        unfinished = kept[kept["status"] != "FINISHED"]
        if len(unfinished):
            line += f"; {len(unfinished)} of its runs did not finish ({_statuses(unfinished)})"
        if part.adaptive is not None:
            outcome = part.adaptive.outcome()
            decisions = "; ".join(
                f"{row.arm} vs {data.reference}: {row.decision} at {row.seeds} seeds"
                for row in outcome.itertuples()
            )
            line += f"; adaptive seeding {part.adaptive.status}" + (
                f" ({decisions})" if decisions else ""
            )
        lines.append(line + ".")
    return lines


def _statuses(runs: pd.DataFrame) -> str:
    return ", ".join(f"{n} {status}" for status, n in runs["status"].value_counts().items())


def check_same_agent(commits: Sequence[str], repository: str | Path = ".") -> None:
    """Raise :class:`MergeError` unless git shows :data:`AGENT_PATHS` identical at every one
    of ``commits`` (as the runs record them, abbreviated hashes allowed)."""
    distinct = sorted(set(commits))
    for commit in distinct:
        known = _git(repository, "cat-file", "-e", f"{commit}^{{commit}}")
        if known.returncode != 0:
            raise MergeError(f"commit {commit} is unknown to git here: cannot check agent/")
    for commit in distinct[1:]:
        diff = _git(repository, "diff", "--quiet", distinct[0], commit, "--", *AGENT_PATHS)
        if diff.returncode != 0:
            raise MergeError(
                f"agent/ differs between commits {distinct[0]} and {commit}: the studies "
                "trained different code"
            )


def _git(repository: str | Path, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            ["git", "-C", str(repository), *args], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise MergeError("git is not installed: cannot check agent/ across commits") from None
