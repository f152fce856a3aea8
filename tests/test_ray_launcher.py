"""``--launcher ray`` end to end: a real Ray head and a real MLflow tracking server, started here.

The workers share no folder with the driver: metrics, artifacts and resume checkpoints all go
through the server, which the tests read back through its REST API.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests
from servers import DEADLINE_S, free_port, start_mlflow_server, stop_server, wait_for_port
from test_ablations import TINY  # tests/ is on sys.path (no package), as pytest runs it

from ablations.cli import main

BIN = Path(sys.executable).parent
# Ray 2.60 turns token authentication on for a head when ~/.ray/auth_token exists, but not
# for a driver given an address: state it for both, with a token of this run's own.
RAY_AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex}
CHILDREN = "tags.`ablation.role` = 'child'"
ABLATION_TIMEOUT_S = 900
"""How long a tiny ablation may take: a few minutes on two idle cores, several times that
on a loaded machine (the two-by-two took over 400 s with a load average of 15 on 2 cores)."""


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Ray head on loopback with 2 CPUs; ``host:port`` for ``RAY_ADDRESS``."""
    pytest.importorskip("ray")
    port = free_port()
    command = [
        str(BIN / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1",
        "--port", str(port), "--ray-client-server-port", str(free_port()),
        "--num-cpus", "2", "--include-dashboard=false", "--disable-usage-stats",
        "--object-store-memory", str(100 * 2**20),
    ]  # fmt: skip
    try:
        env = {**os.environ, **RAY_AUTH}
        started = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=DEADLINE_S
        )
        assert started.returncode == 0, started.stderr[-2000:]
        wait_for_port("127.0.0.1", port)  # its GCS, which drivers connect to
        yield f"127.0.0.1:{port}"
    finally:
        stop = [str(BIN / "ray"), "stop", "--force"]
        subprocess.run(stop, env={**os.environ, **RAY_AUTH}, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` on a free loopback port, with its own SQLite store and artifact folder."""
    port = free_port()
    server = start_mlflow_server(tmp_path_factory.mktemp("server"), port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(server)


def ablation(ray_address: str, tracking_uri: str, *args: str) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of a Ray ablation logging to the server."""
    env = {
        **os.environ,
        **RAY_AUTH,
        "RAY_ADDRESS": ray_address,
        "MLFLOW_TRACKING_URI": tracking_uri,
    }
    return [sys.executable, "-m", "ablations", "--launcher", "ray", *args, "--no-report"], env


def rest(uri: str, endpoint: str, **params: str) -> dict:
    response = requests.get(f"{uri}/api/2.0/mlflow/{endpoint}", params=params, timeout=30)
    response.raise_for_status()
    return response.json()


def child_runs(uri: str, experiment: str) -> dict[str, dict]:
    """Child runs by name through ``runs/search``: ``{"status", "run_id", "tags", "metrics"}``."""
    found = rest(uri, "experiments/get-by-name", experiment_name=experiment)
    body = {"experiment_ids": [found["experiment"]["experiment_id"]], "filter": CHILDREN}
    response = requests.post(f"{uri}/api/2.0/mlflow/runs/search", json=body, timeout=30)
    response.raise_for_status()
    return {
        run["info"]["run_name"]: {
            "status": run["info"]["status"],
            "run_id": run["info"]["run_id"],
            "tags": {t["key"]: t["value"] for t in run["data"].get("tags", [])},
            "metrics": {m["key"]: m["value"] for m in run["data"].get("metrics", [])},
        }
        for run in response.json().get("runs", [])
    }


def artifacts(uri: str, run_id: str, path: str = "") -> set[str]:
    listing = rest(uri, "artifacts/list", run_id=run_id, path=path)
    return {entry["path"] for entry in listing.get("files", [])}


@pytest.mark.slow
def test_two_by_two_on_ray_logs_everything_through_the_server(
    tmp_path: Path, ray_address: str, tracking_uri: str
) -> None:
    args = ["--env", "cartpole", "--seeds", "2", "--steps", "600", *TINY, "--experiment", "ray2x2"]
    command, env = ablation(ray_address, tracking_uri, *args)
    first = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=ABLATION_TIMEOUT_S
    )
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"Ray at {ray_address}" in first.stdout

    runs = child_runs(tracking_uri, "ray2x2")
    assert sorted(runs) == ["coupled-seed0", "coupled-seed1", "separate-seed0", "separate-seed1"]
    for name, run in runs.items():
        assert run["status"] == "FINISHED", name
        assert run["metrics"]["final/env_steps"] == 600
        assert run["tags"]["worker_pid"] and run["tags"]["device"] == "cpu"
        files = artifacts(tracking_uri, run["run_id"])
        assert {"config.json", "checkpoint"} <= files, (name, files)
        assert "resume" not in files  # a finished run's checkpoint is deleted
        assert "checkpoint/final.pt" in artifacts(tracking_uri, run["run_id"], "checkpoint")
        config = requests.get(
            f"{tracking_uri}/get-artifact",
            params={"run_uuid": run["run_id"], "path": "config.json"},
            timeout=30,
        )
        assert json.loads(config.text)["train"]["steps"] == 600
    # Nothing was written next to the driver: no local store, artifacts or checkpoints.
    assert not {"mlflow.db", "mlruns", "checkpoints"} & {p.name for p in tmp_path.iterdir()}

    again = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=ABLATION_TIMEOUT_S
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 already finished, 0 to run" in again.stdout


@pytest.mark.slow
def test_a_killed_ray_worker_is_retried_from_its_checkpoint_in_the_server(
    tmp_path: Path, ray_address: str, tracking_uri: str
) -> None:
    args = ["--env", "cartpole", "--seeds", "1", "--arms", "coupled,separate", "--steps", "1200"]
    args += ["--checkpoint-every", "300", *TINY, "--experiment", "raykill"]
    command, env = ablation(ray_address, tracking_uri, *args)
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        killed_name, killed_pid = None, 0
        deadline = time.time() + ABLATION_TIMEOUT_S
        while killed_name is None:
            assert process.poll() is None, "the ablation ended before any run had a checkpoint"
            assert time.time() < deadline, "no run uploaded a resume checkpoint"
            time.sleep(0.3)
            try:
                runs = child_runs(tracking_uri, "raykill")
            except requests.RequestException:
                continue  # the experiment does not exist yet, or a slow answer timed out
            for name, run in runs.items():
                pid = int(run["tags"].get("worker_pid", 0))
                if run["status"] == "RUNNING" and pid and "resume_checkpoint" in run["tags"]:
                    assert run["tags"]["resume_checkpoint"] in artifacts(
                        tracking_uri, run["run_id"], "resume"
                    )
                    # Only ever kill a Ray worker (the tag is read from the server).
                    assert "ray::" in " ".join(psutil.Process(pid).cmdline())
                    os.kill(pid, signal.SIGKILL)  # a lost worker, as when its node dies
                    killed_name, killed_pid = name, pid
                    break
        output, _ = process.communicate(timeout=ABLATION_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output[-3000:]

    runs = child_runs(tracking_uri, "raykill")
    assert {run["status"] for run in runs.values()} == {"FINISHED"}
    killed = runs[killed_name]
    assert int(killed["tags"]["worker_pid"]) != killed_pid  # a new worker finished it
    assert 300 <= int(killed["tags"]["resumed_from_step"]) < 1200
    assert killed["metrics"]["final/env_steps"] == 1200
    history = rest(
        tracking_uri, "metrics/get-history", run_id=killed["run_id"], metric_key="loss/wm"
    )
    steps = [point["step"] for point in history["metrics"]]
    assert steps == sorted(set(steps)) and steps[-1] == 1200  # nothing logged twice


@pytest.mark.slow
@pytest.mark.parametrize("listening", [False, True], ids=["closed-port", "not-ray"])
def test_unreachable_ray_address_exits_2_with_one_line_and_creates_nothing(
    tmp_path: Path, listening: bool
) -> None:
    pytest.importorskip("ray")
    with socket.socket() as listener:  # something that accepts connections but is not Ray
        listener.bind(("127.0.0.1", 0))
        if listening:
            listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        start = time.time()
        result = subprocess.run(
            [sys.executable, "-m", "ablations", "--env", "cartpole", "--seeds", "2"]
            + ["--launcher", "ray", "--no-report"],
            cwd=tmp_path,
            env={**env, "RAY_ADDRESS": address},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"RAY_ADDRESS={address}" in lines[0], result.stderr
    assert time.time() - start < 60
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_without_ray_installed_the_ray_launcher_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    monkeypatch.delitem(sys.modules, "ablations.launch.ray_cluster", raising=False)
    # `from ablations.launch import ray_cluster` reads the package attribute first, which
    # an earlier test's import leaves behind.
    import ablations.launch

    monkeypatch.delattr(ablations.launch, "ray_cluster", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["--env", "cartpole", "--seeds", "2", "--launcher", "ray", "--no-report"])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "pip install '.[ray]'" in lines[0], lines
    assert not (tmp_path / "mlflow.db").exists()
