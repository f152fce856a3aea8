"""``make bench-learn``'s command end to end: real runs of CartPole's learning setup (a few
hundred steps each), a real MLflow store, the printed table; and its bad-input exits."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.test_ablations import run_module


def run_bench_learn(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return run_module("benchmarks.learning", cwd, *args)


def table_rows(stdout: str) -> list[list[str]]:
    """The learning table's data rows (it ends the output), split into cells."""
    lines = stdout[stdout.rindex("arm ") :].splitlines()[2:]
    return [[cell.strip() for cell in line.split("|")] for line in lines if "|" in line]


@pytest.mark.slow
def test_prints_one_row_per_run_and_a_rerun_reprints_it(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/store.db"
    args = ["--env", "cartpole", "--steps", "400", "--seeds", "1", "--jobs", "2"]
    args += ["--tracking-uri", uri]
    first = run_bench_learn(tmp_path, *args)
    assert first.returncode == 0, first.stderr[-2000:]
    random = float(re.search(r"random policy: (-?[\d.]+)", first.stdout).group(1))
    assert 5 < random < 60  # CartPole's random policy lasts ~20 steps

    rows = table_rows(first.stdout)
    assert [row[0] for row in rows] == ["separate", "coupled", "separate_all", "coupled_all"]
    for arm, seed, steps, minutes, best, final, rand in rows:
        assert seed == "0" and steps == "400", arm
        assert minutes.endswith(" m") and float(minutes[:-2]) > 0
        assert 0 < float(final) <= float(best) <= 500, arm
        assert float(rand) == pytest.approx(random, abs=0.05)

    # A rerun of a subset of the arms (--arms) finds them finished and reprints the table.
    second = run_bench_learn(tmp_path, *args, "--arms", "coupled_all,separate_all")
    assert second.returncode == 0, second.stderr[-2000:]
    assert "2 already finished, 0 to run" in second.stdout
    assert table_rows(second.stdout) == rows


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "atari_nope"], "no learning setup for env 'atari_nope'"),
        (["--steps", "10"], "to run one training iteration"),
        (["--jobs", "0"], "JOBS must be positive"),
        (
            ["--arms", "separate_all,bogus"],
            "unknown arm(s) bogus; known arms: separate_all, coupled_all, separate, coupled",
        ),
        (["--arms", "coupled,coupled"], "arms are listed twice: coupled, coupled"),
        (["--arms", " , "], "no arms given; known arms: separate_all"),
        (["--tracking-uri", "sqlite:////no/such/dir/m.db"], "does not exist"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_bench_learn(tmp_path, *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr and "arm " not in result.stdout
    assert not (tmp_path / "mlflow.db").exists()


def test_every_setup_runs_known_distinct_arms_and_at_least_one_seed() -> None:
    from ablations.plan.arms import resolve_arms
    from ablations.plan.spec import ARMS
    from benchmarks.learning import RUN_ORDER, SETUPS

    for env, setup in SETUPS.items():
        resolved = resolve_arms({arm: ARMS[arm] for arm in RUN_ORDER}, setup.arms, {}, [])
        assert tuple(resolved) == setup.arms and setup.seeds >= 1, env
        # The targets are about the starts=all arms, first in RUN_ORDER: a table that runs
        # a prefix of it answers its target even when interrupted.
        assert setup.arms == RUN_ORDER[: len(setup.arms)], env
    vision = SETUPS["dmc_vision_cartpole_balance"]
    assert (vision.arms, vision.seeds) == (("separate_all", "coupled_all"), 1)


@pytest.mark.slow
def test_a_studys_budget_is_measured_on_its_starts_all_arms(tmp_path: Path) -> None:
    """``make bench-learn STUDY=``: the study's tasks and settings, its two starts=all arms,
    one seed; the normalised final score of each row recomputed here from the store."""
    from mlflow.tracking import MlflowClient

    from agent.score_references import SCORE_REFERENCES
    from tests.test_ablations_adaptive import TINY_SUITE_STUDY

    study = TINY_SUITE_STUDY.replace(
        'arms = ["separate", "coupled"]',
        'arms = ["separate", "coupled", "separate_all", "coupled_all"]\nlearn_target = -50',
    )
    (tmp_path / "tiny.toml").write_text(study)
    uri = f"sqlite:///{tmp_path}/store.db"
    result = run_bench_learn(
        tmp_path, "--study", str(tmp_path / "tiny.toml"), "--jobs", "2", "--tracking-uri", uri
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout[result.stdout.rindex("task ") :].splitlines()
    rows = [[cell.strip() for cell in line.split("|")] for line in lines[2:] if "|" in line]
    arms = ("separate_all", "coupled_all")
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (task, arm, "0") for task in ("cartpole", "pendulum") for arm in arms
    ]
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("bench-learn-tiny")
    children = "tags.`ablation.role` = 'child'"
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id], children)}
    for task, arm, _, steps, _, _, final, random, normalised in rows:
        run = runs[f"{task}/{arm}-seed0"]
        assert float(final) == pytest.approx(run.data.metrics["final/eval_return"], abs=0.06)
        reference = SCORE_REFERENCES[task]
        expected = (run.data.metrics["final/eval_return"] - reference.random) / (
            reference.best - reference.random
        )
        assert float(normalised) == pytest.approx(expected, abs=0.006)
        assert steps == "300" and float(random) == pytest.approx(reference.random, abs=0.06)
    assert lines[-1] == "target met: every starts=all run ends at normalised >= -50"
