"""Arms are data: a name and a dict of dotted config overrides.

Built-in arms (:data:`ablations.plan.spec.ARMS`) and user arms, from a TOML file (one table per
arm) or ``--arm NAME:KEY=VALUE,KEY=VALUE``, are the same kind of value; a grid
(``train.train_ratio=128,512``) crosses every arm with each value. Mistakes raise
:class:`ConfigError` with one line for the user, before anything is created.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from pathlib import Path
from typing import Any

from agent.cli import key_value
from agent.config import ConfigError

Arm = dict[str, Any]
NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


def _check_name(name: str, where: str) -> None:
    if not NAME.match(name):
        raise ConfigError(
            f"arm name '{name}' ({where}) may only use letters, digits and _ . + -; rename it"
        )


def load_arms_file(path: str) -> dict[str, Arm]:
    """Arms of a TOML file: one table per arm, ``[name]`` then ``"train.schedule" = "coupled"``.

    Nested tables (``[name.train]`` ``schedule = ...``) are read as dotted keys too.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"ARMS_FILE {path} does not exist; give the path of a TOML file")
    try:
        tables = tomllib.loads(file.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"ARMS_FILE {path} is not valid TOML: {error}") from None
    arms: dict[str, Arm] = {}
    for name, table in tables.items():
        _check_name(name, path)
        if not isinstance(table, dict):
            raise ConfigError(
                f"ARMS_FILE {path}: '{name}' must be a table of config overrides ([{name}])"
            )
        arms[name] = _flatten(table)
    return arms


def _flatten(table: dict[str, Any], prefix: str = "") -> Arm:
    out: Arm = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def parse_arm_flag(text: str) -> tuple[str, Arm]:
    """``NAME:KEY=VALUE,KEY=VALUE`` -> ``(NAME, {KEY: VALUE, ...})`` (values stay strings)."""
    name, colon, body = text.partition(":")
    name = name.strip()
    pairs = [pair.strip() for pair in body.split(",") if pair.strip()]
    if not colon or not name or not pairs or any("=" not in pair for pair in pairs):
        raise ConfigError(
            f"--arm '{text}' must look like NAME:KEY=VALUE[,KEY=VALUE...], "
            "e.g. coupled_r128:train.schedule=coupled,train.train_ratio=128"
        )
    _check_name(name, "--arm")
    overrides: Arm = {}
    for pair in pairs:
        key, value = key_value(pair, f"--arm {name} expects KEY=VALUE pairs")
        if key in overrides:
            raise ConfigError(f"--arm {name} sets {key} twice; set it once")
        overrides[key] = value
    return name, overrides


def parse_grid(text: str) -> list[tuple[str, list[str]]]:
    """``"train.train_ratio=128,512 model.units=64,128"`` -> ``[(key, [values]), ...]``."""
    axes = []
    for word in text.split():
        form = f"GRID '{word}' must look like KEY=VALUE,VALUE..., e.g. train.train_ratio=128,512"
        key, values = key_value(word, form)
        choices = [value.strip() for value in values.split(",") if value.strip()]
        if not choices:
            raise ConfigError(form)
        if len(set(choices)) != len(choices):
            raise ConfigError(f"GRID {key} lists a value twice ({values}); list each once")
        axes.append((key, choices))
    keys = [key for key, _ in axes]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"GRID names a key twice ({', '.join(keys)}); give each key once")
    return axes


def cross(arms: dict[str, Arm], axes: list[tuple[str, list[str]]]) -> dict[str, Arm]:
    """Every arm with every combination of the grid's values, named
    ``<arm>_<last key part><value>`` per axis (``coupled_train_ratio128``)."""
    if not axes:
        return dict(arms)
    crossed: dict[str, Arm] = {}
    for name, overrides in arms.items():
        for values in itertools.product(*(choices for _, choices in axes)):
            suffix = "_".join(
                f"{key.rsplit('.', 1)[-1]}{value}"
                for (key, _), value in zip(axes, values, strict=True)
            )
            crossed[f"{name}_{suffix}"] = {
                **overrides,
                **{key: value for (key, _), value in zip(axes, values, strict=True)},
            }
    return crossed


def resolve_arms(
    builtin: dict[str, Arm],
    selected: tuple[str, ...],
    file_arms: dict[str, Arm],
    flag_arms: list[tuple[str, Arm]],
    grid: str = "",
) -> dict[str, Arm]:
    """The arms an ablation runs, in order: the ``selected`` names (built-in or user), then
    every user arm not selected, each crossed with the grid.

    Raises :class:`ConfigError` for an arm defined twice (a user arm named like a built-in
    one, or in the file and on the command line) or a selected name that is no arm.
    """
    user: dict[str, Arm] = {}
    for name, overrides in [*file_arms.items(), *flag_arms]:
        if name in builtin or name in user:
            where = "a built-in arm" if name in builtin else "another user arm"
            raise ConfigError(f"arm '{name}' is defined twice (also {where}); rename one")
        user[name] = overrides
    table = {**builtin, **user}
    unknown = [name for name in selected if name not in table]
    if unknown:
        raise ConfigError(f"unknown arm(s) {', '.join(unknown)}; known arms: {', '.join(table)}")
    if len(set(selected)) != len(selected):
        raise ConfigError(f"arms are listed twice: {', '.join(selected)}")
    names = [*selected, *(name for name in user if name not in selected)]
    if not names:
        raise ConfigError(f"no arms given; known arms: {', '.join(table)}")
    return cross({name: table[name] for name in names}, parse_grid(grid))


def describe(overrides: Arm) -> str:
    """``train.schedule=coupled, train.starts=last``: an arm's overrides in one line."""
    return ", ".join(f"{key}={value}" for key, value in overrides.items()) or "no overrides"
