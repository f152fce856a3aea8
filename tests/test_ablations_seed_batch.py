"""Seeds as a batch in the runner: each seed its own MLflow run, tagged; exact resume of a
batch from its members' checkpoints; a non-finite member failing alone; a killed batch
resumed by a rerun with every point once; bad input in one line."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from test_ablations import TINY, _run_processes, children, run_cli
from test_ablations_faults import _histories, _kill_group, _start, _wait_for

from ablations.integrity.checkpoints import LocalCheckpoints
from ablations.launch import group_worker
from ablations.launch.jobs import FAILED, FINISHED, WorkerJob, seed_batches
from ablations.plan.spec import AblationSpec
from ablations.tracking.store import AblationStore
from agent.seed_batch import SeedBatch


def _jobs(
    uri: str, tmp_path: Path, name: str, seeds: int = 2, kinds: dict | None = None
) -> list[WorkerJob]:
    overrides = {
        "train.prefill": 200,
        "train.train_ratio": 16,
        "train.eval_every": 100,
        "train.eval_episodes": 1,
        "train.log_every": 50,
        "train.device": "cpu",
    }
    spec = AblationSpec("cartpole", seeds, ("coupled",), "debug", 500, overrides, name)
    store = AblationStore(uri, spec)
    jobs = []
    for run in spec.runs():
        run_id, _ = store.child_for(run, "cpu")
        folder = str(tmp_path / "checkpoints" / run_id)
        checkpoints = (kinds or {}).get(run.seed, LocalCheckpoints)(folder)
        jobs.append(
            WorkerJob(run, run_id, uri, checkpoints, 100, "cpu", 1, store.parent_id, "test")
        )
    return jobs


def test_seed_batches_group_only_runs_that_differ_in_their_seed() -> None:
    spec = AblationSpec("cartpole", 5, ("coupled", "separate"), "debug", 500, {}, "x")
    runs = spec.runs()  # seed-major: coupled-0, separate-0, coupled-1, ...
    jobs = [WorkerJob(run, str(i), "", None, 1, "cpu", 1, "", "") for i, run in enumerate(runs)]
    groups = seed_batches(jobs, 2)
    names = [[job.run.name for job in group] for group in groups]
    assert names == [
        ["coupled-seed0", "coupled-seed1"],
        ["separate-seed0", "separate-seed1"],
        ["coupled-seed2", "coupled-seed3"],
        ["separate-seed2", "separate-seed3"],
        ["coupled-seed4"],
        ["separate-seed4"],
    ]
    assert sorted(j.run.name for g in groups for j in g) == sorted(j.run.name for j in jobs)
    assert [len(g) for g in seed_batches(jobs, 1)] == [1] * len(jobs)


class CrashAfterItsFirstSave(LocalCheckpoints):
    """The batch's last member to save: the process dies right after its first checkpoint,
    so that every member has one at the same step (the error stands for kill -9)."""

    def save(self, trainer: Any) -> None:
        super().save(trainer)
        raise RuntimeError("the worker died")


@pytest.mark.slow
@pytest.mark.parametrize("damaged", [False, True])
def test_a_resumed_seed_batch_logs_bitwise_what_an_uninterrupted_one_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damaged: bool
) -> None:
    monkeypatch.setenv("ABLATION_LEASE_STALE_S", "2")
    uri = f"sqlite:///{tmp_path}/store.db"
    whole = _jobs(uri, tmp_path, "whole")
    outcomes: dict[str, str] = {}
    group_worker.run_group(whole, None, outcomes)
    assert outcomes == {"coupled-seed0": FINISHED, "coupled-seed1": FINISHED}

    crashing = _jobs(uri, tmp_path, "resumed", kinds={1: CrashAfterItsFirstSave})
    with pytest.raises(RuntimeError, match="the worker died"):
        group_worker.run_group(crashing, None, {})
    resumed = _jobs(uri, tmp_path, "resumed")
    if damaged:  # one member's only checkpoint truncated: the batch starts over
        (only,) = Path(resumed[1].checkpoints.folder).glob("*.pt")
        only.write_bytes(only.read_bytes()[:100])
    outcomes = {}
    group_worker.run_group(resumed, None, outcomes)
    assert set(outcomes.values()) == {FINISHED}

    client = MlflowClient(uri)
    for before, after in zip(whole, resumed, strict=True):
        run = client.get_run(after.run_id)
        assert run.info.status == "FINISHED" and "error" not in run.data.tags
        assert run.data.tags["seed_batch"] == "2"
        if damaged:
            assert "resumed_from_step" not in run.data.tags
            assert int(run.data.tags["restarted_without_checkpoint"]) > 200
        else:
            assert 200 < int(run.data.tags["resumed_from_step"]) < 500  # its first checkpoint
        assert _histories(client, after.run_id) == _histories(client, before.run_id)
    curves = [_histories(client, job.run_id)["eval/return"] for job in whole]
    assert curves[0] != curves[1]  # two seeds, two runs


class PoisonedSecondMember(SeedBatch):
    """A seed batch whose second member's weights are NaN from the start."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.world_model.reward_head[0].weight.data[1].fill_(float("nan"))


@pytest.mark.slow
def test_a_non_finite_member_fails_its_run_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_worker, "SeedBatch", PoisonedSecondMember)
    uri = f"sqlite:///{tmp_path}/store.db"
    jobs = _jobs(uri, tmp_path, "poisoned", seeds=3)
    outcomes: dict[str, str] = {}
    group_worker.run_group(jobs, None, outcomes)
    assert outcomes == {
        "coupled-seed0": FINISHED,
        "coupled-seed1": FAILED,
        "coupled-seed2": FINISHED,
    }
    client = MlflowClient(uri)
    failed = client.get_run(jobs[1].run_id)
    assert failed.info.status == "FAILED" and "non-finite" in failed.data.tags["error"]
    for job in (jobs[0], jobs[2]):
        run = client.get_run(job.run_id)
        assert run.info.status == "FINISHED"
        assert run.data.metrics["final/env_steps"] == 500


@pytest.mark.slow
def test_a_killed_seed_batch_is_finished_by_a_rerun_with_every_point_once(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/store.db"
    args = ["--env", "cartpole", "--seeds", "2", "--arms", "coupled,separate", "--steps", "600"]
    args += ["--tracking-uri", uri, "--checkpoint-every", "200", "--experiment", "sb", *TINY]
    args += ["--seed-batch", "2", "--jobs", "2"]
    first = _start(tmp_path, *args)
    try:
        checkpoints = tmp_path / "checkpoints"
        _wait_for(lambda: len(list(checkpoints.rglob("*.pt"))) >= 2, first, tmp_path)
        assert len(_run_processes(first.pid)) == 2  # two processes, one per arm
        os.killpg(first.pid, signal.SIGKILL)  # driver and batches at once
        first.wait()
    finally:
        _kill_group(first)
    rerun = run_cli(tmp_path, *args, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    client = MlflowClient(uri)
    runs = children(client, "sb")
    assert sorted(runs) == ["coupled-seed0", "coupled-seed1", "separate-seed0", "separate-seed1"]
    for name, run in runs.items():
        assert run.info.status == "FINISHED", name
        assert run.data.tags["seed_batch"] == "2"
        for key in ("loss/wm", "eval/return", "episode/return"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert len(steps) == len(set(steps)) and max(steps) >= 500, (name, key)
    assert any("resumed_from_step" in run.data.tags for run in runs.values())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--seed-batch", "0"], "SEED_BATCH"),
        (["--seed-batch", "two"], "SEED_BATCH"),
        (["--seed-batch", "2", "--launcher", "ray"], "SEED_BATCH is for local processes"),
    ],
)
def test_bad_seed_batch_is_one_line_and_creates_nothing(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    uri = f"sqlite:///{tmp_path}/store.db"
    args = ["--env", "cartpole", "--seeds", "2", "--tracking-uri", uri, *TINY, *extra]
    result = run_cli(tmp_path, *args, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert message in lines[-1] and "Traceback" not in result.stderr
    assert not (tmp_path / "store.db").exists()


def test_seed_batch_auto_says_what_the_estimate_chose_and_why(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/store.db"
    args = ["--env", "cartpole", "--seeds", "4", "--arms", "coupled", "--steps", "600"]
    args += ["--tracking-uri", uri, "--seed-batch", "auto", "--dry-run", *TINY]
    result = run_cli(tmp_path, *args, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("SEED_BATCH=auto: "))
    size = int(line.split()[1])
    assert size in (1, 2, 4) and "with one run per process" in line
    assert not (tmp_path / "store.db").exists()
