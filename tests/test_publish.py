"""Publishing a study: the README's numbers rebuilt from ``runs.csv`` alone by an independent
computation (scipy's trimmed mean, a brute-force count of pairs, a plain geometric mean), on
a synthetic suite in a real MLflow store and on every study published in ``results/``."""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric
from scipy import stats as scipy_stats

from ablations.plan.study import Study
from ablations.publish import main, publish
from analysis.results import read_results
from reports.study_readme import readme_text
from tests.suite_store import child_tags, new_suite

REPO_ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = sorted(path.parent for path in (REPO_ROOT / "results").glob("*/runs.csv"))
ROW = re.compile(
    r"^\| `(?P<arm>[^`]+)` \| (?P<runs>\d+) \| (?P<seeds>\d+) \| (?P<iqm>[^|]+) \| "
    r"(?P<poi>[^|]+) \| (?P<ratio>[^|]+) \|$"
)
NUMBER = r"(-?[\d.]+(?:e[-+]?\d+)?)"


def readme_rows(folder: Path) -> dict[str, dict[str, str]]:
    """The README's answer table, one dict per arm."""
    rows = {}
    for line in (folder / "README.md").read_text().splitlines():
        match = ROW.match(line)
        if match:
            rows[match["arm"]] = match.groupdict()
    return rows


def window(run: pd.Series) -> tuple[float, float]:
    """The run's training window: [max(start, end - training seconds), end]."""
    end = pd.Timestamp(run["end_time"]).timestamp()
    return max(pd.Timestamp(run["start_time"]).timestamp(), end - run["wall_clock"]), end


def check_factor_lines(folder: Path) -> None:
    """A crossed study's README factors, recomputed from runs.csv: per task the cell means
    of the normalised score, each effect a contrast of them, averaged over the tasks."""
    text = (folder / "README.md").read_text()
    if "**The factors**" not in text:
        return
    header = json.loads((folder / "ablation.json").read_text())
    configs = header["configs"]
    runs = pd.read_csv(folder / "runs.csv")
    runs = runs[runs["status"] == "FINISHED"]
    levels = {}
    for arm in runs["arm"].unique():
        config = configs[int(runs.loc[runs["arm"] == arm, "config"].iloc[0])]
        levels[arm] = (config["train.schedule"], config["train.starts"])
    cell = runs.groupby(["task", "arm"])["normalized_score"].mean()
    arm_of = {value: arm for arm, value in levels.items()}
    tasks = sorted(runs["task"].unique())

    def effect(sign) -> float:
        return float(np.mean([
            sum(sign(*levels[arm]) * cell[task, arm] for arm in levels) / 2 for task in tasks
        ]))  # fmt: skip

    schedule = effect(lambda s, _: 1 if s == "coupled" else -1)
    starts = effect(lambda _, t: 1 if t == "all" else -1)
    interaction = 2 * effect(lambda s, t: (1 if s == "coupled" else -1) * (1 if t == "all" else -1))
    assert set(arm_of) == {(s, t) for s in ("separate", "coupled") for t in ("last", "all")}
    assert f"- coupled - separate: {schedule:+.2f} [" in text
    assert f"- all - last: {starts:+.2f} [" in text
    assert f"(coupled - separate | last): {interaction:+.2f} [" in text


def check_against_runs_csv(folder: Path) -> None:
    """Every number of the README's table, recomputed here from ``runs.csv``."""
    runs = pd.read_csv(folder / "runs.csv")
    runs = runs[runs["status"] == "FINISHED"]
    rows = readme_rows(folder)
    reference = next(arm for arm, row in rows.items() if row["poi"].strip() == "reference")
    assert set(rows) == set(runs["arm"])
    tasks = sorted(set(runs["task"]))
    for arm, row in rows.items():
        mine = runs[runs["arm"] == arm]
        assert int(row["runs"]) == len(mine) and int(row["seeds"]) == mine["seed"].nunique()
        iqm, low, high = (float(x) for x in re.match(rf"{NUMBER} \[{NUMBER}, {NUMBER}\]",
                                                     row["iqm"].strip()).groups())  # fmt: skip
        trimmed = scipy_stats.trim_mean(mine["normalized_score"].to_numpy(), 0.25)
        assert iqm == pytest.approx(trimmed, rel=1e-3, abs=1e-3)  # printed to 3 digits
        assert low <= iqm <= high
        if arm == reference:
            assert row["ratio"].strip() == "1"
            continue
        base = runs[runs["arm"] == reference]
        wins = []
        for task in tasks:  # P(a run of arm beats a run of the reference), ties half
            x = mine.loc[mine["task"] == task, "normalized_score"]
            y = base.loc[base["task"] == task, "normalized_score"]
            wins.append(np.mean([(a > b) + 0.5 * (a == b) for a in x for b in y]))
        poi = float(re.match(NUMBER, row["poi"].strip()).group(1))
        assert poi == pytest.approx(np.mean(wins), abs=6e-3)
        spans = [
            (min(w[0] for w in ws), max(w[1] for w in ws))
            for ws in ([window(r) for _, r in frame.iterrows()] for frame in (mine, base))
        ]
        if spans[0][1] < spans[1][0] or spans[1][1] < spans[0][0]:  # trained apart
            assert row["ratio"].strip() == "n/a", arm
            continue
        if "trained side by side" in (folder / "README.md").read_text():
            check_paired_ratio(row["ratio"], mine, base)
            continue
        ratios = [
            mine.loc[mine["task"] == task, "updates_per_s"].mean()
            / base.loc[base["task"] == task, "updates_per_s"].mean()
            for task in tasks
        ]
        geometric = math.exp(np.mean(np.log(ratios)))
        assert float(row["ratio"]) == pytest.approx(geometric, rel=6e-3)


def check_paired_ratio(cell: str, mine: pd.DataFrame, base: pd.DataFrame) -> None:
    """A paired README ratio, recomputed from runs.csv: the (task, seed) pairs whose training
    windows, [max(start, end - training seconds), end], overlap for half the shorter one;
    the geometric mean of their ratios and scipy's one-sample t interval of the log ratios."""
    ratio, low, high = (float(x) for x in re.match(rf"{NUMBER} \[{NUMBER}, {NUMBER}\]",
                                                   cell.strip()).groups())  # fmt: skip

    logs = []
    for _, run in mine.iterrows():
        ref = base[(base["task"] == run["task"]) & (base["seed"] == run["seed"])].iloc[0]
        (a0, a1), (b0, b1) = window(run), window(ref)
        if min(a1, b1) - max(a0, b0) >= 0.5 * min(a1 - a0, b1 - b0):
            logs.append(math.log(run["updates_per_s"] / ref["updates_per_s"]))
    interval = scipy_stats.ttest_1samp(logs, 0.0).confidence_interval(0.95)
    assert ratio == pytest.approx(math.exp(np.mean(logs)), rel=6e-3)
    assert low == pytest.approx(math.exp(interval.low), rel=6e-3)
    assert high == pytest.approx(math.exp(interval.high), rel=6e-3)


FINALS = {"cartpole": (23.7, 500.0), "pendulum": (-1207.6, 0.0)}


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-task x 3-arm x 4-seed synthetic study in a real store, published."""
    root = tmp_path_factory.mktemp("publish")
    arms = ("separate", "coupled", "coupled_refiltered")
    client, uri, experiment_id, parent_id = new_suite(root, "separate", arms, tuple(FINALS))
    rng = np.random.default_rng(0)
    for task, (random, best) in FINALS.items():
        for arm_index, arm in enumerate(arms):
            for seed in range(4):
                tags = child_tags(parent_id, task, arm, seed)
                tags |= {"score.random": repr(random), "score.best": repr(best)}
                run = client.create_run(
                    experiment_id, run_name=f"{task}/{arm}-seed{seed}", tags=tags
                )
                final = random + (best - random) * rng.uniform(0.2 + 0.1 * arm_index, 0.9)
                speed = (10.0 + arm_index) * (1 + 0.05 * seed)
                now = int(time.time() * 1000)
                metrics = []
                for index, step in enumerate(range(0, 1001, 100)):
                    metrics += [
                        Metric("eval/return", final * min(step / 900, 1.0), now, step),
                        Metric("time/total", float(index), now, step),
                        Metric("progress/wm_updates", speed * index, now, step),
                    ]
                client.log_batch(run.info.run_id, metrics=metrics)
                client.log_param(run.info.run_id, "train.seed", str(seed))
                client.set_terminated(run.info.run_id, "FINISHED")
    study = Study("tiny", tuple(FINALS), arms, "debug", description="a synthetic check")
    out = publish(study, "suite", root / "results" / "tiny", uri)
    return out


def test_a_published_readme_states_the_answer_first_and_its_numbers_rebuild_from_runs_csv(
    published: Path,
) -> None:
    assert sorted(path.name for path in published.iterdir()) == [
        "README.md", "ablation.json", "cautions.txt", "curves.csv", "report.pdf", "runs.csv",
    ]  # fmt: skip
    text = (published / "README.md").read_text().splitlines()
    assert text[0] == "# Study `suite`: a synthetic check"
    assert text[2].startswith("**Answer.** Over 2 task(s): ")
    assert "make study STUDY=tiny" in "\n".join(text)
    check_against_runs_csv(published)


def test_publishing_refuses_bad_input_in_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    uri = f"sqlite:///{tmp_path}/none.db"
    assert main(["--study", "nope", "--tracking-uri", uri]) == 2
    assert "no study file" in capsys.readouterr().err
    assert main(["--study", "cpu_classic", "--tracking-uri", uri]) == 2
    assert "no MLflow store" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("folder", PUBLISHED, ids=lambda path: path.name)
def test_every_published_study_rebuilds_from_its_runs_csv(folder: Path) -> None:
    check_against_runs_csv(folder)
    check_factor_lines(folder)
    assert sum(path.stat().st_size for path in folder.iterdir()) < 3 * 2**20


def test_a_republished_readme_states_the_paired_speed_of_runs_that_trained_side_by_side(
    tmp_path: Path,
) -> None:
    """cpu_classic ran each seed's two arms side by side: its README, written again by this
    code, gives the paired speed ratio with its CI, which runs.csv rebuilds independently."""
    folder = tmp_path / "cpu_classic"
    shutil.copytree(REPO_ROOT / "results" / "cpu_classic", folder)
    data, adaptive = read_results(folder)
    text = readme_text(data, adaptive, "cpu_classic", "cpu_classic")
    (folder / "README.md").write_text(text)
    assert "Speed ratio, paired:" in text and "30 of 30 pairs side by side" in text
    assert "`cautions.txt` (every caution the report raises)" in text
    check_against_runs_csv(folder)


def test_publishing_a_folder_again_keeps_its_data_byte_for_byte(tmp_path: Path) -> None:
    # make publish STUDY=cpu_classic FROM=results/cpu_classic: the report, README and
    # cautions rebuilt by this code, the runs, curves and decisions exactly as they were.
    from ablations.publish import main as publish_main

    published = Path(__file__).resolve().parent.parent / "results" / "cpu_classic"
    copy = tmp_path / "cpu_classic"
    shutil.copytree(published, copy)
    assert publish_main(["--study", "cpu_classic", "--from", str(copy)]) == 0
    for name in ("runs.csv", "curves.csv", "decisions.csv", "ablation.json"):
        assert (copy / name).read_bytes() == (published / name).read_bytes(), name
    assert (copy / "cautions.txt").is_file() and (copy / "report.pdf").stat().st_size > 0
    assert (copy / "README.md").read_text() == (published / "README.md").read_text()
