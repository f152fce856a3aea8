"""An ablation is created once however many commands start together, on a real tracking
server (which has no file lock to serialise them) as on SQLite: one experiment, one parent
run, one child run per (task, arm, seed), whatever else the race left deleted."""

from __future__ import annotations

import multiprocessing as mp
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fault_processes import open_ablation
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from test_ablations import TINY, _cli_env

from ablations.integrity.creation import LOST, PARENT_CLAIM, WON, child_claim_key
from ablations.plan.spec import AblationSpec
from ablations.tracking.store import AblationStore
from benchmarks.soak.server import TrackingServer

SPEC = AblationSpec("cartpole", 1, ("separate", "coupled"), "debug", None, {}, "race")


def _runs(client: MlflowClient, experiment: str, view: int = ViewType.ACTIVE_ONLY) -> list:
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], run_view_type=view)


def _roles(runs: list) -> list[str]:
    return sorted(run.data.tags.get("ablation.role", "") for run in runs)


def test_openers_racing_on_a_server_create_one_experiment_one_parent_and_each_child_once(
    tmp_path: Path,
) -> None:
    server = TrackingServer(tmp_path / "server")
    server.start()
    context = mp.get_context("spawn")
    try:
        for attempt in range(4):  # a fresh experiment each time: a new race for every record
            name = f"race{attempt}"
            go, out = context.Event(), context.Queue()
            openers = [
                context.Process(target=open_ablation, args=(server.uri, go, out, name))
                for _ in range(3)
            ]
            for process in openers:
                process.start()
            try:
                assert [out.get(timeout=180)[0] for _ in openers] == ["ready"] * 3
                go.set()  # all three past their imports: they race for real
                answers = [out.get(timeout=180) for _ in openers]
            finally:
                for process in openers:
                    process.join(timeout=60)
            assert [kind for kind, _ in answers] == ["opened"] * 3, answers
            assert len({str(ids) for _, ids in answers}) == 1  # one parent, the same children
            client = MlflowClient(server.uri)
            active = _runs(client, name)
            assert _roles(active) == ["child", "child", "parent"]
            (parent,) = (run for run in active if run.data.tags["ablation.role"] == "parent")
            assert parent.data.params[PARENT_CLAIM] == WON
            kept = {run.info.run_id for run in active}
            deleted = [  # what lost its claim: marked, and out of every analysis's sight
                run for run in _runs(client, name, ViewType.ALL) if run.info.run_id not in kept
            ]
            assert {run.data.tags["ablation.role"] for run in deleted} <= {"duplicate"}
    finally:
        server.stop()


def test_a_candidate_parent_left_by_a_dead_command_is_resolved_to_one(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/store.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("race")
    # Two commands created candidates and died before either claimed one.
    left = sorted(
        client.create_run(experiment, tags={"ablation.role": "parent"}).info.run_id
        for _ in range(2)
    )
    store = AblationStore(uri, SPEC)
    assert store.parent_id == left[0]  # the smallest id: no new run was needed
    assert client.get_run(left[1]).info.lifecycle_stage == "deleted"
    assert client.get_run(left[1]).data.params[PARENT_CLAIM] == LOST
    assert AblationStore(uri, SPEC).parent_id == left[0]  # and it stays the parent


def test_a_child_half_made_by_a_dead_command_is_replaced(
    tmp_path: Path,
) -> None:
    uri = f"sqlite:///{tmp_path}/store.db"
    client = MlflowClient(uri)
    store = AblationStore(uri, SPEC)
    separate, coupled = SPEC.runs()
    kept, _ = store.child_for(separate, "cpu")
    claims = client.get_run(store.parent_id).data.params
    assert claims[child_claim_key(separate.name)] == kept
    # A command that died while setting up coupled-seed0: created RUNNING, never SCHEDULED.
    half = client.create_run(
        store.experiment_id,
        run_name=coupled.name,
        tags={"mlflow.parentRunId": store.parent_id, "ablation.role": "child"},
    ).info.run_id
    assert coupled.name not in store.children()  # not a run to train, nor to report

    again = AblationStore(uri, SPEC)
    assert again.child_for(separate, "cpu") == (kept, "SCHEDULED")
    made, status = again.child_for(coupled, "cpu")
    assert made != half and status == "SCHEDULED"
    assert client.get_run(half).info.lifecycle_stage == "deleted"
    assert {name: run.info.run_id for name, run in again.children().items()} == {
        separate.name: kept,
        coupled.name: made,
    }


def test_a_child_made_before_claims_is_claimed_not_replaced(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/store.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("race")
    parent = client.create_run(experiment, tags={"ablation.role": "parent"}).info.run_id
    separate = SPEC.runs()[0]
    tags = {
        "mlflow.parentRunId": parent,
        "ablation.role": "child",
        "config_hash": separate.config_hash(),
    }
    old = client.create_run(experiment, run_name=separate.name, tags=tags).info.run_id
    client.set_terminated(old, "FINISHED")

    store = AblationStore(uri, SPEC)
    assert store.parent_id == parent
    assert store.child_for(separate, "cpu") == (old, "FINISHED")
    assert client.get_run(parent).data.params[child_claim_key(separate.name)] == old


def _start(cwd: Path, uri: str, name: str) -> subprocess.Popen:
    args = ["--env", "cartpole", "--seeds", "1", "--arms", "separate,coupled"]
    args += ["--steps", "300", "--tracking-uri", uri, "--experiment", name, *TINY]
    cwd.mkdir(parents=True)
    with open(cwd / "out.log", "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ablations", *args, "--no-report"],
            cwd=cwd,
            env=_cli_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.mark.slow
def test_two_first_commands_on_a_fresh_server_train_one_ablation_once(tmp_path: Path) -> None:
    for attempt in range(3):
        server = TrackingServer(tmp_path / f"server{attempt}")
        server.start()
        commands: list[subprocess.Popen] = []
        try:
            commands += [_start(tmp_path / f"c{attempt}-{i}", server.uri, "twice") for i in (0, 1)]
            deadline = time.monotonic() + 900
            for command in commands:
                command.wait(timeout=max(deadline - time.monotonic(), 1))
            logs = [(tmp_path / f"c{attempt}-{i}" / "out.log").read_text() for i in (0, 1)]
            # Each trains what the other does not (exit 0, or 3 when it left the other a run to
            # finish): never a store error, never a run twice.
            codes = [command.returncode for command in commands]
            assert set(codes) <= {0, 3}, (codes, [log[-1500:] for log in logs])
            client = MlflowClient(server.uri)
            active = _runs(client, "twice")
            assert _roles(active) == ["child", "child", "parent"]
            children = [run for run in active if run.data.tags["ablation.role"] == "child"]
            assert sorted(run.info.run_name for run in children) == [
                "coupled-seed0",
                "separate-seed0",
            ]
            assert {run.info.status for run in active} == {"FINISHED"}
            for run in children:
                steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss/wm")]
                assert len(steps) == len(set(steps)) and max(steps) == 300
        finally:
            for command in commands:
                if command.poll() is None:
                    command.kill()
            server.stop()
