"""Tasks x arms x seeds: suites, env lists, user arms (TOML, --arm), GRID and REFERENCE."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from pypdf import PdfReader

from ablations.cli import main
from ablations.plan.arms import load_arms_file, parse_arm_flag, resolve_arms
from ablations.plan.spec import ARMS, AblationSpec
from ablations.plan.suites import SUITES
from agent.config import ENV_PRESETS, make_config
from agent.score_references import SCORE_REFERENCES
from tests.test_ablations import TINY, children, run_cli

ARMS_TOML = """
[coupled_r16]
"train.schedule" = "coupled"
"train.train_ratio" = 16

[separate_r16.train]
schedule = "separate"
train_ratio = 16
"""


def test_suites_name_existing_presets_with_score_references() -> None:
    assert SUITES["classic"] == ("cartpole", "acrobot", "pendulum")
    assert len(SUITES["atari100k"]) == 26 and "atari_space_invaders" not in SUITES["atari100k"]
    for suite in SUITES.values():
        for task in suite:
            assert task in ENV_PRESETS and task in SCORE_REFERENCES, task
    assert make_config("acrobot", "debug").env.id == "Acrobot-v1"
    pong = SCORE_REFERENCES["atari_pong"]
    assert (pong.random, pong.best, pong.kind) == (-20.7, 14.6, "human")
    assert pong.normalise(14.6) == pytest.approx(1.0) and pong.normalise(-20.7) == 0.0


def test_runs_are_seed_major_and_task_interleaved_with_task_names() -> None:
    spec = AblationSpec("cartpole", 2, preset="debug", tasks=("cartpole", "acrobot"))
    names = [run.name for run in spec.runs()]
    assert names == [
        "cartpole/separate-seed0",
        "cartpole/coupled-seed0",
        "acrobot/separate-seed0",
        "acrobot/coupled-seed0",
        "cartpole/separate-seed1",
        "cartpole/coupled-seed1",
        "acrobot/separate-seed1",
        "acrobot/coupled-seed1",
    ]
    assert spec.name == "cartpole+acrobot-debug" and spec.reference == "separate"
    # One task keeps today's names.
    assert [run.name for run in AblationSpec("cartpole", 1).runs()] == [
        "separate-seed0",
        "coupled-seed0",
    ]


def test_user_arms_and_grid_are_arms_like_the_built_in_ones(tmp_path: Path) -> None:
    file = tmp_path / "arms.toml"
    file.write_text(ARMS_TOML)
    file_arms = load_arms_file(str(file))
    assert file_arms["separate_r16"] == {"train.schedule": "separate", "train.train_ratio": 16}
    flag = parse_arm_flag("mine:train.schedule=coupled,train.starts=all")
    table = resolve_arms(ARMS, ("separate",), file_arms, [flag], "train.train_ratio=8,32")
    assert list(table) == [
        f"{arm}_train_ratio{r}"
        for arm in ("separate", "coupled_r16", "separate_r16", "mine")
        for r in (8, 32)
    ]
    spec = AblationSpec(
        "cartpole",
        1,
        arms=tuple(table),
        preset="debug",
        arm_table=table,
        reference="separate_train_ratio8",
    )
    spec.validate()
    configs = {run.arm: run.config() for run in spec.runs()}
    assert configs["mine_train_ratio32"].train.train_ratio == 32.0
    assert configs["mine_train_ratio32"].train.starts == "all"
    assert configs["coupled_r16_train_ratio8"].train.schedule == "coupled"
    assert configs["coupled_r16_train_ratio8"].train.train_ratio == 8.0


BAD_INPUTS = {
    "suite and env": (["--suite", "classic", "--env", "cartpole"], "not both"),
    "unknown suite": (["--suite", "nope"], "unknown suite 'nope'"),
    "unknown task": (["--env", "cartpole,nope"], "unknown env 'nope'"),
    "task twice": (["--env", "cartpole,acrobot,cartpole"], "listed twice in ENV: cartpole"),
    "unknown key": (["--env", "cartpole", "--arm", "x:train.nokey=1"], "unknown config key"),
    "bad value": (["--env", "cartpole", "--arm", "x:train.train_ratio=abc"], "expects float"),
    "arm twice": (["--env", "cartpole", "--arm", "coupled:train.starts=all"], "defined twice"),
    "arm in file and flag": (["--env", "cartpole", "--arm", "coupled_r16:x.y=1"], "twice"),
    "reference": (["--env", "cartpole", "--reference", "nope"], "REFERENCE 'nope' is not"),
    "grid": (["--env", "cartpole", "--grid", "train.train_ratio="], "GRID"),
    "bad arm flag": (["--env", "cartpole", "--arm", "justaname"], "NAME:KEY=VALUE"),
    "missing file": (["--env", "cartpole", "--arms-file", "none.toml"], "does not exist"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line_and_creates_nothing(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    file = tmp_path / "arms.toml"
    file.write_text(ARMS_TOML)
    args, message = BAD_INPUTS[case]
    if case == "arm in file and flag":
        args = [*args, "--arms-file", str(file)]
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    (tmp_path / "store").mkdir()
    with pytest.raises(SystemExit) as stop:
        main([*args, "--seeds", "2", "--preset", "debug", "--tracking-uri", uri])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert list((tmp_path / "store").iterdir()) == []


def test_make_passes_suite_without_the_default_env(tmp_path: Path) -> None:
    # The Makefile's default ENV must not reach the command next to SUITE (that is an error).
    from test_makefile import make

    result = make("-n", "ablation", "SUITE=classic", "GRID=a.b=1,2", cwd=tmp_path)
    line = result.stdout.strip().splitlines()[-1]
    assert "--suite 'classic'" in line and "--env" not in line and "--grid 'a.b=1,2'" in line


# A tiny budget: debug preset, 200 agent steps, one short eval episode, episodes cut at 100.
SUITE_TINY = [
    *TINY,
    "--set", "train.prefill=100",
    "--set", "train.eval_every=100",
    "--set", "train.eval_episodes=1",
    "--set", "env.max_episode_steps=100",
    "--steps", "200",
]  # fmt: skip


@pytest.mark.slow
def test_two_tasks_two_user_arms_two_seeds_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "arms.toml").write_text('[r16]\n"train.schedule" = "coupled"\n')
    args = ["--env", "cartpole,acrobot", "--seeds", "2", "--jobs", "2", *SUITE_TINY]
    args += ["--arms", "r16,r8", "--arms-file", "arms.toml", "--reference", "r8"]
    args += ["--arm", "r8:train.schedule=separate,train.train_ratio=8"]
    args += ["--experiment", "suite"]
    first = run_cli(tmp_path, *args, report=True)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "8 runs (2 tasks x r8, r16 x 2 seeds), 0 already finished" in first.stdout

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = children(client, "suite")
    assert sorted(runs) == sorted(
        f"{task}/{arm}-seed{seed}"
        for task in ("cartpole", "acrobot")
        for arm in ("r16", "r8")
        for seed in (0, 1)
    )
    for name, run in runs.items():
        assert run.info.status == "FINISHED", name
        assert run.data.tags["task"] == name.split("/")[0]
        assert run.data.tags["score.kind"] == "max"
    # The arms' overrides are params of their runs: from the file and from --arm.
    r8, r16 = runs["acrobot/r8-seed1"].data.params, runs["cartpole/r16-seed0"].data.params
    assert (r8["train.schedule"], r8["train.train_ratio"]) == ("separate", "8.0")
    assert (r16["train.schedule"], r16["train.train_ratio"]) == ("coupled", "32.0")
    parent = client.search_runs(
        [client.get_experiment_by_name("suite").experiment_id], "tags.`ablation.role` = 'parent'"
    )[0]
    assert parent.data.tags["reference"] == "r8" and parent.data.tags["arms"] == "r8,r16"

    pages = PdfReader(tmp_path / "reports" / "out" / "suite.pdf").pages
    text = [re.sub(r"\s+", " ", page.extract_text()) for page in pages]
    assert "Verdict over the suite: Over 2 task(s): r16" in text[0]
    assert "Reference arm: r8" in text[0] and "P(arm > r8)" in text[0]
    assert "Per task: final return per arm" in text[1]
    assert re.search(r"acrobot r16 2 ", text[1]) and re.search(r"cartpole r8 2 ", text[1])

    again = run_cli(tmp_path, *args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "8 already finished, 0 to run" in again.stdout
    assert "estimated duration" not in again.stdout


def test_estimate_times_each_model_once_per_kind_of_env_and_every_task_env() -> None:
    from ablations.plan.estimate import estimate_seconds

    spec = AblationSpec(
        "cartpole", 1, arms=("separate",), preset="debug", steps=400, tasks=("cartpole", "acrobot")
    )
    costs: dict = {}
    total = estimate_seconds(spec.runs(), 1, costs=costs)
    cartpole, acrobot = costs["cartpole/separate"], costs["acrobot/separate"]
    # Same kind of env (gym, vector, discrete): the model's costs are timed once and shared...
    assert acrobot.update == cartpole.update and acrobot.policy_step == cartpole.policy_step
    # ...while each task's own env is timed: acrobot's random episodes run to the 500 cap.
    assert acrobot.episode_length == 500 and cartpole.episode_length < 100
    assert total > 0


def test_the_cpu_hint_keeps_the_suite_reference_and_says_user_arms_need_their_source() -> None:
    from ablations.plan.estimate import cpu_sized_command

    table = resolve_arms(ARMS, ("separate", "coupled"), {}, [], "train.train_ratio=64,128")
    spec = AblationSpec(
        "cartpole",
        2,
        arms=tuple(table),
        preset="small",
        tasks=SUITES["classic"][:2],
        suite="classic",
        arm_table=table,
        reference="coupled_train_ratio64",
    )
    hint = cpu_sized_command(spec, 1, seconds=600)
    assert hint is not None and hint.startswith("make ablation SUITE=classic SEEDS=2 ")
    assert "REFERENCE=coupled_train_ratio64" in hint and "ARMS=" not in hint.split(" with ")[0]
    assert hint.endswith("with the same ARMS, ARMS_FILE, ARM and GRID")
