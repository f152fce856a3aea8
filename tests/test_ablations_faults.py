"""Run integrity under faults, with real processes, signals and a real MLflow SQLite store:
one trainer per run, workers that die with their command, interrupted runs marked KILLED,
and a failed checkpoint save that does not put a step in the store twice."""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fault_processes import claim_and_hold, open_ablation, train_run
from mlflow.tracking import MlflowClient
from servers import free_port, start_mlflow_server, stop_server
from test_ablations import TINY, _alive, _cli_env, _run_processes, children, run_cli

from ablations.integrity.checkpoints import CheckpointError, LocalCheckpoints
from ablations.integrity.checkpoints import _write as write_checkpoint
from ablations.integrity.leases import Lease, LeaseHeldError
from ablations.launch.jobs import WorkerJob
from ablations.launch.worker import run_worker
from ablations.plan.spec import AblationSpec
from ablations.tracking import connection as tracking_store
from ablations.tracking.connection import TrackingError, check_reachable
from ablations.tracking.store import AblationStore


def test_one_of_concurrent_claims_wins_and_a_stale_lease_is_taken_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ABLATION_LEASE_STALE_S", "2.5")
    uri = f"sqlite:///{tmp_path}/store.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("leases")
    parent = client.create_run(experiment).info.run_id
    run = client.create_run(experiment, tags={"mlflow.parentRunId": parent}).info.run_id

    context = mp.get_context("spawn")
    go, out = context.Event(), context.Queue()
    claimants = [
        context.Process(target=claim_and_hold, args=(uri, parent, run, f"cmd{i}", go, out))
        for i in range(3)
    ]
    for process in claimants:
        process.start()
    try:
        assert sorted(out.get(timeout=120)[0] for _ in claimants) == ["ready"] * 3
        go.set()
        answers = [out.get(timeout=60) for _ in claimants]
        assert sorted(kind for kind, _ in answers) == ["held", "held", "won"]
        assert ("won", 1) in answers

        # The winner is alive and its lease fresh: nobody else may take the run ...
        with pytest.raises(LeaseHeldError, match="x-seed0 is being trained by process"):
            Lease.claim(client, parent, run, "x-seed0", "late")
        time.sleep(3.0)  # ... until it has gone without a heartbeat for the stale time.
        successor = Lease.claim(client, parent, run, "x-seed0", "late")
        assert successor.generation == 2
        # The old owner finds out at its next check and must stop writing.
        assert out.get(timeout=60)[0] == "lost"
        successor.check()
    finally:
        for process in claimants:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()


def test_two_commands_creating_one_store_at_once_make_one_ablation(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/fresh.db"
    context = mp.get_context("spawn")
    go, out = context.Event(), context.Queue()
    openers = [context.Process(target=open_ablation, args=(uri, go, out)) for _ in range(2)]
    for process in openers:
        process.start()
    try:
        assert [out.get(timeout=120)[0] for _ in openers] == ["ready", "ready"]
        go.set()
        answers = [out.get(timeout=120) for _ in openers]
    finally:
        for process in openers:
            process.join(timeout=30)
    assert [kind for kind, _ in answers] == ["opened", "opened"], answers
    assert answers[0][1] == answers[1][1]  # the same parent and the same two children
    client = MlflowClient(uri)
    assert len(client.search_runs([client.get_experiment_by_name("race").experiment_id])) == 3


def _tiny_job(
    uri: str, tmp_path: Path, name: str, steps: int = 500, env: str = "cartpole"
) -> tuple[WorkerJob, AblationStore]:
    overrides = {
        "train.prefill": 200,
        "train.train_ratio": 16,
        "train.eval_every": 100,
        "train.eval_episodes": 1,
        "train.log_every": 50,
        "train.device": "cpu",
        **TINY_ENV.get(env, {}),
    }
    spec = AblationSpec(env, 1, ("coupled",), "debug", steps, overrides, name)
    store = AblationStore(uri, spec)
    (run,) = spec.runs()
    run_id, _ = store.child_for(run, "cpu")
    job = WorkerJob(
        run=run,
        run_id=run_id,
        tracking_uri=uri,
        checkpoints=LocalCheckpoints(str(tmp_path / "checkpoints" / run_id)),
        checkpoint_every=100,
        device="cpu",
        threads=1,
        parent_id=store.parent_id,
        command="test",
    )
    return job, store


TINY_ENV = {"atari_pong": {"env.max_episode_steps": 100}}
"""Per env: Pong's first episodes last about a thousand steps; a time limit ends some in a
tiny run (and keeps its evaluations short)."""


class FullDiskFromTheSecondSave(LocalCheckpoints):
    """A checkpoint folder whose disk is full from the second save on: the trainer's
    temporary file is ``/dev/full``, which answers every write with ENOSPC."""

    def save(self, trainer: Any) -> None:
        if os.path.isdir(self.folder) and os.listdir(self.folder):
            partial = os.path.join(self.folder, f"checkpoint-{trainer.env_steps}.partial")
            os.symlink("/dev/full", f"{partial}.tmp")
            write_checkpoint(trainer, self.folder)  # not super().save: it would clean up first
        super().save(trainer)


def test_a_failed_save_never_puts_a_step_twice_and_the_finished_run_drops_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ABLATION_LEASE_STALE_S", "2")  # a heartbeat every half second
    uri = f"sqlite:///{tmp_path}/store.db"
    job, _ = _tiny_job(uri, tmp_path, "save-fails")
    full = dataclasses.replace(job, checkpoints=FullDiskFromTheSecondSave(job.checkpoints.folder))
    with pytest.raises(CheckpointError, match="^disk full: "):
        run_worker(full)  # flushed the metrics up to step ~300, then could not save them
    assert not list(Path(job.checkpoints.folder).glob("*.tmp"))  # what kept the disk full
    client = MlflowClient(uri)
    failed = client.get_run(job.run_id)
    assert failed.info.status == "FAILED" and "disk full" in failed.data.tags["error"]
    logged_before = max(m.step for m in client.get_metric_history(job.run_id, "loss/wm"))
    assert logged_before > 200  # past the checkpoint the rerun resumes from

    started = time.time()
    run_worker(job)  # the rerun: resumes from the first checkpoint, at ~step 200
    ended = time.time()
    finished = client.get_run(job.run_id)
    assert finished.info.status == "FINISHED"
    assert "error" not in finished.data.tags
    # The rerun took the failed attempt's released lease, beat while training, released it.
    tags = finished.data.tags
    assert tags["lease.generation"] == tags["lease.released"] == "2"
    # Its beats (every 0.5 s) went on to the end, however short the rerun was here.
    assert started < float(tags["lease.heartbeat"]) > ended - 1.5
    assert int(finished.data.tags["resumed_from_step"]) < logged_before
    for key in ("loss/wm", "eval/return", "episode/return", "progress/wm_updates"):
        steps = [m.step for m in client.get_metric_history(job.run_id, key)]
        assert len(steps) == len(set(steps)), key  # no step logged twice
        assert steps and max(steps) >= 400, key


WALL_CLOCK = ("time/", "speed/", "final/updates_per_s", "final/wall_seconds", "system/")
"""Metrics of wall-clock time, the machine's load or MLflow's overhead: the only ones a
resume may change."""


def _histories(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Every logged point of a run but :data:`WALL_CLOCK`'s, by metric, in step order."""
    keys = [k for k in client.get_run(run_id).data.metrics if not k.startswith(WALL_CLOCK)]
    keys = [k for k in keys if k != "tracking/overhead_fraction"]
    return {
        key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        for key in keys
    }


@pytest.mark.slow
@pytest.mark.parametrize("env", ["cartpole", "atari_pong"])
def test_a_run_its_worker_resumed_logs_bitwise_what_an_uninterrupted_run_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: str
) -> None:
    monkeypatch.setenv("ABLATION_LEASE_STALE_S", "2")
    uri = f"sqlite:///{tmp_path}/store.db"
    whole, _ = _tiny_job(uri, tmp_path, "whole", env=env)
    run_worker(whole)
    job, _ = _tiny_job(uri, tmp_path, "resumed", env=env)
    full = dataclasses.replace(job, checkpoints=FullDiskFromTheSecondSave(job.checkpoints.folder))
    with pytest.raises(CheckpointError, match="^disk full: "):
        run_worker(full)
    run_worker(job)  # resumes from the first checkpoint, recomputing the steps stored since

    client = MlflowClient(uri)
    resumed = client.get_run(job.run_id)
    assert resumed.info.status == "FINISHED"
    resumed_from = int(resumed.data.tags["resumed_from_step"])
    expected = _histories(client, whole.run_id)
    # The checkpoint held an open episode: no episode ended at the step it was taken.
    episode_ends = [step for step, _ in expected["episode/return"]]
    assert resumed_from not in episode_ends and max(episode_ends) > resumed_from
    assert _histories(client, job.run_id) == expected  # float equality: bitwise


class CrashAfterTheFirstSave(LocalCheckpoints):
    """A worker that dies right after its first checkpoint (the error stands for kill -9)."""

    def save(self, trainer: Any) -> None:
        super().save(trainer)
        raise RuntimeError("the worker died")


def _history(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Every metric's points, wall-clock timings left out (a rerun changes those)."""
    keys = [k for k in client.get_run(run_id).data.metrics if not k.startswith(("time/", "speed/"))]
    keys = [k for k in keys if k not in ("final/updates_per_s", "final/wall_seconds")]
    keys = [k for k in keys if not k.startswith(("system/", "tracking/"))]
    return {k: [(m.step, m.value) for m in client.get_metric_history(run_id, k)] for k in keys}


def test_a_run_whose_only_checkpoint_is_damaged_starts_over_and_logs_what_it_would_have(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ABLATION_LEASE_STALE_S", "2")
    uri = f"sqlite:///{tmp_path}/store.db"
    client = MlflowClient(uri)
    whole, _ = _tiny_job(uri, tmp_path, "whole", steps=400)
    run_worker(whole)

    job, _ = _tiny_job(uri, tmp_path, "damaged", steps=400)
    crashing = dataclasses.replace(job, checkpoints=CrashAfterTheFirstSave(job.checkpoints.folder))
    with pytest.raises(RuntimeError, match="the worker died"):
        run_worker(crashing)
    (only,) = Path(job.checkpoints.folder).glob("*.pt")
    os.truncate(only, only.stat().st_size // 2)  # a full disk, a bad block

    run_worker(job)  # the rerun: nothing to resume from, so it starts over and finishes
    run = client.get_run(job.run_id)
    assert run.info.status == "FINISHED" and "error" not in run.data.tags
    assert "resumed_from_step" not in run.data.tags
    assert int(run.data.tags["restarted_without_checkpoint"]) > 200
    assert not Path(job.checkpoints.folder).exists()  # the damaged file went with the rest
    # The steps logged before the crash stand, the rest follow once, bitwise as unbroken.
    assert _history(client, job.run_id) == _history(client, whole.run_id)


def _points(client: MlflowClient, run_id: str) -> dict[str, int]:
    """Points logged per metric."""
    keys = client.get_run(run_id).data.metrics
    return {key: len(client.get_metric_history(run_id, key)) for key in keys}


def test_a_trainer_that_comes_back_after_its_run_was_taken_over_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ABLATION_LEASE_STALE_S", "3")
    uri = f"sqlite:///{tmp_path}/store.db"
    job, store = _tiny_job(uri, tmp_path, "paused", steps=5000)
    client = MlflowClient(uri)
    context = mp.get_context("spawn")
    out = context.Queue()
    worker = context.Process(target=train_run, args=(job, out))
    worker.start()
    try:
        folder = Path(job.checkpoints.folder)
        deadline = time.time() + 300
        while not (folder.exists() and any(folder.glob("*.pt"))):
            assert worker.is_alive() and time.time() < deadline
            time.sleep(0.2)
        os.kill(worker.pid, signal.SIGSTOP)  # paused (swapped out, a stalled disk...)
        time.sleep(4.0)  # past the stale time without a heartbeat
        successor = Lease.claim(client, store.parent_id, job.run_id, job.run.name, "rerun")
        assert successor.generation == 2
        logged = _points(client, job.run_id)
        os.kill(worker.pid, signal.SIGCONT)
        assert out.get(timeout=120) == "lost"
        worker.join(timeout=60)
    finally:
        if worker.is_alive():
            worker.kill()
    after = client.get_run(job.run_id)
    assert _points(client, job.run_id) == logged  # it wrote nothing more
    assert after.info.status == "RUNNING"  # and did not mark the successor's run FAILED
    assert "lease.released" not in after.data.tags


def _start(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """The runner in the background in its own session, as from a terminal (Ctrl-C's
    SIGINT handled even when this test runs where SIGINT is ignored); stdout and stderr
    unbuffered to files."""
    with open(cwd / "out.log", "w") as out, open(cwd / "err.log", "w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "ablations", *args, "--no-report"],
            cwd=cwd,
            env={**_cli_env(), "PYTHONUNBUFFERED": "1", **(env or {})},
            stdout=out,
            stderr=err,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )


def _kill_group(process: subprocess.Popen) -> None:
    """Whatever is left of a command's session, pass or fail."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _wait_for(condition: Any, process: subprocess.Popen, cwd: Path, timeout: float = 300) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = condition()
        if found:
            return found
        assert process.poll() is None, (cwd / "err.log").read_text()[-2000:]
        time.sleep(0.2)
    raise AssertionError("timed out")


@pytest.mark.slow
def test_a_second_command_skips_a_run_in_training_and_workers_die_with_a_killed_driver(
    tmp_path: Path,
) -> None:
    uri = f"sqlite:///{tmp_path}/store.db"
    args = ["--env", "cartpole", "--seeds", "1", "--arms", "coupled", "--steps", "800"]
    args += ["--tracking-uri", uri, "--checkpoint-every", "200", "--experiment", "two", *TINY]
    first = _start(tmp_path, *args)
    try:
        checkpoints = tmp_path / "checkpoints"
        _wait_for(lambda: any(checkpoints.rglob("*.pt")), first, tmp_path)
        (worker,) = _run_processes(first.pid)
        os.kill(worker, signal.SIGSTOP)  # hold it mid-run while the second command looks

        second = run_cli(tmp_path, *args, timeout=300)
        assert second.returncode == 3, second.stderr[-2000:]
        assert "1 being trained by another command, 0 to run" in second.stdout
        assert "coupled-seed0" in second.stderr.strip().splitlines()[-1]

        os.kill(first.pid, signal.SIGKILL)  # the driver only: its worker must not outlive it
        first.wait()
        deadline = time.time() + 20
        while time.time() < deadline and _alive(worker):
            time.sleep(0.2)
        assert not _alive(worker), "the worker outlived its driver"
    finally:
        _kill_group(first)

    client = MlflowClient(uri)
    (orphan,) = children(client, "two").values()
    assert orphan.info.status == "RUNNING"  # nobody was left to mark it
    # An immediate rerun takes the dead worker's run over and finishes it, once.
    rerun = run_cli(tmp_path, *args, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    (run,) = children(client, "two").values()
    assert run.info.status == "FINISHED"
    assert run.data.tags["lease.generation"] == "2"  # the killed worker's, then the rerun's
    for key in ("loss/wm", "eval/return", "episode/return"):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        assert len(steps) == len(set(steps)) and max(steps) >= 700, key


@pytest.mark.slow
def test_ctrl_c_before_any_run_starts_marks_what_was_created_killed(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/store.db"
    args = ["--env", "cartpole", "--seeds", "1", "--steps", "100000"]
    args += ["--tracking-uri", uri, "--experiment", "abort", *TINY]
    command = _start(tmp_path, *args)
    try:
        _wait_for(
            lambda: "ablation 'abort'" in (tmp_path / "out.log").read_text(), command, tmp_path
        )
        os.killpg(command.pid, signal.SIGINT)  # Ctrl-C at the terminal, at the estimate
        assert command.wait(timeout=120) == 130
    finally:
        _kill_group(command)
    assert "Traceback" not in (tmp_path / "err.log").read_text()
    client = MlflowClient(uri)
    runs = children(client, "abort")
    assert sorted(runs) == ["coupled-seed0", "separate-seed0"]
    assert {run.info.status for run in runs.values()} == {"KILLED"}
    experiment = client.get_experiment_by_name("abort")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`ablation.role` = 'parent'")
    assert parent.info.status == "KILLED"

    # The report of an ablation with nothing finished: one line, non-zero, no PDF.
    report = subprocess.run(
        [sys.executable, "-m", "reports.build", "--experiment", "abort", "--tracking-uri", uri],
        cwd=tmp_path,
        env=_cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode != 0
    assert len(report.stderr.strip().splitlines()) == 1 and "no finished runs" in report.stderr
    assert not (tmp_path / "reports").exists()


def test_the_report_creates_no_store_where_there_is_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from reports.build import main as report

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert report([]) == 2  # MLflow's default store, ./mlflow.db
    assert report(["--tracking-uri", f"sqlite:///{tmp_path}/sub/mlflow.db"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all("no MLflow store at" in line for line in lines)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "1000000000"], "SEEDS must be at most 1000"),
        (["--seeds", "2", "--set", "wm.lr=nan"], "wm.lr must be in (0, inf)"),
        (["--seeds", "2", "--set", "wm.lr=-1"], "wm.lr must be in (0, inf)"),
        (["--seeds", "2", "--set", "ac.discount=nan"], "ac.discount must be in (0, 1]"),
        (["--seeds", "2", "--set", "ac.entropy=nan"], "ac.entropy must be in [0, inf)"),
        (["--seeds", "2", "--set", "model.unimix=2"], "model.unimix must be in [0, 1)"),
        (["--seeds", "2", "--set", "train.eval_episodes=-3"], "train.eval_episodes must be"),
    ],
)
def test_values_that_would_poison_training_are_one_line_and_create_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    from ablations.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(["--env", "cartpole", *args, "--tracking-uri", f"sqlite:///{tmp_path}/s.db"])
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not list(tmp_path.iterdir())


def test_a_run_whose_losses_become_non_finite_stops_with_a_reason() -> None:
    from agent import Trainer
    from agent.trainer import NonFiniteLossError
    from tests.conftest import tiny_config

    huge = {f"{key}": "1e30" for key in ("wm__lr", "ac__actor_lr", "ac__critic_lr")}
    trainer = Trainer(tiny_config(train__steps=300, train__log_every=16, **huge))
    with pytest.raises(NonFiniteLossError, match=r"loss/wm.* became non-finite by step \d+"):
        trainer.train()
    assert not trainer.done


@pytest.mark.slow
def test_the_start_check_waits_for_a_slow_tracking_server_until_its_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_mlflow_server(tmp_path, port)
    # A frozen server, as on a machine too loaded to schedule it: the kernel still accepts
    # connections, nobody answers them.
    monkeypatch.setattr(tracking_store, "PROBE_TIMEOUT_S", 1)
    thaw = threading.Timer(5.0, os.killpg, (server.pid, signal.SIGCONT))
    try:
        os.killpg(server.pid, signal.SIGSTOP)
        thaw.start()
        start = time.monotonic()
        check_reachable(uri)  # probes time out for 5 s, then one is answered
        assert time.monotonic() - start >= 4.5

        os.killpg(server.pid, signal.SIGSTOP)
        monkeypatch.setattr(tracking_store, "REACHABLE_DEADLINE_S", 3.0)
        start = time.monotonic()
        with pytest.raises(
            TrackingError, match=r"at http://127.0.0.1:\d+: it did not answer within 3 s"
        ):
            check_reachable(uri)
        assert 3.0 <= time.monotonic() - start < 30
    finally:
        thaw.cancel()
        os.killpg(server.pid, signal.SIGCONT)
        stop_server(server)


@pytest.mark.slow
def test_a_tracking_server_outage_mid_run_is_ridden_out(tmp_path: Path) -> None:
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_mlflow_server(tmp_path, port)
    args = ["--env", "cartpole", "--seeds", "1", "--arms", "coupled", "--steps", "800"]
    args += ["--tracking-uri", uri, "--checkpoint-every", "200", "--experiment", "outage", *TINY]
    # MLflow's own HTTP retries off (what the startup check used to leak into the workers):
    # the runner's bounded retry window alone must ride the outage out.
    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    command = _start(tmp_path, *args, env={"ABLATION_TRACKING_RETRY_S": "90", **quick})
    try:
        client = MlflowClient(uri)

        def first_checkpoint() -> bool:
            experiment = client.get_experiment_by_name("outage")
            runs = children(client, "outage") if experiment else {}
            return any("resume_checkpoint" in run.data.tags for run in runs.values())

        _wait_for(first_checkpoint, command, tmp_path)
        stop_server(server)  # the outage: every write of the run meets a closed port
        time.sleep(8)
        server = start_mlflow_server(tmp_path, port)
        assert command.wait(timeout=600) == 0, (tmp_path / "err.log").read_text()[-2000:]
        assert "Traceback" not in (tmp_path / "err.log").read_text()
        (run,) = children(client, "outage").values()
        assert run.info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss/wm")]
        assert len(steps) == len(set(steps)) and max(steps) == 800
    finally:
        _kill_group(command)
        stop_server(server)


def _immutable(path: Path) -> contextlib.AbstractContextManager[bool]:
    """``chattr +i`` on ``path`` for the block (root cannot write there either: permission bits
    do not stop root, the immutable flag does); yields False where the filesystem has no
    such flag."""

    @contextlib.contextmanager
    def flagged():
        made = subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
        try:
            yield made
        finally:
            if made:
                subprocess.run(["chattr", "-i", str(path)], check=True)

    return flagged()


@pytest.mark.skipif(sys.platform != "linux", reason="chattr is Linux's")
@pytest.mark.parametrize("existing", [False, True], ids=["new-store", "existing-store"])
def test_an_unwritable_store_is_one_line_and_writes_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    existing: bool,
) -> None:
    from ablations.cli import main

    folder = tmp_path / "store"
    folder.mkdir()
    db = folder / "mlflow.db"
    if existing:
        db.write_bytes(b"")
    before = sorted(p.name for p in folder.iterdir())
    monkeypatch.chdir(tmp_path)
    with _immutable(db if existing else folder) as made:
        assert made, "chattr +i failed: this test needs an ext4-like filesystem for tmp_path"
        with pytest.raises(SystemExit) as stop:
            main(["--env", "cartpole", "--seeds", "1", "--tracking-uri", f"sqlite:///{db}"])
        assert sorted(p.name for p in folder.iterdir()) == before
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "is not writable" in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
