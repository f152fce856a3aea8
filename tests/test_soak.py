"""The soak (``make soak``): its checker counts exactly what was done to a copy of a finished
store, its options fail as one line, and a 3-fault campaign on both stores tallies zero."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from test_ablations import TINY, _cli_env

from analysis.load import load_ablation
from benchmarks.soak.__main__ import main, tally_line
from benchmarks.soak.check import Verdict, check_ablation, compare_run, is_timing

TALLY = re.compile(
    r"^soak: (\d+) faults \((\d+) kinds\), (\d+) reruns, (\d+) runs lost, (\d+) steps "
    r"duplicated, (\d+) steps missing, (\d+) runs differ from reference$"
)
PLANNED = ["separate-seed0", "coupled-seed0", "separate-seed1", "coupled-seed1"]


def _frame(rows: list[tuple[str, int, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["metric", "step", "value"])


def test_a_run_is_compared_point_by_point_timings_by_their_steps_only() -> None:
    reference = _frame(
        [("loss/wm", 50, 1.5), ("loss/wm", 100, 1.25), ("eval/return", 100, float("nan"))]
        + [("time/wm", 50, 0.2), ("time/wm", 100, 0.3)]
    )
    assert compare_run(reference, reference) == (0, 0, False)
    # Another machine's timings, the same values elsewhere (a NaN equals a NaN): the same run.
    retimed = reference.assign(value=[1.5, 1.25, float("nan"), 9.0, 9.0])
    assert compare_run(retimed, reference) == (0, 0, False)
    # One point logged three times: two duplicates, the value unchanged.
    tripled = pd.concat([reference, reference.iloc[[0, 0]]], ignore_index=True)
    assert compare_run(tripled, reference) == (2, 0, False)
    # A timing missing at its step counts as much as a value.
    assert compare_run(reference.drop(index=[1, 4]), reference) == (0, 2, False)
    # A value off by one ulp, a point the reference never logged: different runs.
    nudged = reference.assign(value=[1.5, 1.2500000000000002, float("nan"), 0.2, 0.3])
    assert compare_run(nudged, reference) == (0, 0, True)
    extra = pd.concat([reference, _frame([("loss/wm", 150, 1.0)])], ignore_index=True)
    assert compare_run(extra, reference) == (0, 0, True)
    assert is_timing("final/updates_per_s") and is_timing("system/load_avg_max")
    assert not is_timing("final/eval_return") and not is_timing("progress/wm_updates")


def test_the_tally_line_has_the_promised_format() -> None:
    verdict = Verdict(lost=1, duplicated=22, missing=3, differ=4)
    line = tally_line("soak", ["kill-driver", "kill-driver", "server-outage"], 5, verdict)
    assert TALLY.match(line).groups() == ("3", "2", "5", "1", "22", "3", "4")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--faults", "many"], "SOAK_FAULTS must be a whole number, got 'many'"),
        (["--faults", "-3"], "SOAK_FAULTS must be between 0 and 1000, got -3"),
        (["--faults", "5000"], "SOAK_FAULTS must be between 0 and 1000, got 5000"),
        (["--seed", "0.5"], "SOAK_SEED must be a whole number, got '0.5'"),
        (["--seed", "-1"], "SOAK_SEED must be 0 or more, got -1"),
        (["--seed-batch", "two"], "SOAK_SEED_BATCH must be a whole number, got 'two'"),
        (["--seed-batch", "0"], "SOAK_SEED_BATCH must be at least 1, got 0"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and not captured.out


@pytest.fixture(scope="module")
def finished_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 4-run CartPole ablation (report included) in a SQLite store."""
    folder = tmp_path_factory.mktemp("finished")
    args = ["--env", "cartpole", "--seeds", "2", "--steps", "300", "--experiment", "done"]
    args += ["--tracking-uri", f"sqlite:///{folder}/mlflow.db", "--jobs", "2", *TINY]
    run = subprocess.run(
        [sys.executable, "-m", "ablations", *args],
        cwd=folder,
        env=_cli_env(),
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return folder


def _copy(store: Path, to: Path) -> tuple[str, MlflowClient, dict[str, str]]:
    """A copy of the store's database (the artifacts stay shared): its URI, a client, and
    its run ids by name."""
    to.mkdir()
    shutil.copy(store / "mlflow.db", to / "mlflow.db")
    uri = f"sqlite:///{to}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("done").experiment_id
    runs = client.search_runs([experiment], "tags.`ablation.role` = 'child'")
    return uri, client, {run.info.run_name: run.info.run_id for run in runs}


def _sql(path: Path, statement: str, *values: object) -> int:
    with sqlite3.connect(path) as db:
        return db.execute(statement, values).rowcount


@pytest.mark.slow
def test_the_checker_counts_exactly_what_was_done_to_a_copy_of_a_finished_store(
    finished_store: Path, tmp_path: Path
) -> None:
    reference = load_ablation("done", f"sqlite:///{finished_store}/mlflow.db")
    clean_uri, _, _ = _copy(finished_store, tmp_path / "clean")
    assert check_ablation(clean_uri, "done", reference, PLANNED) == Verdict()

    uri, client, ids = _copy(finished_store, tmp_path / "damaged")
    database = tmp_path / "damaged" / "mlflow.db"
    # separate-seed0: three of its points logged once more (the same values), and a timing
    # changed (not a difference).
    history = client.get_metric_history(ids["separate-seed0"], "episode/return")[:3]
    assert len({point.step for point in history}) == 3
    again = [Metric(p.key, p.value, p.timestamp + 1, p.step) for p in history]
    client.log_batch(ids["separate-seed0"], metrics=again)
    changed = _sql(
        database,
        "UPDATE metrics SET value = value * 2 WHERE run_uuid = ? AND key = 'time/total'",
        ids["separate-seed0"],
    )
    assert changed > 0
    # coupled-seed0: deleted (the analysis no longer sees it).
    client.delete_run(ids["coupled-seed0"])
    # separate-seed1: one value altered.
    step = client.get_metric_history(ids["separate-seed1"], "loss/actor")[1].step
    assert (
        _sql(
            database,
            "UPDATE metrics SET value = value + 1e-9 WHERE run_uuid = ? AND key = ? AND step = ?",
            ids["separate-seed1"],
            "loss/actor",
            step,
        )
        == 1
    )
    # coupled-seed1: one evaluation and one timing point gone.
    for key in ("eval/return", "time/wm"):
        step = client.get_metric_history(ids["coupled-seed1"], key)[0].step
        removed = _sql(
            database,
            "DELETE FROM metrics WHERE run_uuid = ? AND key = ? AND step = ?",
            ids["coupled-seed1"],
            key,
            step,
        )
        assert removed == 1

    verdict = check_ablation(uri, "done", reference, PLANNED)
    assert (verdict.lost, verdict.duplicated, verdict.missing, verdict.differ) == (1, 3, 2, 1)
    assert verdict.problems == []


@pytest.mark.slow
def test_the_checker_names_a_run_left_running_a_second_parent_and_a_missing_report(
    finished_store: Path, tmp_path: Path
) -> None:
    reference = load_ablation("done", f"sqlite:///{finished_store}/mlflow.db")
    uri, client, ids = _copy(finished_store, tmp_path / "stuck")
    client.set_terminated(ids["coupled-seed1"], "RUNNING")
    experiment = client.get_experiment_by_name("done").experiment_id
    client.create_run(experiment, tags={"ablation.role": "parent"})
    verdict = check_ablation(uri, "done", reference, PLANNED)
    assert (verdict.lost, verdict.duplicated, verdict.missing, verdict.differ) == (1, 0, 0, 0)
    assert sorted(verdict.problems) == ["2 parent runs", "run coupled-seed1 left RUNNING"]

    uri, client, _ = _copy(finished_store, tmp_path / "no-report")
    (parent,) = client.search_runs([experiment], "tags.`ablation.role` = 'parent'")
    removed = _sql(
        tmp_path / "no-report" / "mlflow.db",
        "UPDATE runs SET artifact_uri = ? WHERE run_uuid = ?",
        str(tmp_path / "nowhere"),
        parent.info.run_id,
    )
    assert removed == 1
    verdict = check_ablation(uri, "done", reference, PLANNED)
    assert verdict.problems == ["no PDF report attached to the parent run"]


@pytest.mark.slow
@pytest.mark.parametrize("seed_batch", ["1", "2"])
def test_a_three_fault_soak_on_both_stores_tallies_zero(
    capsys: pytest.CaptureFixture[str], seed_batch: str
) -> None:
    code = main(["--faults", "3", "--seed", "0", "--seed-batch", seed_batch])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0, "\n".join(lines[-30:])
    match = TALLY.match(lines[-1])
    assert match, lines[-1]
    faults, kinds, _reruns, lost, duplicated, missing, differ = map(int, match.groups())
    assert faults == 3 and 1 <= kinds <= 3
    assert (lost, duplicated, missing, differ) == (0, 0, 0, 0)
    stores = [line for line in lines if re.match(r"^(sqlite|server): \d+ faults", line)]
    assert [line.split(":")[0] for line in stores] == ["sqlite", "server"]
    assert re.match(r"^sqlite: 2 faults", stores[0]) and re.match(r"^server: 1 faults", stores[1])
