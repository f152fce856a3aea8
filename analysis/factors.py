"""Which factors an ablation's arms cross, read from the arms' own configs.

A factor is a config key whose value differs between arms on a task (``train.schedule``,
``train.starts``, a GRID's key); its levels are the values the arms give it. Keys that change
together over the arms (the same split of arms) are one factor: no run can tell them apart.
The arms form a factorial design when every combination of the factors' levels is one arm.
Only two-level factors are analysed (:mod:`analysis.factorial`); any other arrangement of
two or more factors gets a :class:`NoDesign` with the reason, never silence.

Each arm's config comes from its runs' params (``AblationData.run_params``: the results
folder's configs or the MLflow runs' params); runs logged without params fall back to their
``schedule`` and ``starts`` tags.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from analysis import summary
from analysis.load import AblationData

IGNORED_KEYS = ("train.seed",)
"""Differs between every run by design; seeds are replicates, not a factor."""
TAG_KEYS = {"schedule": "train.schedule", "starts": "train.starts"}
"""Run tags that stand in for the config of runs logged without params."""
UNSET = "(unset)"
"""The level of an arm whose runs do not carry the key at all."""


@dataclass(frozen=True)
class Factor:
    """One factor: its config keys (several when they change together over the arms) and
    its two levels, ``low`` first (the reference arm's level)."""

    keys: tuple[str, ...]
    low: str
    high: str

    @property
    def name(self) -> str:
        """The factor's keys, ``' + '``-joined when several change together."""
        return " + ".join(self.keys)

    @property
    def contrast(self) -> str:
        """The reader's words for high minus low: ``'all - last'``."""
        return f"{self.high} - {self.low}"


@dataclass(frozen=True)
class Design:
    """A full two-level factorial over ``factors``: ``cells[arm]`` is the arm's level of
    each factor (0 low, 1 high); every combination is exactly one arm. ``notes`` say what
    the reader should know about the detection (keys that change together, confounds)."""

    factors: tuple[Factor, ...]
    cells: dict[str, tuple[int, ...]]
    notes: tuple[str, ...] = ()

    def arm_of(self, levels: tuple[int, ...]) -> str:
        """The arm of a cell (its level of each factor, 0 low, 1 high)."""
        return next(arm for arm, cell in self.cells.items() if cell == levels)

    def cell_label(self, levels: tuple[int, ...]) -> str:
        """``'coupled, all'``: the cell's level of each factor, in factor order."""
        return ", ".join(
            factor.high if level else factor.low
            for factor, level in zip(self.factors, levels, strict=True)
        )


@dataclass(frozen=True)
class NoDesign:
    """Arms that vary in two or more factors but cannot be analysed as a factorial: why
    (one sentence for the page) and the factors found, with every arm's level."""

    reason: str
    factors: tuple[str, ...]
    levels: dict[str, tuple[str, ...]]
    notes: tuple[str, ...] = ()


def arm_configs(data: AblationData, arms: Sequence[str]) -> dict[str, dict[str, dict[str, str]]]:
    """``{task: {arm: {key: value}}}``: per task, the config values every run of the arm
    shares (keys in :data:`IGNORED_KEYS` left out). A run without params contributes its
    ``schedule`` and ``starts`` tags instead."""
    configs: dict[str, dict[str, dict[str, str]]] = {}
    for task in dict.fromkeys(data.runs["task"]):
        runs = data.runs[data.runs["task"] == task]
        for arm in arms:
            shared: dict[str, str] | None = None
            for run in runs[runs["arm"] == arm].itertuples():
                params = data.run_params.get(run.run_id) or {
                    key: str(getattr(run, tag))
                    for tag, key in TAG_KEYS.items()
                    if str(getattr(run, tag, "") or "")
                }
                params = {k: v for k, v in params.items() if k not in IGNORED_KEYS}
                shared = params if shared is None else _agreeing(shared, params)
            if shared is not None:
                configs.setdefault(task, {})[arm] = shared
    return configs


def _agreeing(one: dict[str, str], other: dict[str, str]) -> dict[str, str]:
    """The values two configs share; a key only one has counts as differing."""
    return {k: v for k, v in one.items() if other.get(k) == v}


def crossing(data: AblationData) -> Design | NoDesign | None:
    """The factorial design of the ablation's arms; None when they vary in fewer than two
    factors (a plain comparison of arms, which the rest of the report covers)."""
    arms = summary.ordered_arms(data.runs["arm"], data.reference, data.arm_order)
    configs = arm_configs(data, arms)
    notes: list[str] = []
    # Keys whose value differs between arms on some task: candidates for a factor.
    varying = sorted(
        {
            key
            for per_arm in configs.values()
            for key in set().union(*per_arm.values())
            if len({config.get(key, UNSET) for config in per_arm.values()}) > 1
        }
    )
    levels: dict[str, dict[str, str]] = {}  # key -> arm -> its one value over the tasks
    for key in varying:
        values = {
            arm: {c[arm].get(key, UNSET) for c in configs.values() if arm in c} for arm in arms
        }
        several = [arm for arm, seen in values.items() if len(seen) > 1]
        if several:
            notes.append(
                f"{key} differs between arms on some tasks but not others (arm {several[0]} "
                f"has {', '.join(sorted(values[several[0]]))} across tasks): a confound on "
                "those tasks, not analysed as a factor."
            )
            continue
        levels[key] = {arm: next(iter(seen)) for arm, seen in values.items() if seen}
    factors = _group_aliased(levels, arms, notes)
    if len(factors) < 2:
        return None
    order = [arm for arm in arms if all(arm in levels[keys[0]] for keys in factors)]
    values = {
        " + ".join(keys): tuple(", ".join(levels[k][arm] for k in keys) for arm in order)
        for keys in factors
    }
    named = tuple(values)
    many = {name: list(dict.fromkeys(v)) for name, v in values.items() if len(set(v)) > 2}
    if many:
        name, seen = next(iter(many.items()))
        reason = (
            f"{name} has {len(seen)} levels ({', '.join(seen)}); only two-level factors are "
            "analysed here, so no main effects or interaction are given."
        )
        return NoDesign(reason, named, _arm_levels(values, order), tuple(notes))
    two_level = []
    for name, per_arm in values.items():
        low = per_arm[0]  # the reference arm's level (arms are in report order)
        high = next(v for v in per_arm if v != low)
        two_level.append(Factor(tuple(name.split(" + ")), low, high))
    cells = {
        arm: tuple(int(values[f.name][i] == f.high) for f in two_level)
        for i, arm in enumerate(order)
    }
    shared = [arms_ for arms_ in _by_cell(cells).values() if len(arms_) > 1]
    if shared:
        reason = (
            f"arms {' and '.join(shared[0])} have the same level of every factor, so a cell "
            "has two arms; no factorial analysis."
        )
        return NoDesign(reason, named, _arm_levels(values, order), tuple(notes))
    missing = [
        cell
        for cell in itertools.product((0, 1), repeat=len(two_level))
        if cell not in _by_cell(cells)
    ]
    if missing:
        absent = "; ".join(
            ", ".join(
                f"{factor.name}={factor.high if level else factor.low}"
                for factor, level in zip(two_level, cell, strict=True)
            )
            for cell in missing
        )
        reason = (
            f"the arms do not cross the factors fully: no arm has {absent}. Main effects and "
            "interactions need every combination of levels, so none are given."
        )
        return NoDesign(reason, named, _arm_levels(values, order), tuple(notes))
    return Design(tuple(two_level), cells, tuple(notes))


def _group_aliased(
    levels: dict[str, dict[str, str]], arms: Sequence[str], notes: list[str]
) -> list[tuple[str, ...]]:
    """Keys grouped by the split of arms their values make; a note for each group of two or
    more (they change together, so the runs cannot tell them apart)."""
    groups: dict[tuple[int, ...], list[str]] = {}
    for key, per_arm in levels.items():
        present = [arm for arm in arms if arm in per_arm]
        labels = list(dict.fromkeys(per_arm[arm] for arm in present))
        split = tuple(labels.index(per_arm[arm]) if arm in per_arm else -1 for arm in arms)
        groups.setdefault(split, []).append(key)
    for keys in groups.values():
        if len(keys) > 1:
            notes.append(
                f"{', '.join(keys)} change together over the arms: one factor, whose effect "
                "cannot be split between them."
            )
    return [tuple(keys) for keys in groups.values()]


def _arm_levels(
    values: dict[str, tuple[str, ...]], order: Sequence[str]
) -> dict[str, tuple[str, ...]]:
    return {arm: tuple(v[i] for v in values.values()) for i, arm in enumerate(order)}


def _by_cell(cells: dict[str, tuple[int, ...]]) -> dict[tuple[int, ...], list[str]]:
    by_cell: dict[tuple[int, ...], list[str]] = {}
    for arm, cell in cells.items():
        by_cell.setdefault(cell, []).append(arm)
    return by_cell
