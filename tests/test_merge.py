"""Published studies merged into one ablation: the runs kept as they were, the configs and
the agent's code checked, one-line refusals."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ablations.plan.study import MergedStudy, load_merged_study, load_study
from ablations.publish import publish_merged
from agent.config import ConfigError
from analysis.load import AblationData
from analysis.merge import MergeError, Part, check_same_agent, merge
from analysis.results import read_results, write_results

PUBLISHED = Path(__file__).resolve().parent.parent / "results" / "cpu_classic"
ROOT = Path(__file__).resolve().parent.parent


def with_starts_all(data: AblationData, tasks: tuple[str, ...], shift: float) -> AblationData:
    """``data``'s runs of ``tasks`` as another study's starts=all arms: new run ids, arms
    renamed ``<arm>_all``, ``train.starts=all``, every eval return moved by ``shift``."""
    runs = data.runs[data.runs["task"].isin(tasks)].copy()
    ids = {old: uuid.uuid4().hex for old in runs["run_id"]}
    runs["run_id"] = runs["run_id"].map(ids)
    runs["arm"] = runs["arm"] + "_all"
    metrics = data.metrics[data.metrics["run_id"].isin(ids)].copy()
    metrics["run_id"] = metrics["run_id"].map(ids)
    metrics["arm"] = metrics["arm"] + "_all"
    is_eval = metrics["metric"] == "eval/return"
    metrics.loc[is_eval, "value"] = metrics.loc[is_eval, "value"] + shift
    params = {ids[r]: {**p, "train.starts": "all"} for r, p in data.run_params.items() if r in ids}
    return replace(
        data,
        experiment="fake_all",
        runs=runs,
        metrics=metrics,
        tasks=tasks,
        arm_order=tuple(f"{arm}_all" for arm in data.arm_order),
        planned_seeds={f"{a}_all": n for a, n in data.planned_seeds.items()},
        run_params=params,
        params={**data.params, "train.starts": "all"},
    )


@pytest.fixture(scope="module")
def published() -> tuple[AblationData, object]:
    return read_results(PUBLISHED)


def test_a_merged_folder_keeps_every_shared_run_as_it_was(tmp_path, published):
    data, adaptive = published
    shutil.copytree(PUBLISHED, tmp_path / "cpu_classic")
    fake = with_starts_all(data, ("cartpole", "pendulum"), shift=10.0)
    write_results(fake, None, tmp_path / "fake_all")
    study = MergedStudy("both", ("cpu_classic", "fake_all"), "separate", "a 2x2")

    out = publish_merged(study, tmp_path / "both", root=tmp_path)

    merged, merged_adaptive = read_results(out)
    assert merged_adaptive is None
    assert merged.arm_order == ("separate", "coupled", "separate_all", "coupled_all")
    assert merged.tasks == ("cartpole", "pendulum")
    runs = pd.read_csv(out / "runs.csv", dtype=str)
    original = pd.read_csv(PUBLISHED / "runs.csv", dtype=str)
    kept = original[original["task"].isin(["cartpole", "pendulum"])]
    assert len(runs) == 2 * len(kept) == 80
    columns = ["run_id", "final_return", "normalized_score", "updates_per_s"]
    mine = runs[runs["run_id"].isin(kept["run_id"])].set_index("run_id")[columns[1:]]
    assert mine.sort_index().equals(kept.set_index("run_id")[columns[1:]].sort_index())
    # The other study's final returns are the published ones moved by the shift.
    fake_runs = runs[runs["arm"].str.endswith("_all")]
    assert len(fake_runs) == 40
    by_key = kept.set_index(["task", "arm", "seed"])["final_return"].astype(float)
    for row in fake_runs.itertuples():
        expected = by_key[(row.task, row.arm.removesuffix("_all"), row.seed)] + 10.0
        assert float(row.final_return) == pytest.approx(expected)
    # Each study says what it ran; cpu_classic's task the other lacks is named.
    text = "\n".join(merged.provenance)
    assert "cpu_classic: arms separate, coupled; code at 3689fbf" in text
    assert "dmc_cartpole_balance runs left out" in text
    assert "adaptive seeding decided at interim 2 of 2" in text
    assert (out / "report.pdf").stat().st_size > 0
    # The README answers with the factors first, recomputed here from runs.csv alone.
    readme = (out / "README.md").read_text()
    scores = runs.assign(score=runs["normalized_score"].astype(float))
    cell = scores.groupby(["task", "arm"])["score"].mean()
    starts = np.mean(
        [
            np.mean([cell[t, f"{a}_all"] - cell[t, a] for a in ("separate", "coupled")])
            for t in ("cartpole", "pendulum")
        ]
    )
    schedule = np.mean(
        [
            np.mean([cell[t, f"coupled{s}"] - cell[t, f"separate{s}"] for s in ("", "_all")])
            for t in ("cartpole", "pendulum")
        ]
    )
    assert f"- all - last: {starts:+.2f} [" in readme
    assert f"- coupled - separate: {schedule:+.2f} [" in readme
    assert "(coupled - separate | all) - (coupled - separate | last): +0.00 [" in readme
    assert readme.index("**The factors**") < readme.index("| arm | runs |")
    assert "**Speed, paired**" in readme and "**Diversity of the starts**" in readme


def test_a_config_that_differs_beyond_the_arms_keys_is_refused(published):
    data, _ = published
    fake = with_starts_all(data, ("cartpole",), shift=0.0)
    changed = next(iter(fake.run_params))
    fake.run_params[changed] = {**fake.run_params[changed], "train.train_ratio": "999"}
    with pytest.raises(MergeError, match=r"^cartpole: train.train_ratio is 256.0 in a but 999"):
        merge([Part("a", data), Part("b", fake)], "m", "separate")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("one", "merging needs at least two studies, got 1"),
        ("clash", "arm 'separate' is in more than one of the studies"),
        ("reference", "reference 'nope' is not an arm of"),
    ],
)
def test_merges_that_cannot_be_made_are_refused(published, change, message):
    data, _ = published
    fake = with_starts_all(data, ("cartpole",), shift=0.0)
    parts = {
        "one": [Part("a", data)],
        "clash": [Part("a", data), Part("b", data)],
        "reference": [Part("a", data), Part("b", fake)],
    }[change]
    with pytest.raises(MergeError, match=message):
        merge(parts, "m", "nope" if change == "reference" else "separate")


def git(repo: Path, *args: str) -> str:
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    done = subprocess.run(
        ["git", "-C", str(repo), *identity, *args], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_agent_code_must_be_the_same_at_every_commit(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "agent").mkdir()
    (tmp_path / "agent" / "core.py").write_text("x = 1\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "a")
    first = git(tmp_path, "rev-parse", "--short", "HEAD")
    (tmp_path / "README.md").write_text("docs only\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "b")
    docs = git(tmp_path, "rev-parse", "--short", "HEAD")
    check_same_agent([first, docs, first], tmp_path)  # agent/ unchanged: accepted

    (tmp_path / "agent" / "core.py").write_text("x = 2\n")
    git(tmp_path, "commit", "-qam", "c")
    code = git(tmp_path, "rev-parse", "--short", "HEAD")
    with pytest.raises(MergeError, match="agent/ differs between commits"):
        check_same_agent([first, code], tmp_path)
    with pytest.raises(MergeError, match="commit deadbee is unknown to git here"):
        check_same_agent([first, "deadbee"], tmp_path)


def test_the_published_studies_ran_the_same_agent_code():
    # cpu_classic and cpu_classic_all ran at these commits; their merge rests on this.
    check_same_agent(["3689fbf", "82152be"], ROOT)


def test_a_merged_study_file_is_published_not_run(tmp_path):
    study = load_merged_study("classic_2x2")
    assert study.parts == ("cpu_classic", "cpu_classic_all") and study.reference == "separate"
    with pytest.raises(ConfigError, match="merges the published studies .*make publish"):
        load_study("classic_2x2")
    bad = tmp_path / "bad.toml"
    bad.write_text('merge = ["a", "b"]\nreference = "separate"\npreset = "debug"\n')
    with pytest.raises(ConfigError, match="a merged study takes only"):
        load_merged_study(str(bad))


def test_publishing_a_merge_of_an_unpublished_study_is_one_line(tmp_path):
    study = tmp_path / "m.toml"
    study.write_text('merge = ["cpu_classic", "never_ran"]\nreference = "separate"\n')
    done = subprocess.run(
        [sys.executable, "-m", "ablations.publish", "--study", str(study), "--out",
         str(tmp_path / "out")],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: results/never_ran is not published: make study STUDY=never_ran first"
    ]
    assert not (tmp_path / "out").exists()
