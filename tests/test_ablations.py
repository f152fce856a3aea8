"""The ablation runner end to end: real subprocesses, a real MLflow SQLite store, CartPole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from ablations.launch.jobs import Resources
from ablations.launch.local import plan_local

# A run of a few seconds: tiny model, few steps, few updates.
TINY = [
    "--preset", "debug",
    "--set", "train.prefill=200",
    "--set", "train.train_ratio=32",
    "--set", "train.eval_every=200",
    "--set", "train.eval_episodes=2",
    "--set", "train.log_every=100",
    "--cpus-per-run", "1",
]  # fmt: skip

CONTRACT_METRICS = {
    "eval/return",
    "episode/return",
    "episode/length",
    "time/collect",
    "time/wm",
    "time/imagine",
    "time/ac",
    "time/total",
    "speed/updates_per_s",
    "speed/env_steps_per_s",
    "loss/wm",
    "loss/actor",
    "loss/critic",
    "diversity/distinct_starts",
    "diversity/h_dispersion",
    "diversity/latent_entropy",
    "diversity/replay_age",
    "final/eval_return",
    "final/updates_per_s",
}


def _cli_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


def start_cli(cwd: Path, *args: str) -> subprocess.Popen:
    """The runner in the background, in its own process group, its stderr going to
    ``cwd / "stderr.log"`` (a file: an unread pipe would fill and stall the runner)."""
    with open(cwd / "stderr.log", "w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "ablations", *args, "--no-report"],
            cwd=cwd,
            env=_cli_env(),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )


def run_module(
    module: str, cwd: Path, *args: str, timeout: float = 600
) -> subprocess.CompletedProcess:
    """``python -m module args`` in ``cwd`` to completion, output captured, with MLflow's
    default store (no ``MLFLOW_TRACKING_URI`` from the caller's environment)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=_cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_cli(
    cwd: Path, *args: str, timeout: float = 600, report: bool = False
) -> subprocess.CompletedProcess:
    return run_module(
        "ablations", cwd, *args, *([] if report else ["--no-report"]), timeout=timeout
    )


def children(client: MlflowClient, experiment: str) -> dict[str, object]:
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], "tags.`ablation.role` = 'child'")
    return {run.info.run_name: run for run in runs}


@pytest.mark.slow
def test_two_by_two_ablation_then_rerun_is_idempotent(tmp_path: Path) -> None:
    # Default store (./mlflow.db in the working directory) and two parallel workers.
    args = ["--env", "cartpole", "--seeds", "2", "--steps", "600", "--jobs", "2", *TINY]
    args += ["--experiment", "e2e"]
    first = run_cli(tmp_path, *args, report=True)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "locked" not in first.stderr.lower()
    assert "estimated duration: about" in first.stdout
    assert (tmp_path / "mlflow.db").exists()
    # The ablation ends with its report, written locally and logged to the parent run.
    pdf = tmp_path / "reports" / "out" / "e2e.pdf"
    assert f"report: {Path('reports/out/e2e.pdf')}" in first.stdout and pdf.stat().st_size > 0

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("e2e")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`ablation.role` = 'parent'")
    assert parent.info.status == "FINISHED" and parent.info.run_name == "e2e"
    assert "summary/coupled/final_return" in parent.data.metrics
    report_files = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert "report/e2e.pdf" in report_files
    # Its description, rewritten once the report was attached, links it.
    linked = "The PDF report (statistics, learning curves): [artifacts → `report/`]"
    assert linked in parent.data.tags["mlflow.note.content"]

    runs = children(client, "e2e")
    assert sorted(runs) == ["coupled-seed0", "coupled-seed1", "separate-seed0", "separate-seed1"]
    for name, run in runs.items():
        assert run.info.status == "FINISHED", name
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["arm"] == name.split("-")[0]
        assert run.data.tags["seed"] == name[-1]
        for tag in ("schedule", "starts", "env", "preset", "git_commit", "device", "torch_version"):
            assert run.data.tags[tag], tag
        assert run.data.params["train.steps"] == "600"
        assert run.data.params["train.schedule"] == run.data.tags["schedule"]
        missing = CONTRACT_METRICS - set(run.data.metrics)
        assert not missing, (name, missing)
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.json", "checkpoint"} <= artifacts
        history = client.get_metric_history(run.info.run_id, "eval/return")
        assert [m.step for m in history] == sorted({m.step for m in history})  # no duplicates
    # The separate arm samples starts; coupled never does.
    assert "time/starts" in runs["separate-seed0"].data.metrics
    assert "time/starts" not in runs["coupled-seed0"].data.metrics
    assert not list(tmp_path.joinpath("checkpoints").iterdir())  # finished runs leave none

    counts = {n: len(client.get_metric_history(r.info.run_id, "loss/wm")) for n, r in runs.items()}
    second = run_cli(tmp_path, *args)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "4 already finished, 0 to run" in second.stdout
    assert "estimated duration" not in second.stdout
    again = children(client, "e2e")
    assert {n: r.info.run_id for n, r in again.items()} == {
        n: r.info.run_id for n, r in runs.items()
    }
    assert counts == {
        n: len(client.get_metric_history(r.info.run_id, "loss/wm")) for n, r in again.items()
    }
    # The rerun (--no-report) leaves the first report attached, and the description says so.
    assert linked in client.get_run(parent.info.run_id).data.tags["mlflow.note.content"]


@pytest.mark.slow
def test_killed_run_resumes_from_checkpoint_in_same_mlflow_run(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/store.db"
    args = ["--env", "cartpole", "--seeds", "1", "--arms", "coupled", "--steps", "1200"]
    args += ["--tracking-uri", uri, "--checkpoint-every", "300", "--experiment", "resume", *TINY]
    process = start_cli(tmp_path, *args)
    checkpoints = tmp_path / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and not (checkpoints.exists() and any(checkpoints.rglob("*.pt"))):
        assert process.poll() is None, "the run ended before its first checkpoint"
        time.sleep(0.2)
    assert any(checkpoints.rglob("*.pt")), "no checkpoint was written"
    os.killpg(process.pid, signal.SIGKILL)  # the driver and its worker, like a lost machine
    process.wait()

    client = MlflowClient(uri)
    (killed,) = children(client, "resume").values()
    assert killed.info.status == "RUNNING"

    rerun = run_cli(tmp_path, *args)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    (finished,) = children(client, "resume").values()
    assert finished.info.run_id == killed.info.run_id
    assert finished.info.status == "FINISHED"
    resumed_from = int(finished.data.tags["resumed_from_step"])
    assert 300 <= resumed_from < 1200
    assert finished.data.metrics["final/env_steps"] == 1200
    steps = [m.step for m in client.get_metric_history(finished.info.run_id, "loss/wm")]
    assert steps == sorted(set(steps)) and steps[-1] == 1200


def _state_and_parent(pid: int) -> tuple[str, int] | None:
    """A process's state letter and parent pid from /proc, or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    found = _state_and_parent(pid)
    return found is not None and found[0] != "Z"  # a zombie has exited


def _run_processes(pid: int) -> list[int]:
    """Live multiprocessing workers whose parent is ``pid``."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        stat = _state_and_parent(int(proc.name))
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:  # the process ended while we looked
            continue
        if stat is not None and stat[0] != "Z" and stat[1] == pid and b"spawn_main" in cmdline:
            found.append(int(proc.name))
    return found


@pytest.mark.slow
def test_sigterm_stops_the_run_processes_too(tmp_path: Path) -> None:
    args = ["--env", "cartpole", "--seeds", "1", "--arms", "coupled", "--steps", "100000"]
    args += ["--tracking-uri", f"sqlite:///{tmp_path}/store.db", "--experiment", "term", *TINY]
    process = start_cli(tmp_path, *args)
    try:
        deadline, workers = time.time() + 300, []
        while time.time() < deadline and not workers:
            assert process.poll() is None, (tmp_path / "stderr.log").read_text()[-2000:]
            workers = _run_processes(process.pid)
            time.sleep(0.2)
        assert workers, "no run process was started"
        process.send_signal(signal.SIGTERM)  # the driver only, as `kill PID` or a scheduler does
        assert process.wait(timeout=60) == 143
        assert "rerun the same command to resume" in (tmp_path / "stderr.log").read_text()
        deadline = time.time() + 30
        while time.time() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.2)
        assert not [pid for pid in workers if _alive(pid)], "run processes left running"
        # What the command ran is marked KILLED (MLflow's status for it), parent included.
        client = MlflowClient(f"sqlite:///{tmp_path}/store.db")
        (run,) = children(client, "term").values()
        assert run.info.status == "KILLED"
        experiment = client.get_experiment_by_name("term")
        (parent,) = client.search_runs(
            [experiment.experiment_id], "tags.`ablation.role` = 'parent'"
        )
        assert parent.info.status == "KILLED"
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # whatever is left, pass or fail
        process.wait()


@pytest.mark.skipif(torch.cuda.is_available(), reason="with GPUs, one local run per GPU")
def test_cpus_per_run_sets_threads_and_the_default_number_of_local_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    default = plan_local(Resources())
    assert (default.parallel, default.threads) == (8, 1)  # one run per core
    # Fewer runs to train than cores: the cores are split between those runs.
    assert [default.threads_for(runs) for runs in (1, 2, 3, 8, 20, 0)] == [8, 4, 2, 1, 1, 8]
    two = plan_local(Resources(cpus_per_run=2))
    assert (two.parallel, two.threads) == (4, 2)
    assert two.threads_for(1) == 2  # threads the user fixed stay fixed
    capped = plan_local(Resources(jobs=2))
    assert (capped.parallel, capped.threads, capped.threads_for(1)) == (2, 4, 8)
    one = plan_local(Resources(jobs=3, cpus_per_run=1))
    assert (one.parallel, one.threads, one.threads_for(1)) == (3, 1, 1)


def test_a_crashing_run_is_marked_failed_and_named(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/store.db"
    result = run_cli(
        tmp_path, "--env", "cartpole", "--seeds", "1", "--arms", "separate", "--steps", "600",
        "--tracking-uri", uri, "--experiment", "crash", "--set", "env.id=NoSuchEnv-v0", *TINY,
    )  # fmt: skip
    assert result.returncode == 1
    assert "separate-seed0" in result.stderr.splitlines()[-1]
    (run,) = children(MlflowClient(uri), "crash").values()
    assert run.info.status == "FAILED"
    assert "NoSuchEnv" in run.data.tags["error"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "nope", "--seeds", "2"], "unknown env 'nope'"),
        (["--env", "cartpole", "--seeds", "2", "--arms", "separate,bogus"], "unknown arm"),
        (["--env", "cartpole", "--seeds", "0"], "SEEDS must be positive"),
        (["--env", "cartpole", "--seeds", "two"], "SEEDS must be a whole number"),
        (["--env", "cartpole", "--seeds", "2", "--steps", "10"], "to run one training iteration"),
        (["--env", "cartpole", "--seeds", "2", "--jobs", "0"], "JOBS must be positive"),
        (
            ["--env", "cartpole", "--seeds", "2", "--tracking-uri", "http://127.0.0.1:9"],
            "cannot reach the MLflow tracking store",
        ),
        (
            ["--env", "cartpole", "--seeds", "2", "--tracking-uri", "sqlite:////no/such/dir/m.db"],
            "does not exist",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line_and_creates_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = run_cli(tmp_path, *args, timeout=120)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_git_commit_is_read_from_the_code_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ablations.tracking.provenance import git_commit

    repo = Path(__file__).resolve().parents[1]
    expected = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=repo
    ).stdout.strip()
    monkeypatch.chdir(tmp_path)  # a folder outside any checkout, as a run started from /tmp
    assert git_commit().removesuffix("-dirty") == expected != ""
