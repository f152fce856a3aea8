"""A study is a file: parsing, the runner flags it stands for, every mistake as one line
with exit 2 and nothing created, and the repository's own studies valid as they stand."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablations.cli import build_parser, main, spec_from_args
from ablations.plan.spec import ARMS
from ablations.plan.study import (
    expand_study,
    is_merged_study,
    known_studies,
    load_merged_study,
    load_study,
)
from agent.config import ConfigError, flatten
from tests.test_makefile import make

STUDY = """
description = "a two-task study"
preset = "debug"
arms = ["separate", "coupled", "coupled_refiltered"]
reference = "separate"
steps = 300
[adaptive]
interim = 3
max_seeds = 6
alpha = 0.1
[settings]
"train.train_ratio" = 16
"train.refilter_starts" = false
[tasks.cartpole]
[tasks.pendulum]
steps = 400
"ac.actor_lr" = 1e-4
"""


def test_a_study_stands_for_the_runner_flags_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "two.toml"
    path.write_text(STUDY)
    assert expand_study(["--study", str(path), "--jobs", "2"]) == [
        "--env", "cartpole,pendulum", "--arms", "separate,coupled,coupled_refiltered",
        "--preset", "debug", "--experiment", "two", "--reference", "separate",
        "--seeds", "auto", "--interim", "3", "--max-seeds", "6", "--alpha", "0.1",
        "--steps", "300", "--set", "train.train_ratio=16", "--set", "train.refilter_starts=false",
        "--task-set", "pendulum:ac.actor_lr=0.0001", "--task-set", "pendulum:train.steps=400",
        "--jobs", "2",
    ]  # fmt: skip
    # EXPERIMENT= names the experiment instead of the study.
    renamed = expand_study([f"--study={path}", "--experiment", "other"])
    assert renamed.count("--experiment") == 1 and renamed[-1] == "other"
    assert expand_study(["--env", "cartpole"]) == ["--env", "cartpole"]  # no study, unchanged

    spec, rule = spec_from_args(build_parser().parse_args(expand_study(["--study", str(path)])))
    assert spec.name == "two" and spec.tasks == ("cartpole", "pendulum")
    assert rule is not None and (rule.interim, rule.max_seeds, rule.alpha) == (3, 6, 0.1)
    assert rule.tasks == ("cartpole", "pendulum")
    configs = {(run.env, run.arm): run.config() for run in spec.runs()}
    assert configs["cartpole", "separate"].train.steps == 300
    assert configs["pendulum", "coupled"].train.steps == 400
    assert configs["pendulum", "coupled"].ac.actor_lr == pytest.approx(1e-4)
    assert configs["cartpole", "coupled"].ac.actor_lr != pytest.approx(1e-4)
    assert configs["pendulum", "coupled"].train.train_ratio == 16
    # The arm's own values come last: the control arm re-filters whatever the settings say.
    assert configs["cartpole", "coupled_refiltered"].train.refilter_starts is True
    assert configs["cartpole", "coupled"].train.refilter_starts is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "no study file"),
        ("arms = [", "not valid TOML"),
        ("budget = 3\n" + STUDY, "unknown key(s) budget"),
        (STUDY.replace("[adaptive]", "seeds = 3\n[adaptive]"), "give either 'seeds = <n>'"),
        (
            STUDY.replace("interim = 3\nmax_seeds = 6\nalpha = 0.1\n", "").replace(
                "[adaptive]\n", ""
            ),
            "give either 'seeds = <n>'",
        ),  # fmt: skip
        (STUDY.replace("steps = 300", "steps = -3"), "'steps' must be a positive whole number"),
        (STUDY.replace("steps = 400", "steps = 4.5"), "'steps' must be a positive whole number"),
        (
            STUDY.replace('arms = ["separate", "coupled", "coupled_refiltered"]', "arms = []"),
            "'arms' must be a non-empty list",
        ),  # fmt: skip
        (STUDY.replace("interim = 3", "interims = 3"), "unknown key 'interims' in [adaptive]"),
        (STUDY.replace("alpha = 0.1", 'alpha = "a"'), "[adaptive] alpha must be a number"),
        (
            STUDY.replace("[tasks.cartpole]\n[tasks.pendulum]", "[tasks.cartpole]\n[tasks.nope]"),
            "unknown env 'nope'",
        ),  # fmt: skip
        (STUDY.replace('"train.train_ratio" = 16', '"train.ratio" = 16'), "train.ratio"),
        (STUDY.replace('"ac.actor_lr" = 1e-4', '"ac.actor_lr" = -1'), "actor_lr"),
        (STUDY.replace('"coupled_refiltered"', '"coupled_stale"'), "unknown arm(s) coupled_stale"),
        (STUDY.replace("interim = 3", "interim = 1"), "INTERIM must be 2 or more"),
        (STUDY.replace("[settings]", "settings = 3\n[x]"), "unknown key(s) x"),
    ],
)
def test_a_bad_study_is_one_line_exit_2_and_nothing_created(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    text: str | None,
    message: str,
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = tmp_path / "bad.toml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(SystemExit) as stop:
        main(["--study", str(path), "--no-report"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert list(work.iterdir()) == []


def test_flags_a_study_sets_cannot_be_given_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "two.toml"
    path.write_text(STUDY)
    with pytest.raises(ConfigError, match="drop --seeds, --env"):
        expand_study(["--study", str(path), "--seeds", "3", "--env=cartpole"])
    with pytest.raises(ConfigError, match="give one STUDY"):
        expand_study(["--study", str(path), "--study", str(path)])


def test_make_study_names_the_studies_when_one_is_unknown(tmp_path: Path) -> None:
    result = make("study", "STUDY=nope", cwd=tmp_path)
    assert result.returncode != 0
    line = result.stderr.strip().splitlines()[-2]  # make adds its own last line
    assert "no study file" in line and "nope.toml" in line
    assert all(name in line for name in known_studies())
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", known_studies())
def test_the_repositorys_studies_are_valid_as_they_stand(name: str) -> None:
    if is_merged_study(name):
        merged = load_merged_study(name)
        assert all(part in known_studies() for part in merged.parts)
        return
    study = load_study(name)
    spec, _ = spec_from_args(build_parser().parse_args(expand_study(["--study", name])))
    assert spec.name == name and spec.tasks == study.tasks


def study_configs(name: str) -> dict[tuple[str, str], dict]:
    spec, _ = spec_from_args(build_parser().parse_args(expand_study(["--study", name])))
    return {(run.env, run.arm): flatten(run.config()) for run in spec.runs() if run.seed == 0}


def test_the_starts_all_study_trains_what_cpu_classic_trains_but_the_start_set():
    # The merge of the two rests on it: the same tasks' configs, key for key, except the
    # arm's own keys (checked again on the recorded configs when the merge is published).
    last, every = study_configs("cpu_classic"), study_configs("cpu_classic_all")
    assert {task for task, _ in every} == {"cartpole", "pendulum"}
    for (task, arm), config in every.items():
        schedule = ARMS[arm]["train.schedule"]
        twin = last[task, schedule]  # the same schedule with starts=last
        differing = {k for k in config if config[k] != twin[k]}
        assert differing == {"train.starts"}, (task, arm, differing)
        assert config["train.starts"] == "all" and twin["train.starts"] == "last"


def test_a_dry_run_prints_the_runs_and_the_estimate_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "dry.toml"
    path.write_text(STUDY.replace("[tasks.pendulum]\nsteps = 400", "[tasks.pendulum]\nsteps = 300"))
    result = make("study", f"STUDY={path}", "DRY=1", "JOBS=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "dry run of ablation 'dry': 18 runs (2 tasks x separate, coupled, " in out
    assert "coupled_refiltered x seeds 0..2)" in out
    assert "cartpole: 300 agent steps per run" in out
    assert "up to 36 runs (6 seeds per arm)" in out
    assert out.count("estimated duration: ") == 2
    assert out.rstrip().endswith("dry run: nothing created")
    assert "ablations.publish" not in out  # publishing is skipped too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dry.toml"]
