"""Adaptive seeding (``--seeds auto``): the planner on synthetic scores, bad input, and a real
tiny adaptive ablation on CartPole interrupted by a signal and resumed."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow.entities import Param
from mlflow.tracking import MlflowClient
from pypdf import PdfReader

from ablations.adaptive import (
    ENUMERATION,
    ENUMERATION_PARAM,
    AdaptiveRule,
    as_recorded,
    finished_scores,
    interim_runs,
    plan,
    record_interim,
    record_rule,
)
from ablations.cli import main
from ablations.plan.spec import AblationSpec
from ablations.tracking.store import AblationStore
from analysis import summary
from analysis.load import load_ablation
from analysis.sequential import BETTER, NO_DIFFERENCE, OPEN, adastop
from tests.test_ablations import children, run_cli, start_cli

ARMS3 = ("separate", "coupled", "separate_all")
TINY_SUITE_STUDY = """
description = "two tasks, two arms, adaptive seeds on the suite score: a test's size"
preset = "debug"
arms = ["separate", "coupled"]
steps = 300
[adaptive]
interim = 2
max_seeds = 4
[settings]
"train.prefill" = 200
"train.train_ratio" = 16
"train.eval_every" = 200
"train.eval_episodes" = 1
"train.log_every" = 100
[tasks.cartpole]
[tasks.pendulum]
"""


def scores_for(seeds: range, means: dict[str, float], seed: int = 0) -> dict[str, dict[int, float]]:
    rng = np.random.default_rng(seed)
    return {arm: {s: mean + rng.normal() for s in seeds} for arm, mean in means.items()}


def test_the_plan_runs_interims_and_stops_giving_seeds_to_decided_arms():
    rule = AdaptiveRule(interim=5, max_seeds=15, alpha=0.05, reference="separate")
    first = plan(rule, ARMS3, {})
    assert first.interim == 0 and first.result is None
    assert sorted(first.next_runs) == sorted((a, s) for a in ARMS3 for s in range(5))

    # coupled is far better: decided at the first interim; separate_all is not.
    scores = scores_for(range(5), {"separate": 0.0, "coupled": 50.0, "separate_all": 0.0})
    second = plan(rule, ARMS3, scores)
    assert second.decisions() == {"coupled": BETTER, "separate_all": OPEN}
    assert second.interim == 1
    assert sorted(second.next_runs) == sorted(
        (a, s) for a in ("separate", "separate_all") for s in range(5, 10)
    )
    # Half of interim 2 finished (an interruption): only the other half is asked for.
    more = scores_for(range(5, 10), {"separate": 0.0, "separate_all": 0.0}, seed=1)
    partial = {arm: dict(values) for arm, values in scores.items()}
    for arm in more:
        partial[arm].update({s: v for s, v in more[arm].items() if s < 7})
    assert sorted(plan(rule, ARMS3, partial).next_runs) == sorted(
        (a, s) for a in ("separate", "separate_all") for s in range(7, 10)
    )
    # Every interim run: the open comparison ends "no difference" at the last one.
    last = scores_for(range(10, 15), {"separate": 0.0, "separate_all": 0.0}, seed=2)
    for arm in ("separate", "separate_all"):
        scores[arm].update(more[arm])
        scores[arm].update(last[arm])
    done = plan(rule, ARMS3, scores)
    assert done.finished and not done.next_runs and done.interim == 2
    assert done.decisions() == {"coupled": BETTER, "separate_all": NO_DIFFERENCE}
    assert done.result.decided_at == (0, 2)


def test_the_seeds_a_decided_arm_never_got_are_not_missing_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two interims run as the runner runs them (plan, record, create, finish, decide) on a
    real store: coupled, decided at the first, gets no seeds 5..9, and the report must not
    call them missing; a planned run that never appeared still is."""
    monkeypatch.chdir(tmp_path)  # the decisions artifact goes to ./mlruns beside a SQLite store
    uri = f"sqlite:///{tmp_path}/store.db"
    rule = AdaptiveRule(interim=5, max_seeds=15, alpha=0.05, reference="separate")
    spec = AblationSpec("cartpole", rule.seed_budget, ARMS3, "debug", name="decided")
    store = AblationStore(uri, spec)
    record_rule(store, rule)
    client = MlflowClient(uri)
    # The planner test's scores: coupled decided better at the first interim, not the rest.
    scores = scores_for(range(5), {"separate": 0.0, "coupled": 50.0, "separate_all": 0.0})
    more = scores_for(range(5, 10), {"separate": 0.0, "separate_all": 0.0}, seed=1)
    ids = {}
    for _interim in range(2):
        runs = interim_runs(spec, rule, uri)
        store.record_plan(runs)
        for run in runs:
            ids[run.name] = store.child_for(run, "cpu")[0]
            score = {**scores[run.arm], **more.get(run.arm, {})}[run.seed]
            client.log_metric(ids[run.name], "final/eval_return", score, step=300)
            client.set_terminated(ids[run.name], "FINISHED")
        stand = record_interim(store, rule)
    assert stand.decisions() == {"coupled": BETTER, "separate_all": OPEN}
    assert sorted(ids) == sorted(
        [f"coupled-seed{s}" for s in range(5)]
        + [f"{a}-seed{s}" for a in ("separate", "separate_all") for s in range(10)]
    )

    data = load_ablation("decided", uri)
    assert data.planned_seeds == {"separate": 10, "coupled": 5, "separate_all": 10}
    assert summary.missing_runs(data.runs, data.planned_runs) == []
    assert summary.problems_note(data.runs, data.planned_runs) == ""
    # Without the recorded plan the grid is inferred per arm (its own seeds 0..last): the
    # seeds 5..9 coupled never got are not missing either.
    assert summary.missing_runs(data.runs) == []

    client.delete_run(ids["separate_all-seed7"])
    data = load_ablation("decided", uri)
    assert summary.missing_runs(data.runs, data.planned_runs) == ["separate_all-seed7"]
    assert "1 expected runs are missing: separate_all-seed7." in summary.problems_note(
        data.runs, data.planned_runs
    )


def test_over_a_suite_each_seed_scores_the_mean_normalised_return_of_all_its_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The planner's value per arm and seed over two tasks, read from a real store, against
    the normalisation done here by hand from the score table; a seed with one task still
    unfinished has no value yet, and the plan asks for exactly that run."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/store.db"
    tasks = ("cartpole", "pendulum")
    rule = AdaptiveRule(interim=2, max_seeds=4, alpha=0.05, reference="separate", tasks=tasks)
    spec = AblationSpec("cartpole", 4, ("separate", "coupled"), "debug", name="s", tasks=tasks)
    store = AblationStore(uri, spec)
    record_rule(store, rule)
    client = MlflowClient(uri)
    returns = {
        ("cartpole", "separate"): (120.0, 500.0),
        ("cartpole", "coupled"): (23.7, 300.0),
        ("pendulum", "separate"): (-600.0, -150.0),
        ("pendulum", "coupled"): (-1207.6, -0.0),
    }
    runs = interim_runs(spec, rule, uri)
    assert sorted(r.name for r in runs) == sorted(
        f"{t}/{a}-seed{s}" for t in tasks for a in ("separate", "coupled") for s in (0, 1)
    )
    for run in runs:
        run_id = store.child_for(run, "cpu")[0]
        if run.name == "pendulum/coupled-seed1":
            continue  # still training
        client.log_metric(run_id, "final/eval_return", returns[run.env, run.arm][run.seed], 300)
        client.set_terminated(run_id, "FINISHED")

    def by_hand(arm: str, seed: int) -> float:
        ends = {"cartpole": (23.7, 500.0), "pendulum": (-1207.6, 0.0)}  # agent/score_references.py
        return sum(
            (returns[task, arm][seed] - low) / (high - low) for task, (low, high) in ends.items()
        ) / len(ends)

    scores = finished_scores(uri, "s", tasks)
    assert scores == {
        "separate": {s: pytest.approx(by_hand("separate", s)) for s in (0, 1)},
        "coupled": {0: pytest.approx(by_hand("coupled", 0))},
    }
    assert scores["coupled"][0] == pytest.approx(0.0) and scores["separate"][1] == pytest.approx(
        (1.0 + (1207.6 - 150.0) / 1207.6) / 2
    )
    # Seed 1 of coupled is incomplete: it alone is missing, while the runner is still handed
    # the whole interim (it skips the seven finished runs), so a resumed command counts the
    # interim and not its remainder.
    assert plan(rule, spec.arms, scores).next_runs == (("coupled", 1),)
    assert sorted(r.name for r in interim_runs(spec, rule, uri)) == sorted(r.name for r in runs)
    parent = client.get_run(store.parent_id).data.params
    assert parent["adaptive.tasks"] == "cartpole,pendulum"
    assert parent["adaptive.metric"].startswith("the suite score (mean over cartpole, pendulum")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--seeds", "auto", "--interim", "1"], "INTERIM must be 2 or more"),
        (["--seeds", "auto", "--interim", "0"], "INTERIM must be 2 or more"),
        (["--seeds", "auto", "--interim", "x"], "INTERIM must be a whole number"),
        (["--seeds", "auto", "--interim", "5", "--max-seeds", "4"], "MAX_SEEDS must be at least"),
        (["--seeds", "auto", "--max-seeds", "3"], "MAX_SEEDS must be at least INTERIM (5)"),
        (["--seeds", "auto", "--max-seeds", "100000"], "MAX_SEEDS must be at most 1000"),
        (["--seeds", "auto", "--alpha", "0.5"], "ALPHA must be between 0 and 0.5"),
        (["--seeds", "auto", "--alpha", "0"], "ALPHA must be between 0 and 0.5"),
        (["--seeds", "auto", "--alpha", "-0.1"], "ALPHA must be between 0 and 0.5"),
        (["--seeds", "auto", "--alpha", "five"], "ALPHA must be a number"),
        (["--seeds", "3", "--interim", "2"], "apply only with SEEDS=auto"),
        (["--seeds", "auto", "--arms", "coupled"], "give at least two ARMS"),
    ],
)
def test_bad_adaptive_input_exits_2_with_one_line_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, flags, message
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(SystemExit) as stop:
        main(["--env", "cartpole", *flags, "--no-report"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_a_rerun_with_another_rule_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    uri = f"sqlite:///{tmp_path}/store.db"
    spec = AblationSpec(env="cartpole", seeds=4, preset="debug", name="rule")
    record_rule(AblationStore(uri, spec), AdaptiveRule(2, 4, 0.05, "separate"))
    with pytest.raises(SystemExit) as stop:
        main([
            "--env", "cartpole", "--seeds", "auto", "--interim", "2", "--max-seeds", "6",
            "--preset", "debug", "--tracking-uri", uri, "--experiment", "rule", "--no-report",
        ])  # fmt: skip
    assert stop.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]  # after MLflow's setup logs
    assert (
        line.startswith("usage:") is False
        and "started with another adaptive rule (interims=2, max_seeds=4)" in line
    )
    assert not children(MlflowClient(uri), "rule")


@pytest.mark.slow
def test_tiny_adaptive_suite_interrupted_after_an_interim_resumes_and_stops(
    tmp_path: Path,
) -> None:
    """A study file with SEEDS=auto over two tasks, end to end: the first interim (seeds 0, 1
    of both arms on both tasks), a SIGTERM during the second, a rerun that trains only what
    is left, the decision on the suite score recorded on the parent and stated on the
    report's page 1."""
    uri = f"sqlite:///{tmp_path}/store.db"
    (tmp_path / "auto.toml").write_text(TINY_SUITE_STUDY)
    args = ["--study", str(tmp_path / "auto.toml"), "--jobs", "2", "--cpus-per-run", "1"]
    args += ["--tracking-uri", uri]
    client = MlflowClient(uri)

    process = start_cli(tmp_path, *args)
    deadline, second_interim = time.time() + 600, None
    while time.time() < deadline and second_interim is None:
        assert process.poll() is None, (tmp_path / "stderr.log").read_text()[-2000:]
        if client.get_experiment_by_name("auto") is not None:
            second_interim = next(
                (
                    run
                    for name, run in children(client, "auto").items()
                    if name.endswith(("seed2", "seed3")) and run.info.status == "RUNNING"
                ),
                None,
            )
        time.sleep(0.2)
    assert second_interim is not None, "the second interim never started"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 143

    (parent,) = client.search_runs(
        [client.get_experiment_by_name("auto").experiment_id], "tags.`ablation.role` = 'parent'"
    )
    assert parent.data.params["adaptive.interim"] == "2"
    assert parent.data.params["adaptive.max_seeds"] == "4"
    assert parent.data.params["adaptive.tasks"] == "cartpole,pendulum"
    assert parent.data.params["adaptive.reference"] == "separate"
    assert parent.data.tags["adaptive.status"] == "running interim 2 of 2"
    assert parent.data.tags["adaptive.decision.coupled"] == OPEN
    table = client.download_artifacts(parent.info.run_id, "adaptive/decisions.csv", str(tmp_path))
    row = Path(table).read_text().splitlines()[1].split(",")
    assert row[:4] == ["1", "coupled", "separate", "2"]
    first_interim = {
        name: (run.info.run_id, run.info.end_time)
        for name, run in children(client, "auto").items()
        if name.endswith(("seed0", "seed1"))
    }
    assert len(first_interim) == 8 and all(end for _, end in first_interim.values())
    # The recorded mean difference is the suite scores' own, computed here from the runs.
    runs = children(client, "auto")

    def suite_mean(arm: str) -> float:
        values = []
        for seed in (0, 1):
            normalised = []
            for task in ("cartpole", "pendulum"):
                run = runs[f"{task}/{arm}-seed{seed}"]
                low, high = float(run.data.tags["score.random"]), float(run.data.tags["score.best"])
                normalised.append((run.data.metrics["final/eval_return"] - low) / (high - low))
            values.append(np.mean(normalised))
        return float(np.mean(values))

    assert float(row[4]) == pytest.approx(suite_mean("coupled") - suite_mean("separate"), rel=1e-5)

    rerun = run_cli(tmp_path, *args)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "adaptive seeding: interim 2 of 2, seeds 2..3 of separate, coupled" in rerun.stdout
    runs = children(client, "auto")
    assert sorted(runs) == sorted(
        f"{t}/{a}-seed{s}"
        for t in ("cartpole", "pendulum")
        for a in ("separate", "coupled")
        for s in range(4)
    )
    assert all(run.info.status == "FINISHED" for run in runs.values())
    # The first interim's runs were not trained again: same runs, same end.
    assert {n: (runs[n].info.run_id, runs[n].info.end_time) for n in first_interim} == first_interim
    # Two seeds per arm per interim cannot reject (smallest two-sided p-value 1/3): the
    # comparison ends at the last interim with no difference detectable.
    parent = client.get_run(parent.info.run_id)
    assert parent.data.tags["adaptive.status"] == "decided at interim 2 of 2"
    assert parent.data.tags["adaptive.decision.coupled"] == (
        "no difference from separate detectable at this budget, at interim 2 of 2 (4 of 4 seeds)"
    )
    assert "coupled: no difference from separate detectable" in rerun.stdout

    again = run_cli(tmp_path, *args, report=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "nothing left to run" in again.stdout and "0 to run" in again.stdout
    pdf = PdfReader(tmp_path / "reports" / "out" / "auto.pdf")
    front = " ".join(pdf.pages[0].extract_text().split())
    assert "Adaptive seeding (decided at interim 2 of 2" in front
    assert "coupled: no difference from separate detectable at this budget" in front
    assert "4 of 4 seeds" in front
    page = " ".join(pdf.pages[1].extract_text().split())
    assert "Adaptive seeding" in page and "AdaStop" in page and "suite score" in page
    assert "Reference separate: 4 of 4 seeds" in page
    assert {n: r.info.end_time for n, r in children(client, "auto").items()} == {
        n: r.info.end_time for n, r in runs.items()
    }


@pytest.mark.slow
def test_the_ray_launcher_is_planned_again_for_each_interim() -> None:
    """Each interim plans its launch in the same process: a second ``ray.init`` must join."""
    ray = pytest.importorskip("ray")
    from ablations.launch.jobs import Resources
    from ablations.launch.ray_cluster import plan as plan_ray

    try:
        first = plan_ray(Resources(cpus_per_run=1))
        second = plan_ray(Resources(cpus_per_run=1))
        assert second.parallel == first.parallel >= 1
    finally:
        ray.shutdown()


def test_an_ablation_recorded_before_per_interim_enumeration_replays_by_its_own_rule(
    tmp_path: Path,
) -> None:
    """Exactness is decided per interim only for rules that record it: an older record keeps
    its test (and so its decisions) on every replay, and records nothing new."""
    uri = f"sqlite:///{tmp_path}/store.db"
    rule = AdaptiveRule(5, 10, 0.05, "separate")
    assert rule.params()[ENUMERATION_PARAM] == ENUMERATION
    assert as_recorded(rule, uri, "fresh") == rule  # nothing recorded yet: the new rule

    old = AblationSpec(env="cartpole", seeds=10, preset="debug", name="old")
    legacy = {k: v for k, v in rule.params().items() if k != ENUMERATION_PARAM}
    store = AblationStore(uri, old)
    store.client.log_batch(store.parent_id, params=[Param(k, v) for k, v in legacy.items()])
    replayed = as_recorded(rule, uri, "old")
    assert replayed.per_interim is False and ENUMERATION_PARAM not in replayed.params()
    record_rule(store, replayed)  # as the runner does on a rerun: no param added
    assert ENUMERATION_PARAM not in store.client.get_run(store.parent_id).data.params
    # The two rules' first interim of 5 vs 5: drawn (10,000 of 252 splits) or enumerated.
    scores = scores_for(range(5), {"separate": 0.0, "coupled": 0.5}, seed=4)
    first = plan(replayed, ("separate", "coupled"), scores).result.interims[0]
    again = plan(rule, ("separate", "coupled"), scores).result.interims[0]
    blocks = [np.array([[scores[a][s] for s in range(5)] for a in ("separate", "coupled")])]
    assert first == adastop(blocks, 2, 0.05, np.random.default_rng(0), 10_000, False).interims[0]
    assert again == adastop(blocks, 2, 0.05, np.random.default_rng(5), 10_000).interims[0]
    assert first.boundaries != again.boundaries

    new = AblationSpec(env="cartpole", seeds=10, preset="debug", name="new")
    record_rule(AblationStore(uri, new), rule)
    assert as_recorded(rule, uri, "new") == rule
