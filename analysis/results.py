"""An ablation's results as a folder of small text files, which rebuild its report without the
MLflow store.

    ablation.json   experiment, reference arm, arms' order, tasks, runs planned, each distinct
                    config once (runs.csv's ``config`` numbers them), the adaptive rule and tags
    runs.csv        one row per run: ``run`` (its number in curves.csv), ``task, arm, seed,
                    status, final_return, normalized_score, updates_per_s``, then the rest of
                    ``AblationData.runs`` (tags, score references, final_step, wall_clock, ...)
    curves.csv      the metric points the report reads (:func:`is_curve_metric`): one row per
                    run and logged step, ``run, step`` and one column per metric, empty where
                    that metric was not logged at that step
    decisions.csv   adaptive seeding's interims (only for an adaptive ablation with one)
    cautions.txt    every caution the report raises, one a line (:mod:`analysis.cautions`);
                    for readers, the report recomputes them

:func:`write_results` writes the folder from what the MLflow reader loads;
:func:`read_results` is its inverse. The ``AblationData`` it reads equals the MLflow reader's,
except that ``metrics`` holds only the curve metrics (every point of them, in the same rows
and order); the report reads nothing else, so :mod:`reports` cannot tell the two apart.
Numbers are written as the shortest text that parses back to the same float64 (Python's
``repr``; whole numbers without ``.0``), so the statistics rebuilt from the folder equal those
from the store exactly.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import method, suite, summary
from analysis.cautions import CAUTIONS_FILE, cautions_text
from analysis.decisions import (
    ADAPTIVE_PREFIX,
    DECISIONS_COLUMNS,
    AdaptiveRecord,
    adaptive_record,
    no_interims,
)
from analysis.load import (
    RUNS_COLUMNS,
    AblationData,
    AblationDataError,
    concat_metrics,
    run_metrics_frame,
    run_time,
    runs_frame,
)

FORMAT = "dreamer-ablation-results"
VERSION = 1
ABLATION_FILE, RUNS_FILE, CURVES_FILE, DECISIONS_FILE = (
    "ablation.json",
    "runs.csv",
    "curves.csv",
    "decisions.csv",
)
CURVE_METRICS = (
    summary.RETURN_METRIC,
    summary.TRAINING_SECONDS_METRIC,
    *(f"time/{phase}" for phase in summary.TRAINING_PHASES),
    summary.ITERATIONS_METRIC,
    summary.UPDATES_METRIC,
    summary.LOAD_METRIC,
    method.STALENESS_METRIC,
)
"""The metrics the report reads by name: eval curves, training time (the wall-clock of every
point, speed, the phases), progress counts, machine load and the start states' staleness."""
CURVE_FAMILIES = ("diversity/",)
"""Metric families the report reads whole (the diversity page plots every ``diversity/*``)."""
DERIVED_COLUMNS = ("final_return", "normalized_score", "updates_per_s")
"""runs.csv's per-run scores, for readers of the folder; the report recomputes them."""
RUNS_FILE_COLUMNS = (
    "run",
    "task",
    "arm",
    "seed",
    "status",
    *DERIVED_COLUMNS,
    *(c for c in RUNS_COLUMNS if c not in ("task", "arm", "seed", "status")),
    "config",
)
FLOAT_COLUMNS = ("score_random", "score_best", "wall_clock")
TIME_COLUMNS = ("start_time", "end_time")
EPOCH, MILLISECOND = pd.Timestamp(0), pd.Timedelta(milliseconds=1)
SEED_PARAM = "train.seed"


class ResultsFolderError(AblationDataError):
    """A results folder that cannot be read or written; one-line message."""


def is_curve_metric(metric: str) -> bool:
    """Whether ``metric`` goes to curves.csv (:data:`CURVE_METRICS`, :data:`CURVE_FAMILIES`)."""
    return metric in CURVE_METRICS or metric.startswith(CURVE_FAMILIES)


def format_number(value: float) -> str:
    """The shortest text that parses back to the same float64: ``repr``, whole numbers
    without ``.0`` (``-0.0`` keeps its sign); ``nan``, ``inf`` and ``-inf`` as such."""
    value = float(value)
    if value.is_integer() and abs(value) < 2**53 and math.copysign(1.0, value) > 0:
        return str(int(value))
    return repr(value)


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def write_results(
    data: AblationData,
    adaptive: AdaptiveRecord | None,
    out: str | Path,
    finish: Callable[[Path], None] | None = None,
) -> Path:
    """Write the folder ``out`` (created, or replacing an earlier export) from ``data`` (the
    MLflow reader's, with at least one FINISHED run) and its adaptive record.

    Nothing is half-written: the files go to a temporary folder beside ``out``, which then
    takes its place; ``finish`` (given that folder, its files written) may add files first,
    e.g. what a publication builds from them.

    Raises:
        ResultsFolderError: ``out`` exists and is neither an earlier export nor an empty folder.
    """
    out = Path(out)
    replaced = check_destination(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.writing-"))
    old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-")) if replaced else None
    try:
        _write_files(data, adaptive, staging)
        if finish is not None:
            finish(staging)
        os.chmod(staging, 0o755)  # mkdtemp makes 0700; the folder is meant to be shared
        if old is not None:
            os.replace(out, old / "previous")
        try:
            os.replace(staging, out)
        except BaseException:
            if old is not None:  # put the earlier export back
                os.replace(old / "previous", out)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when it took out's place
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return out


def check_destination(out: Path) -> bool:
    """Whether ``out`` holds something to replace (an earlier export, or an empty folder);
    False when it does not exist.

    Raises:
        ResultsFolderError: ``out`` is a file, or a folder that is not an export.
    """
    if not out.exists():
        return False
    if out.is_dir() and not any(out.iterdir()):
        return True
    if out.is_dir() and _is_export(out):
        return True
    raise ResultsFolderError(
        f"{out} exists and is not an exported results folder; remove it or choose another OUT"
    )


def _is_export(folder: Path) -> bool:
    try:
        header = json.loads((folder / ABLATION_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(header, dict) and header.get("format") == FORMAT


def _write_files(data: AblationData, adaptive: AdaptiveRecord | None, folder: Path) -> None:
    keys = {run_id: index for index, run_id in enumerate(data.runs["run_id"])}
    configs, config_of, seed_param = _distinct_configs(data)
    runs = _runs_table(data, keys, config_of)
    runs.to_csv(folder / RUNS_FILE, index=False)
    _curves_table(data.metrics, keys).to_csv(folder / CURVES_FILE, index=False)
    params_run = next((keys[r] for r in keys if data.run_params.get(r) == data.params), None)
    header: dict[str, object] = {
        "format": FORMAT,
        "version": VERSION,
        "experiment": data.experiment,
        "experiment_id": data.experiment_id,
        "parent_run_id": data.parent_run_id,
        "reference": data.reference,
        "arm_order": list(data.arm_order),
        "tasks": list(data.tasks),
        "planned_seeds": dict(data.planned_seeds),
        "params_run": params_run,
        **({} if params_run is not None else {"params": dict(sorted(data.params.items()))}),
        "seed_param": seed_param,
        "configs": configs,
        "adaptive": None,
        **({"provenance": list(data.provenance)} if data.provenance else {}),
    }
    if adaptive is not None:
        header["adaptive"] = {
            "params": {ADAPTIVE_PREFIX + k: v for k, v in adaptive.rule.items()},
            "tags": {ADAPTIVE_PREFIX + k: v for k, v in adaptive.tags.items()},
        }
        if len(adaptive.interims):
            # pandas writes each float64 as its shortest round-trip text (2.0 as 2.0, so the
            # column's type survives), read back with float_precision="round_trip".
            adaptive.interims.to_csv(folder / DECISIONS_FILE, index=False)
    (folder / ABLATION_FILE).write_text(json.dumps(header, indent=1) + "\n")
    (folder / CAUTIONS_FILE).write_text(cautions_text(data))


def _distinct_configs(
    data: AblationData,
) -> tuple[list[dict[str, str]], dict[str, int], str | None]:
    """Each distinct run config once (without ``train.seed`` when every run's equals its
    seed, as it does for the runner's runs), each run's config number, and that param's
    name (None when it was kept)."""
    seeds = dict(zip(data.runs["run_id"], data.runs["seed"], strict=True))
    owned = {r: p for r, p in data.run_params.items() if r in seeds}
    from_seed = bool(owned) and all(p.get(SEED_PARAM) == str(seeds[r]) for r, p in owned.items())
    configs: list[dict[str, str]] = []
    index: dict[str, int] = {}
    config_of = {}
    for run_id in data.runs["run_id"]:
        if run_id not in owned:
            continue
        params = sorted(owned[run_id].items())
        config = {k: v for k, v in params if not (from_seed and k == SEED_PARAM)}
        text = json.dumps(config)
        if text not in index:
            index[text] = len(configs)
            configs.append(config)
        config_of[run_id] = index[text]
    return configs, config_of, SEED_PARAM if from_seed else None


def _runs_table(
    data: AblationData, keys: dict[str, int], config_of: dict[str, int]
) -> pd.DataFrame:
    """runs.csv: ``data.runs`` with each run's number, scores and config number, as text."""
    scores = suite.normalised_scores(summary.per_run_scores(data.runs, data.metrics))
    table = scores.rename(columns={"normalised": "normalized_score"})
    table.insert(0, "run", [keys[r] for r in table["run_id"]])
    table["config"] = [str(config_of[r]) if r in config_of else "" for r in table["run_id"]]
    for column in TIME_COLUMNS:
        table[column] = [_format_time(value) for value in table[column]]
    table = table[list(RUNS_FILE_COLUMNS)].copy()
    for column in table.columns:  # numbers as format_number text, NaN as an empty cell
        if pd.api.types.is_numeric_dtype(table[column]):
            table[column] = ["" if np.isnan(v) else format_number(v) for v in table[column]]
    return table


def _format_time(value: pd.Timestamp | None) -> str:
    return "" if pd.isna(value) else pd.Timestamp(value).isoformat(timespec="milliseconds")


def _curves_table(metrics: pd.DataFrame, keys: dict[str, int]) -> pd.DataFrame:
    """curves.csv: one row per run and step (a second row where a metric has two points at
    one step), runs in the metrics frame's order, one column per curve metric."""
    points = metrics[metrics["metric"].map(is_curve_metric)]
    named = [m for m in CURVE_METRICS if (points["metric"] == m).any()]
    columns = ["run", "step", *named, *sorted(set(points["metric"]) - set(named))]
    rows: dict[tuple[int, int, int], dict[str, str]] = {}
    seen: dict[tuple[int, int, str], int] = {}
    for run_id, metric, step, value in zip(
        points["run_id"], points["metric"], points["step"], points["value"], strict=True
    ):
        key = (keys[run_id], int(step))
        occurrence = seen.get((*key, metric), 0)
        seen[(*key, metric)] = occurrence + 1
        row = rows.setdefault((*key, occurrence), {"run": str(key[0]), "step": str(key[1])})
        row[metric] = format_number(value)
    order = list(dict.fromkeys(keys[r] for r in points["run_id"]))
    position = {run: index for index, run in enumerate(order)}
    ordered = sorted(rows.items(), key=lambda item: (position[item[0][0]], *item[0][1:]))
    return pd.DataFrame([row for _, row in ordered], columns=columns).fillna("")


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


def read_results(folder: str | Path) -> tuple[AblationData, AdaptiveRecord | None]:
    """The ablation of a folder :func:`write_results` wrote, and its adaptive record (None
    for a fixed-seed ablation). Reads no MLflow store.

    Raises:
        ResultsFolderError: no such folder, or a file missing or malformed (one line).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ResultsFolderError(f"no results folder at {folder} (make export writes one)")
    if not (folder / ABLATION_FILE).is_file():
        raise ResultsFolderError(f"{folder} is not an exported results folder: no {ABLATION_FILE}")
    header = _read_header(folder / ABLATION_FILE)
    configs = header["configs"]
    runs, by_key, run_params = _read_runs(folder / RUNS_FILE, configs, header["seed_param"])
    metrics = _read_curves(folder / CURVES_FILE, runs, by_key)
    _check_final_returns(folder / RUNS_FILE, runs, metrics, by_key)
    if header["params_run"] is not None:
        params_run = by_key.get(header["params_run"])
        if params_run is None:
            raise ResultsFolderError(f"{folder / ABLATION_FILE}: params_run is not a run")
        params = run_params.get(params_run["run_id"], {})
    else:
        params = dict(header.get("params") or {})
    data = AblationData(
        header["experiment"],
        header["experiment_id"],
        header["parent_run_id"],
        runs,
        metrics,
        params,
        reference=header["reference"],
        arm_order=tuple(header["arm_order"]),
        tasks=tuple(header["tasks"]),
        planned_seeds={arm: int(n) for arm, n in header["planned_seeds"].items()},
        run_params=run_params,
        provenance=tuple(str(line) for line in header.get("provenance", [])),
    )
    return data, _read_adaptive(folder, header["adaptive"])


@contextmanager
def _reading(where: str | Path) -> Iterator[None]:
    """Turn whatever a malformed file raises into a one-line ResultsFolderError saying where
    (a file, or a file's line)."""
    try:
        yield
    except ResultsFolderError:
        raise
    except FileNotFoundError:
        raise ResultsFolderError(f"{where} is missing") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
        text = str(error).strip().splitlines()
        raise ResultsFolderError(f"{where}: {text[0] if text else type(error).__name__}") from None


def _read_header(path: Path) -> dict:
    with _reading(path):
        header = json.loads(path.read_text())
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ResultsFolderError(f"{path} is not the header of an exported results folder")
    if not isinstance(header.get("version"), int) or header["version"] > VERSION:
        raise ResultsFolderError(
            f"{path}: format version {header.get('version')!r}; this code reads up to {VERSION}"
        )
    required = ("experiment", "experiment_id", "parent_run_id", "reference", "arm_order")
    required += ("tasks", "planned_seeds", "params_run", "seed_param", "configs", "adaptive")
    missing = [key for key in required if key not in header]
    if missing:
        raise ResultsFolderError(f"{path}: missing {', '.join(missing)}")
    kinds = {"arm_order": list, "tasks": list, "planned_seeds": dict, "configs": list}
    kinds |= {"params_run": (int, type(None)), "adaptive": (dict, type(None))}
    wrong = [key for key, kind in kinds.items() if not isinstance(header[key], kind)]
    wrong += [] if all(isinstance(c, dict) for c in header["configs"]) else ["configs"]
    adaptive = header["adaptive"]
    if adaptive is not None and not all(
        isinstance(adaptive.get(k), dict) for k in ("params", "tags")
    ):
        wrong.append("adaptive")
    if wrong:
        raise ResultsFolderError(f"{path}: malformed {', '.join(wrong)}")
    return header


def _read_table(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    """A CSV file as text cells (empty cells stay empty), with its required columns."""
    with _reading(path):
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [column for column in required if column not in table]
    if missing:
        raise ResultsFolderError(f"{path}: missing column(s) {', '.join(missing)}")
    return table


def _read_runs(
    path: Path, configs: list[dict[str, str]], seed_param: str | None
) -> tuple[pd.DataFrame, dict[int, dict], dict[str, dict[str, str]]]:
    """The runs frame, each run's row by its number, and each run's config by run id."""
    table = _read_table(path, RUNS_FILE_COLUMNS)
    if table.empty:
        raise ResultsFolderError(f"{path} holds no runs")
    rows, by_key, run_params = [], {}, {}
    for line, record in enumerate(table.to_dict("records"), start=2):
        with _reading(f"{path} line {line}"):
            row: dict[str, object] = {c: record[c] for c in RUNS_COLUMNS}
            row["seed"] = int(record["seed"])
            for column in FLOAT_COLUMNS:
                row[column] = float(record[column]) if record[column] else np.nan
            row["final_step"] = int(record["final_step"]) if record["final_step"] else np.nan
            for column in TIME_COLUMNS:
                text = record[column]  # ISO 8601 to MLflow's milliseconds, and on as MLflow's
                row[column] = run_time(
                    (pd.Timestamp(text) - EPOCH) // MILLISECOND if text else None
                )
            key = int(record["run"])
            if key in by_key:
                raise ValueError(f"run {key} is listed twice")
            row["recorded_final_return"] = float(record["final_return"] or "nan")
            if record["config"]:
                config = dict(configs[int(record["config"])])
                if seed_param is not None:
                    config[seed_param] = record["seed"]
                run_params[record["run_id"]] = config
        rows.append(row)
        by_key[key] = row
    return runs_frame(rows), by_key, run_params


def _check_final_returns(
    path: Path, runs: pd.DataFrame, metrics: pd.DataFrame, by_key: dict[int, dict]
) -> None:
    """runs.csv's ``final_return`` must be what the report computes from curves.csv: the
    folder is refused (naming the first run that differs) rather than reported with a
    README or a table that says something else than its curves.

    Raises:
        ResultsFolderError: a run's written final return differs from its curve's.
    """
    scores = summary.per_run_scores(runs, metrics)
    computed = dict(zip(scores["run_id"], scores["final_return"], strict=True))
    for key, row in by_key.items():
        written, value = row["recorded_final_return"], computed[row["run_id"]]
        both_missing = math.isnan(written) and math.isnan(value)
        if not (both_missing or math.isclose(written, value, rel_tol=1e-9, abs_tol=1e-9)):
            raise ResultsFolderError(
                f"{path}: run {key} ({row['run_name']}) has final_return "
                f"{format_number(written)}, but its eval curve in {CURVES_FILE} gives "
                f"{format_number(value)} (mean eval return over the last 10% of training)"
            )


def _read_curves(path: Path, runs: pd.DataFrame, by_key: dict[int, dict]) -> pd.DataFrame:
    """The metrics frame: every run's points (runs in curves.csv's order, then those without
    points), through the MLflow reader's own frame builders."""
    table = _read_table(path, ("run", "step"))
    metric_columns = [c for c in table.columns if c not in ("run", "step")]
    points: dict[int, list[tuple[str, int, float]]] = {}
    for line, record in enumerate(table.to_dict("records"), start=2):
        with _reading(f"{path} line {line}"):
            key, step = int(record["run"]), int(record["step"])
            if key not in by_key:
                raise ValueError(f"run {key} is not in runs.csv")
            run_points = points.setdefault(key, [])
            for metric in metric_columns:
                if record[metric]:
                    run_points.append((metric, step, float(record[metric])))
    order = [*points, *(key for key in by_key if key not in points)]
    frames = []
    for key in order:
        row = by_key[key]
        ordered = sorted(points.get(key, []), key=lambda point: point[0])  # as MLflow's: by name
        frames.append(run_metrics_frame(row["run_id"], row["arm"], row["seed"], ordered))
    return concat_metrics(frames)


def _read_adaptive(folder: Path, adaptive: dict | None) -> AdaptiveRecord | None:
    if adaptive is None:
        return None
    interims = no_interims()
    path = folder / DECISIONS_FILE
    if path.exists():
        with _reading(path):
            interims = pd.read_csv(path, float_precision="round_trip")
        missing = [c for c in DECISIONS_COLUMNS if c not in interims]
        if missing:
            raise ResultsFolderError(f"{path}: missing column(s) {', '.join(missing)}")
    with _reading(folder / ABLATION_FILE):
        return adaptive_record(adaptive["params"], adaptive["tags"], interims)
