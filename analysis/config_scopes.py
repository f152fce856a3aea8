"""Which config values an ablation's runs share, and along what the others differ: by task
(a suite's budgets and settings), by arm (the schedule), by task and arm, or by run (the
seed). The report's Appendix B shows them so, instead of one run's config as if it were
every run's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from analysis.load import AblationData

ABSENT = "(not set)"
"""A key some runs' configs lack: their value in the tables."""
SCOPES = ("task", "arm", "task/arm")
"""The groupings tried in order: a key constant within every group of the first that holds."""


@dataclass(frozen=True)
class ConfigScopes:
    """Attributes:
    common: ``{key: value}`` of the keys every run has the same value of.
    by: per scope of :data:`SCOPES`, a frame indexed by key with one column per group
        (task, arm, or ``task/arm``), for the keys that are constant within each group of
        that scope but not over all runs.
    per_run: ``{key: description}`` of the keys that differ within a task and arm (e.g.
        ``train.seed``: ``"the run's seed"``).
    runs: runs whose config is known; 0 when only ``data.params`` was (then ``common``
        holds those params of one run).
    """

    common: dict[str, str]
    by: dict[str, pd.DataFrame] = field(default_factory=dict)
    per_run: dict[str, str] = field(default_factory=dict)
    runs: int = 0

    def long_table(self) -> pd.DataFrame:
        """Every key once or once per group: columns ``param, varies_by, group, value``
        (``varies_by`` ``'-'`` for a common key, ``'run'`` with the description as value)."""
        rows = [(key, "-", "", value) for key, value in sorted(self.common.items())]
        for scope, frame in self.by.items():
            rows += [
                (key, scope, group, frame.loc[key, group])
                for key in frame.index
                for group in frame.columns
            ]
        rows += [(key, "run", "", text) for key, text in sorted(self.per_run.items())]
        return pd.DataFrame(rows, columns=["param", "varies_by", "group", "value"])


def config_scopes(data: AblationData) -> ConfigScopes:
    """The runs' configs (``data.run_params``, every run whose config was loaded) sorted into
    common keys, keys that differ by task, by arm or by task and arm, and per-run keys."""
    known = data.runs[data.runs["run_id"].isin(list(data.run_params))]
    if known.empty:
        return ConfigScopes(common=dict(sorted(data.params.items())))
    configs = [data.run_params[run_id] for run_id in known["run_id"]]
    keys = sorted(set().union(*configs))
    values = pd.DataFrame(
        [[config.get(key, ABSENT) for key in keys] for config in configs],
        columns=keys,
        index=known.index,
    )
    groups = {
        "task": known["task"].astype(str),
        "arm": known["arm"].astype(str),
        "task/arm": known["task"].astype(str) + "/" + known["arm"].astype(str),
    }
    order = {
        scope: [g for g in dict.fromkeys([*first, *groups[scope]]) if g in set(groups[scope])]
        for scope, first in (("task", data.tasks), ("arm", data.arm_order))
    }
    order["task/arm"] = [
        f"{task}/{arm}"
        for task in order["task"]
        for arm in order["arm"]
        if f"{task}/{arm}" in set(groups["task/arm"])
    ]
    common: dict[str, str] = {}
    placed: dict[str, dict[str, dict[str, str]]] = {scope: {} for scope in SCOPES}
    per_run: dict[str, str] = {}
    seeds = known["seed"].astype(str)
    for key in keys:
        column = values[key]
        if column.nunique() == 1:
            common[key] = column.iloc[0]
            continue
        scope = next((s for s in SCOPES if column.groupby(groups[s]).nunique().max() == 1), None)
        if scope is not None:
            first = column.groupby(groups[scope]).first()
            placed[scope][key] = {group: first[group] for group in order[scope]}
        elif (column == seeds).all():
            per_run[key] = "the run's seed"
        else:
            per_run[key] = f"{column.nunique()} values, differing between runs of one task and arm"
    by = {
        scope: pd.DataFrame.from_dict(rows, orient="index")[order[scope]]
        for scope, rows in placed.items()
        if rows
    }
    return ConfigScopes(common=common, by=by, per_run=per_run, runs=len(known))
