"""A study is a file: ``studies/<name>.toml`` holds what an ablation's flags hold.

``make study STUDY=cpu_classic`` (``python -m ablations --study cpu_classic``) reads the file
and runs it as the ablation those flags would describe, through the same runner (estimate,
progress, resume, MLflow, report); the experiment is named after the study. The file::

    description = "what the study asks"          # optional
    preset = "debug"
    arms = ["separate", "coupled"]               # built-in arms, the reference first
    reference = "separate"                       # optional: default separate, else the first
    steps = 3000                                 # optional: agent steps of every task
    learn_target = 0.5                           # optional: see benchmarks.learning
    seeds = 5                                    # a fixed number of seeds, or:
    [adaptive]                                   # adaptive seeding over the suite score
    interim = 5
    max_seeds = 10
    alpha = 0.05
    [settings]                                   # config values of every task
    "train.train_ratio" = 256
    [tasks.cartpole]                             # one table per task, in order:
    steps = 3000                                 # its own budget and config values
    "train.eval_every" = 500

A study may instead merge published studies (:mod:`analysis.merge`), e.g. two that ran the
two levels of one factor at the same tasks and settings; it is published, not run::

    description = "what the merged study asks"
    merge = ["cpu_classic", "cpu_classic_all"]   # their results/<name>/ folders
    reference = "separate"

Every mistake (no such study, bad TOML, an unknown key, a value of the wrong type, seeds
and adaptive both or neither) is a :class:`ConfigError` of one line; tasks, arms and config
values are then checked by the runner as if typed on the command line, before anything is
created.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config import ConfigError

STUDIES_DIR = Path(__file__).resolve().parents[2] / "studies"
TOP_KEYS = {
    "description",
    "preset",
    "arms",
    "reference",
    "steps",
    "learn_target",
    "seeds",
    "adaptive",
    "settings",
    "tasks",
}
ADAPTIVE_KEYS = ("interim", "max_seeds", "alpha")
RUNNER_FLAGS = (
    "--env",
    "--suite",
    "--seeds",
    "--arms",
    "--preset",
    "--steps",
    "--set",
    "--task-set",
    "--arm",
    "--arms-file",
    "--reference",
    "--grid",
    "--interim",
    "--max-seeds",
    "--alpha",
)
"""Flags a study sets itself: given beside ``--study`` they would contradict the file."""


@dataclass(frozen=True)
class Study:
    """One study file, parsed.

    Attributes:
        name: the file's stem, also the default experiment name.
        tasks: the tasks in the file's order.
        arms: built-in arm names.
        preset: size preset.
        reference: the arm every other is compared with ("" for the runner's default).
        seeds: seeds per arm, or None with adaptive seeding.
        adaptive: ``interim``, ``max_seeds``, ``alpha`` as given (empty without).
        steps: agent steps of every task, None for each env preset's own.
        settings: config values of every task, as strings.
        task_settings: per task, its own config values (``train.steps`` for its ``steps``).
        learn_target: normalised final score every ``starts=all`` run should reach at this
            budget (``make bench-learn STUDY=``), None when the study sets none.
        description: free text.
    """

    name: str
    tasks: tuple[str, ...]
    arms: tuple[str, ...]
    preset: str
    reference: str = ""
    seeds: int | None = None
    adaptive: dict[str, str] = field(default_factory=dict)
    steps: int | None = None
    settings: dict[str, str] = field(default_factory=dict)
    task_settings: dict[str, dict[str, str]] = field(default_factory=dict)
    learn_target: float | None = None
    description: str = ""

    def runner_args(self) -> list[str]:
        """The runner's flags that describe this study (``python -m ablations ...``)."""
        args = ["--env", ",".join(self.tasks), "--arms", ",".join(self.arms)]
        args += ["--preset", self.preset, "--experiment", self.name]
        if self.reference:
            args += ["--reference", self.reference]
        if self.seeds is not None:
            args += ["--seeds", str(self.seeds)]
        else:
            args += ["--seeds", "auto"]
            for key in ADAPTIVE_KEYS:
                if key in self.adaptive:
                    args += [f"--{key.replace('_', '-')}", self.adaptive[key]]
        if self.steps is not None:
            args += ["--steps", str(self.steps)]
        for key, value in self.settings.items():
            args += ["--set", f"{key}={value}"]
        for task, values in self.task_settings.items():
            for key, value in values.items():
                args += ["--task-set", f"{task}:{key}={value}"]
        return args


@dataclass(frozen=True)
class MergedStudy:
    """A study file with ``merge``: the published studies it crosses, in order."""

    name: str
    parts: tuple[str, ...]
    reference: str
    description: str = ""


MERGE_KEYS = {"description", "merge", "reference"}


def _read_table(name: str) -> tuple[Path, dict[str, Any]]:
    if not name.strip():
        raise ConfigError(f"STUDY is empty; known studies: {', '.join(known_studies())}")
    path = study_path(name.strip())
    if not path.is_file():
        raise ConfigError(
            f"no study file {path}; known studies: {', '.join(known_studies()) or '(none)'}"
        )
    try:
        return path, tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"STUDY {path}: not valid TOML ({error})") from None


def is_merged_study(name: str) -> bool:
    """Whether the study file ``name`` merges published studies (raises as
    :func:`load_study` for a missing or malformed file)."""
    return "merge" in _read_table(name)[1]


def load_merged_study(name: str) -> MergedStudy:
    """Parse a study file with ``merge`` (see the module docstring).

    Raises:
        ConfigError: one line naming the file and the mistake.
    """
    path, table = _read_table(name)
    where = f"STUDY {path}"
    unknown = sorted(set(table) - MERGE_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: a merged study takes only {', '.join(sorted(MERGE_KEYS))}; drop "
            f"{', '.join(unknown)}"
        )
    parts = _typed(where, table, "merge", list)
    if len(parts) < 2 or not all(isinstance(p, str) and p for p in parts):
        raise ConfigError(f"{where}: 'merge' must list at least two study names")
    return MergedStudy(
        name=path.stem,
        parts=tuple(parts),
        reference=_typed(where, table, "reference", str),
        description=_typed(where, table, "description", str, required=False) or "",
    )


def study_path(name: str) -> Path:
    """``studies/<name>.toml`` in this repository, or ``name`` itself when it is a path to
    a ``.toml`` file."""
    if name.endswith(".toml") or "/" in name:
        return Path(name)
    return STUDIES_DIR / f"{name}.toml"


def known_studies() -> list[str]:
    return sorted(path.stem for path in STUDIES_DIR.glob("*.toml"))


def load_study(name: str) -> Study:
    """Parse the study ``name`` (see :func:`study_path`).

    Raises:
        ConfigError: one line naming the file and the mistake.
    """
    path, table = _read_table(name)
    where = f"STUDY {path}"
    if "merge" in table:
        raise ConfigError(
            f"{where} merges the published studies {', '.join(map(str, table['merge']))}: "
            f"run those, then make publish STUDY={path.stem}"
        )
    unknown = sorted(set(table) - TOP_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(TOP_KEYS))}"
        )
    tasks_table = _typed(where, table, "tasks", dict)
    if not tasks_table:
        raise ConfigError(f"{where}: no [tasks.<name>] table; list at least one task")
    task_settings = {}
    for task, values in tasks_table.items():
        values = _typed(where, tasks_table, task, dict, f"[tasks.{task}]")
        own = dict(values)
        steps = own.pop("steps", None)
        settings = _settings(f"{where} [tasks.{task}]", own)
        if steps is not None:
            settings["train.steps"] = str(_positive(f"{where} [tasks.{task}]", "steps", steps))
        task_settings[task] = settings
    arms = _typed(where, table, "arms", list)
    if not arms or not all(isinstance(arm, str) and arm for arm in arms):
        raise ConfigError(f"{where}: 'arms' must be a non-empty list of arm names")
    seeds, adaptive = table.get("seeds"), _typed(where, table, "adaptive", dict, required=False)
    if (seeds is None) == (adaptive is None):
        raise ConfigError(f"{where}: give either 'seeds = <n>' or an [adaptive] table, one of them")
    if seeds is not None:
        seeds = _positive(where, "seeds", seeds)
    rule = {}
    for key, value in (adaptive or {}).items():
        if key not in ADAPTIVE_KEYS:
            raise ConfigError(
                f"{where}: unknown key '{key}' in [adaptive]; known: {', '.join(ADAPTIVE_KEYS)}"
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: [adaptive] {key} must be a number, got {value!r}")
        rule[key] = str(value)
    target = table.get("learn_target")
    if target is not None and (isinstance(target, bool) or not isinstance(target, int | float)):
        raise ConfigError(f"{where}: 'learn_target' must be a number, got {target!r}")
    steps = table.get("steps")
    common = _typed(where, table, "settings", dict, required=False) or {}
    return Study(
        name=path.stem,
        tasks=tuple(tasks_table),
        arms=tuple(arms),
        preset=_typed(where, table, "preset", str),
        reference=_typed(where, table, "reference", str, required=False) or "",
        seeds=seeds,
        adaptive=rule,
        steps=None if steps is None else _positive(where, "steps", steps),
        settings=_settings(f"{where} [settings]", common),
        task_settings={task: values for task, values in task_settings.items() if values},
        learn_target=None if target is None else float(target),
        description=_typed(where, table, "description", str, required=False) or "",
    )


def expand_study(argv: list[str]) -> list[str]:
    """``argv`` with ``--study NAME`` replaced by the study's own flags; unchanged without it.

    Raises:
        ConfigError: a bad study, or a flag the study sets given beside it.
    """
    if "--study" not in argv and not any(arg.startswith("--study=") for arg in argv):
        return argv
    rest, names = [], []
    items = iter(argv)
    for arg in items:
        if arg == "--study":
            names.append(next(items, ""))
        elif arg.startswith("--study="):
            names.append(arg.removeprefix("--study="))
        else:
            rest.append(arg)
    if len(names) > 1:
        raise ConfigError(f"give one STUDY, got {len(names)}: {', '.join(names)}")
    clashing = [arg.split("=")[0] for arg in rest if arg.split("=")[0] in RUNNER_FLAGS]
    if clashing:
        raise ConfigError(
            f"STUDY sets the tasks, arms, seeds, preset and config values itself; drop "
            f"{', '.join(dict.fromkeys(clashing))} (or edit the study file)"
        )
    study = load_study(names[0])
    named = any(arg == "--experiment" or arg.startswith("--experiment=") for arg in rest)
    args = study.runner_args()
    if named:  # EXPERIMENT= given: it names the experiment instead of the study
        at = args.index("--experiment")
        del args[at : at + 2]
    return args + rest


def _typed(
    where: str,
    table: dict[str, Any],
    key: str,
    kind: type,
    label: str = "",
    required: bool = True,
) -> Any:
    value = table.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{where}: missing '{key}'")
        return None
    if not isinstance(value, kind):
        name = {dict: "a table", list: "a list", str: "a string"}[kind]
        raise ConfigError(f"{where}: {label or repr(key)} must be {name}, got {value!r}")
    return value


def _positive(where: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{where}: '{key}' must be a positive whole number, got {value!r}")
    return value


def _settings(where: str, values: dict[str, Any]) -> dict[str, str]:
    """Config values as the command line would give them (checked later by the config)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict | list):
            raise ConfigError(
                f"{where}: '{key}' must be one value (write dotted keys in quotes, "
                f'"train.train_ratio" = 256), got {value!r}'
            )
        out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out
