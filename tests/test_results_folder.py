"""Results folders (analysis/results.py, analysis/export.py): the folder reads back as the MLflow
reader reads the store, numbers round-trip bit for bit, the report built from either source is
the same, and the commands refuse bad input with one line and write nothing.

On a real MLflow store holding a small synthetic ablation with the awkward cases: a FAILED run
that logged nothing, a FAILED run with one point, two points of one metric at one step, a NaN
point, tags with commas, quotes and a newline, a metric the report never reads. The real
runner's round trip over several tasks is tests/test_results_e2e.py."""

from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from pandas.testing import assert_frame_equal
from pypdf import PdfReader

from ablations.adaptive import AdaptiveRule, interim_runs, record_interim, record_rule
from ablations.plan.spec import AblationSpec
from ablations.tracking.store import AblationStore
from agent.config import flatten, make_config
from analysis import export, results
from analysis.decisions import load_adaptive
from analysis.load import AblationData, load_ablation
from analysis.results import format_number, read_results, write_results
from reports import build

EXPERIMENT = "portable"
STEPS = range(0, 1001, 200)
SCORE_TAGS = {
    "score.random": "23.7",
    "score.best": "500",
    "score.kind": "max",
    "score.source": 'CartPole-v1: "max", 500; random measured here',
}


def log_child(
    client: MlflowClient,
    experiment_id: str,
    parent_id: str,
    arm: str,
    seed: int,
    rng: np.random.Generator,
    steps: range | list[int] = STEPS,
    status: str = "FINISHED",
    extra_tags: dict[str, str] | None = None,
) -> str:
    """A child run as the runner records one (tags, flattened config as params), with every
    metric the report reads and one it does not, at full float64 precision."""
    tags = {"mlflow.parentRunId": parent_id, "ablation.role": "child", "arm": arm}
    tags |= {"schedule": arm, "starts": "last", "seed": str(seed), "env": "cartpole"}
    tags |= {"task": "cartpole", "preset": "debug", "device": "cpu", "cpu_count": "2"}
    tags |= {"hardware": "CPU only; x86_64, 2 cores", **SCORE_TAGS, **(extra_tags or {})}
    run = client.create_run(experiment_id, run_name=f"{arm}-seed{seed}", tags=tags)
    config = make_config("cartpole", "debug", {"train.schedule": arm, "train.seed": seed})
    now = int(time.time() * 1000)
    metrics = []
    for index, step in enumerate(steps):
        values = {
            "eval/return": 100 + step / 5 + rng.normal(0, 20),
            "time/total": (index + 1) * (2.0 + rng.random()),
            "time/collect": 0.1 * rng.random(),
            "time/wm": 0.5 + rng.random(),
            "time/ac": 0.3 + rng.random(),
            "time/other": 0.01 * rng.random(),
            "progress/iterations": 10.0 * (index + 1),
            "progress/wm_updates": 80.0 * (index + 1),
            "diversity/h_dispersion": 0.7 + 0.1 * rng.random(),
            "diversity/latent_entropy": 2.0 + rng.random(),
            "loss/wm": 5.0 * rng.random(),  # not read by the report: not exported
        }
        if arm == "separate":
            values["time/starts"] = 0.2 + rng.random()
        metrics += [Metric(key, float(value), now, step) for key, value in values.items()]
    if len(steps) > 1:
        metrics.append(Metric("system/load_avg_mean", 1.0 + rng.random(), now, steps[-1]))
    params = [Param(k, str(v)) for k, v in flatten(config).items()]
    for start in range(0, len(params), 100):
        client.log_batch(run.info.run_id, params=params[start : start + 100])
    client.log_batch(run.info.run_id, metrics=metrics)
    client.set_terminated(run.info.run_id, status)
    return run.info.run_id


def new_ablation(root: Path, name: str = EXPERIMENT) -> tuple[MlflowClient, str, str, str]:
    """A store under ``root`` holding a parent run: ``(client, uri, experiment id, parent id)``."""
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment(name, artifact_location=str(root / "artifacts"))
    tags = {"ablation.role": "parent", "reference": "separate", "arms": "separate,coupled"}
    tags |= {"tasks": "cartpole", "planned_seeds": "separate:4,coupled:4"}
    parent = client.create_run(experiment_id, run_name=name, tags=tags)
    return client, uri, experiment_id, parent.info.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """2 arms x 3 finished seeds plus the awkward runs; exported by the CLI; reported from
    the store and from the folder."""
    root = tmp_path_factory.mktemp("store")
    client, uri, experiment_id, parent_id = new_ablation(root)
    rng = np.random.default_rng(3)
    ids = {}
    for seed in range(3):  # seed by seed, arms interleaved, as the runner trains them
        for arm in ("separate", "coupled"):
            extra = {"hardware": 'CPU "x", 2 cores\nsecond line'} if seed == 2 else None
            ids[f"{arm}-seed{seed}"] = log_child(
                client, experiment_id, parent_id, arm, seed, rng, extra_tags=extra
            )
    run = ids["separate-seed0"]  # two points at one step, as a metric logged twice would be
    client.log_metric(run, "eval/return", 123.456789012345, step=400)
    client.log_metric(ids["coupled-seed1"], "diversity/h_dispersion", float("nan"), step=600)
    client.log_metric(ids["coupled-seed1"], "diversity/h_dispersion", float("inf"), step=800)
    ids["coupled-seed3"] = log_child(
        client, experiment_id, parent_id, "coupled", 3, rng, steps=[], status="FAILED"
    )
    no_references = {key: "" for key in SCORE_TAGS}
    ids["separate-seed3"] = log_child(
        client, experiment_id, parent_id, "separate", 3, rng, [200], "FAILED", no_references
    )
    out = root / "results" / EXPERIMENT
    code = export.main(["--experiment", EXPERIMENT, "--out", str(out), "--tracking-uri", uri])
    assert code == 0
    store_pdf = build.build_report(EXPERIMENT, uri, root / "from_store", n_resamples=300)
    folder_pdf = build.report_from_folder(out, root / "from_folder", n_resamples=300)
    pdfs = (store_pdf, folder_pdf)
    return {"uri": uri, "client": client, "ids": ids, "out": out, "root": root, "pdfs": pdfs}


def test_the_folder_reads_back_what_the_store_holds(store: dict) -> None:
    mlflow = load_ablation(EXPERIMENT, store["uri"])
    folder, adaptive = read_results(store["out"])
    assert adaptive is None
    assert_frame_equal(folder.runs, mlflow.runs)
    read = mlflow.metrics[mlflow.metrics["metric"].map(results.is_curve_metric)]
    assert_frame_equal(folder.metrics, read.reset_index(drop=True))
    assert "loss/wm" in set(mlflow.metrics["metric"]) - set(folder.metrics["metric"])
    for name in ("experiment", "experiment_id", "parent_run_id", "params", "run_params"):
        assert getattr(folder, name) == getattr(mlflow, name), name
    for name in ("reference", "arm_order", "tasks", "planned_seeds"):
        assert getattr(folder, name) == getattr(mlflow, name), name
    # The awkward cases came through: two values at one step, NaN and the largest float (as
    # MLflow stores inf), a run without points, a tag with quotes, a comma and a newline.
    points = folder.metrics[folder.metrics["run_id"] == store["ids"]["separate-seed0"]]
    assert (points[points["metric"] == "eval/return"]["step"] == 400).sum() == 2
    h = folder.metrics[folder.metrics["metric"] == "diversity/h_dispersion"]["value"]
    assert h.isna().sum() == 1 and (h == np.finfo(float).max).sum() == 1  # MLflow's inf
    failed = folder.runs.set_index("run_name").loc["coupled-seed3"]
    assert failed["status"] == "FAILED" and np.isnan(failed["final_step"])
    assert folder.runs.set_index("run_name").loc["coupled-seed2", "hardware"].endswith("line")


def test_configs_are_stored_once_per_arm_and_the_seed_comes_from_the_run(store: dict) -> None:
    header = json.loads((store["out"] / "ablation.json").read_text())
    assert len(header["configs"]) == 2  # separate and coupled; the 8 runs differ by seed only
    assert header["seed_param"] == "train.seed"
    assert all("train.seed" not in config for config in header["configs"])
    runs = pd.read_csv(store["out"] / "runs.csv", dtype=str, keep_default_na=False)
    assert sorted(set(runs["config"])) == ["0", "1"]


def test_runs_csv_scores_equal_a_computation_from_the_store(store: dict) -> None:
    """final_return, normalized_score and updates_per_s recomputed by plain loops over the
    store's metric histories and tags."""
    client = store["client"]
    runs = pd.read_csv(store["out"] / "runs.csv", keep_default_na=False, dtype=str)
    assert list(runs.columns[:8]) == ["run", "task", "arm", "seed", "status"] + [
        "final_return",
        "normalized_score",
        "updates_per_s",
    ]
    for row in runs.itertuples():
        run = client.get_run(row.run_id)
        history = {key: client.get_metric_history(row.run_id, key) for key in run.data.metrics}
        if not history:
            assert row.final_return == row.normalized_score == row.updates_per_s == ""
            continue
        last = max(p.step for points in history.values() for p in points)
        evals = sorted((p.step, p.value) for p in history["eval/return"])
        window = [value for step, value in evals if step >= 0.9 * last] or [evals[-1][1]]
        final = sum(window) / len(window)
        assert float(row.final_return) == pytest.approx(final, rel=1e-12)
        random, best = run.data.tags["score.random"], run.data.tags["score.best"]
        if random:
            normalised = (final - float(random)) / (float(best) - float(random))
            assert float(row.normalized_score) == pytest.approx(normalised, rel=1e-12)
        else:
            assert row.normalized_score == ""
        updates = max(history["progress/wm_updates"], key=lambda p: p.step).value
        seconds = max(history["time/total"], key=lambda p: p.step).value
        assert float(row.updates_per_s) == pytest.approx(updates / seconds, rel=1e-12)


def test_the_report_from_the_folder_is_the_report_from_the_store(store: dict) -> None:
    """Every table (CSV) and figure (PNG) byte for byte, and every page's text."""
    store_pdf, folder_pdf = store["pdfs"]
    for kind in ("tables", "figures"):
        one = store["root"] / "from_store" / EXPERIMENT / kind
        other = store["root"] / "from_folder" / EXPERIMENT / kind
        names = sorted(os.listdir(one))
        assert names == sorted(os.listdir(other)) and len(names) >= 5
        same, different, errors = filecmp.cmpfiles(one, other, names, shallow=False)
        assert (different, errors) == ([], []), (kind, different, errors)
    assert pdf_pages(store_pdf) == pdf_pages(folder_pdf)
    assert "2 of 8 runs did not finish" in pdf_pages(folder_pdf)[0]


def test_numbers_round_trip_bit_for_bit() -> None:
    """Random bit patterns over every exponent, and the edge values."""
    rng = np.random.default_rng(0)
    values = rng.integers(0, 2**64, 20_000, dtype=np.uint64).view(np.float64).tolist()
    values += [0.0, -0.0, 0.1, 1e-300, 5e-324, 2.0**53, 2.0**53 + 2, -(2.0**60), 1e16, 123.0]
    values += [float("inf"), float("-inf"), 1 / 3, 100.0, -7.0]
    for value in values:
        text = format_number(value)
        back = float(text)
        if np.isnan(value):
            assert np.isnan(back)
        else:
            assert struct.pack("<d", back) == struct.pack("<d", value), (value, text)
    assert format_number(100.0) == "100" and format_number(-0.0) == "-0.0"
    assert format_number(0.1) == "0.1" and format_number(float("nan")) == "nan"


def test_the_export_prints_its_runs_and_size(store: dict, capsys: pytest.CaptureFixture) -> None:
    out = store["root"] / "again"
    code = export.main(
        ["--experiment", EXPERIMENT, "--out", str(out), "--tracking-uri", store["uri"]]
    )
    assert code == 0
    size = sum(path.stat().st_size for path in out.iterdir())
    assert capsys.readouterr().out.strip() == f"{out}: 8 runs, {size:,} bytes"
    files = ["ablation.json", "cautions.txt", "curves.csv", "runs.csv"]
    assert sorted(p.name for p in out.iterdir()) == files


def test_the_folder_lists_every_caution_the_report_raises(store: dict) -> None:
    """cautions.txt holds the report's whole list (its pages show only the first few)."""
    lines = (store["out"] / "cautions.txt").read_text().splitlines()
    assert lines[0] == f"# Cautions raised by the report of {EXPERIMENT}, one a line."
    for source in ("from_store", "from_folder"):
        tables = store["root"] / source / EXPERIMENT / "tables"
        speed = pd.read_csv(tables / "speed_cautions.csv", keep_default_na=False)["caution"]
        assert [line for line in lines[1:] if line.startswith("speed: ")] == [
            "speed: " + " ".join(caution.split())
            for caution in speed  # one a line
        ]
    # The hardware tag of seed 2 differs from the others': at least that caution is there.
    assert any("different hardware" in line for line in lines), lines


def test_an_earlier_export_is_replaced_and_a_failed_write_leaves_it(
    store: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "results" / "x"
    data = load_ablation(EXPERIMENT, store["uri"])
    write_results(data, None, out)
    (out / "curves.csv").write_text("run,step\n")  # an older export's content
    write_results(data, None, out)
    assert filecmp.cmp(out / "curves.csv", store["out"] / "curves.csv", shallow=False)

    def fail(*args: object) -> None:
        raise OSError("no space left on device")

    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(results, "_curves_table", fail)
    with pytest.raises(OSError, match="no space"):
        write_results(data, None, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    with pytest.raises(OSError, match="no space"):
        write_results(data, None, tmp_path / "results" / "new")
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["x"]  # no temp folder left


def one_line_error(capsys: pytest.CaptureFixture) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if "INFO" not in line]
    assert len(err) == 1, err
    return err[0]


def test_export_refuses_with_one_line_and_writes_nothing(
    store: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    uri = store["uri"]
    out = tmp_path / "out"
    assert export.main(["--experiment", "portabel", "--out", str(out), "--tracking-uri", uri]) == 2
    line = one_line_error(capsys)
    assert "unknown experiment 'portabel'" in line and "did you mean 'portable'?" in line
    assert not out.exists()

    (tmp_path / "unfinished").mkdir()
    client, unfinished_uri, experiment_id, parent_id = new_ablation(tmp_path / "unfinished")
    rng = np.random.default_rng(0)
    log_child(client, experiment_id, parent_id, "separate", 0, rng, status="RUNNING")
    argv = ["--experiment", EXPERIMENT, "--out", str(out), "--tracking-uri", unfinished_uri]
    assert export.main(argv) == 2
    assert "has no finished runs yet (1 RUNNING)" in one_line_error(capsys)
    assert not out.exists()

    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert export.main(["--experiment", EXPERIMENT, "--out", str(out), "--tracking-uri", uri]) == 2
    assert "exists and is not an exported results folder" in one_line_error(capsys)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]

    absent = f"sqlite:///{tmp_path}/none/mlflow.db"
    assert export.main(["--out", str(tmp_path / "x"), "--tracking-uri", absent]) == 2
    assert "no MLflow store at" in one_line_error(capsys)
    assert not (tmp_path / "none").exists() and not (tmp_path / "x").exists()


def _drop_seed_column(folder: Path) -> None:
    runs = pd.read_csv(folder / "runs.csv", dtype=str, keep_default_na=False)
    runs.drop(columns="seed").to_csv(folder / "runs.csv", index=False)


def _bad_seed(folder: Path) -> None:
    runs = pd.read_csv(folder / "runs.csv", dtype=str, keep_default_na=False)
    runs.loc[1, "seed"] = "two"
    runs.to_csv(folder / "runs.csv", index=False)


def _unknown_run(folder: Path) -> None:
    curves = pd.read_csv(folder / "curves.csv", dtype=str, keep_default_na=False)
    curves.loc[0, "run"] = "99"
    curves.to_csv(folder / "curves.csv", index=False)


def _bad_number(folder: Path) -> None:
    curves = pd.read_csv(folder / "curves.csv", dtype=str, keep_default_na=False)
    curves.loc[2, "time/total"] = "1,5"
    curves.to_csv(folder / "curves.csv", index=False)


def _broken_json(folder: Path) -> None:
    (folder / "ablation.json").write_text('{"format": ')


def _other_json(folder: Path) -> None:
    (folder / "ablation.json").write_text('{"name": "something else"}')


def _newer_version(folder: Path) -> None:
    header = json.loads((folder / "ablation.json").read_text())
    (folder / "ablation.json").write_text(json.dumps(header | {"version": 99}))


def _configs_not_a_list(folder: Path) -> None:
    header = json.loads((folder / "ablation.json").read_text())
    (folder / "ablation.json").write_text(json.dumps(header | {"configs": "all"}))


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda f: shutil.rmtree(f), "no results folder at"),
        (lambda f: (f / "ablation.json").unlink(), "is not an exported results folder"),
        (lambda f: (f / "curves.csv").unlink(), "curves.csv is missing"),
        (lambda f: (f / "runs.csv").write_text(""), "runs.csv: No columns to parse"),
        (_drop_seed_column, "runs.csv: missing column(s) seed"),
        (_bad_seed, "runs.csv line 3: invalid literal for int() with base 10: 'two'"),
        (_unknown_run, "curves.csv line 2: run 99 is not in runs.csv"),
        (_bad_number, "curves.csv line 4: could not convert string to float: '1,5'"),
        (_broken_json, "ablation.json: Expecting value"),
        (_other_json, "ablation.json is not the header of an exported results folder"),
        (_newer_version, "format version 99; this code reads up to 1"),
        (_configs_not_a_list, "ablation.json: malformed configs"),
    ],
)
def test_a_missing_or_malformed_folder_is_one_line_and_writes_nothing(
    store: dict, tmp_path: Path, capsys: pytest.CaptureFixture, spoil, message: str
) -> None:
    folder = tmp_path / "results"
    shutil.copytree(store["out"], folder)
    spoil(folder)
    out = tmp_path / "out"
    assert build.main(["--from", str(folder), "--out", str(out)]) == 2
    line = one_line_error(capsys)
    assert line.startswith("error: ") and message in line, line
    assert not out.exists()


def test_from_takes_no_experiment(store: dict, capsys: pytest.CaptureFixture) -> None:
    assert build.main(["--from", str(store["out"]), "--experiment", EXPERIMENT]) == 2
    assert "FROM builds from the folder alone" in one_line_error(capsys)


def test_an_adaptive_ablation_carries_its_record_and_its_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two interims as the runner runs them (plan, record, create, finish, decide) on a real
    store, each run with real curves; the record and the adaptive page survive the export."""
    monkeypatch.chdir(tmp_path)  # the decisions artifact goes to ./mlruns beside a SQLite store
    uri = f"sqlite:///{tmp_path}/store.db"
    rule = AdaptiveRule(interim=3, max_seeds=6, alpha=0.05, reference="separate")
    spec = AblationSpec("cartpole", rule.seed_budget, ("separate", "coupled"), "debug", name="auto")
    store = AblationStore(uri, spec)
    record_rule(store, rule)
    rng = np.random.default_rng(5)
    for _interim in range(2):
        runs = interim_runs(spec, rule, uri)
        store.record_plan(runs)
        for run in runs:
            run_id = store.child_for(run, "cpu")[0]
            points = [
                Metric("eval/return", 50.0 * (run.arm == "coupled") + rng.normal(0, 30), 0, step)
                for step in (100, 200, 300)
            ]
            points += [Metric("time/total", 1.5 * step / 100, 0, step) for step in (100, 200, 300)]
            points.append(Metric("final/eval_return", points[2].value, 0, 300))
            store.client.log_batch(run_id, metrics=points)
            store.client.set_terminated(run_id, "FINISHED")
        record_interim(store, rule)
    mlflow = load_ablation("auto", uri)
    record = load_adaptive(uri, mlflow.parent_run_id)
    assert record is not None and len(record.interims) == 2

    out = tmp_path / "results" / "auto"
    write_results(mlflow, record, out)
    data, read = read_results(out)
    assert read is not None and (out / "decisions.csv").exists()
    assert (read.rule, read.status, read.tags) == (record.rule, record.status, record.tags)
    assert (
        read.tags["decision.coupled"]
        == store.client.get_run(mlflow.parent_run_id).data.tags["adaptive.decision.coupled"]
    )
    assert_frame_equal(read.interims, record.interims)
    assert_report_equal(mlflow, record, data, read, tmp_path)
    tables = tmp_path / "b" / "auto" / "tables"
    assert_frame_equal(pd.read_csv(tables / "adaptive_interims.csv"), record.interims)
    assert "Adaptive seeding" in pdf_pages(tmp_path / "b" / "auto.pdf")[1]


def assert_report_equal(
    one: AblationData, one_record, other: AblationData, other_record, root: Path
) -> None:
    """The same tables and figures, byte for byte, and the same pages' text."""
    first = build.write_report(one, one_record, root / "a", n_resamples=200)
    second = build.write_report(other, other_record, root / "b", n_resamples=200)
    for kind in ("tables", "figures"):
        names = sorted(os.listdir(root / "a" / one.experiment / kind))
        same, different, errors = filecmp.cmpfiles(
            root / "a" / one.experiment / kind, root / "b" / other.experiment / kind, names, False
        )
        assert (different, errors) == ([], []), (kind, different, errors)
    assert pdf_pages(first) == pdf_pages(second)


def pdf_pages(path: Path) -> list[str]:
    return [re.sub(r"\s+", " ", page.extract_text()) for page in PdfReader(path).pages]
