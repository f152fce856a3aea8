"""Checkpoint stores against a real MLflow SQLite store, with a stand-in for the trainer."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ablations.integrity.checkpoints import (
    CHECKPOINT_STORES,
    POINTER_TAG,
    CheckpointError,
    LocalCheckpoints,
    MlflowCheckpoints,
    default_checkpoint_store,
)


class FakeTrainer:
    """What a checkpoint store uses of the trainer: ``env_steps``, ``save`` and ``load``."""

    def __init__(self, env_steps: int = 0):
        self.env_steps = env_steps

    def save(self, path: str) -> None:
        Path(path).write_text(str(self.env_steps))

    def load(self, path: str) -> None:
        self.env_steps = int(Path(path).read_text())


class DiskFullTrainer(FakeTrainer):
    """Writes part of its state, then meets a full disk (``/dev/full``: a real ENOSPC)."""

    def save(self, path: str) -> None:
        Path(path).write_text("part of a checkpoint")
        with open("/dev/full", "w") as full:
            full.write("x" * 65536)
            full.flush()


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_mlflow_store_keeps_the_last_two_checkpoints_of_a_run_and_clears_them(
    tmp_path: Path,
) -> None:
    uri = f"sqlite:///{tmp_path}/store.db"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("x")).info.run_id
    store = CHECKPOINT_STORES["mlflow"](uri, run_id, str(tmp_path / "unused"))
    assert isinstance(store, MlflowCheckpoints)
    store = pickle.loads(pickle.dumps(store))  # it travels to worker processes

    assert not store.load(FakeTrainer())
    for steps in (300, 600, 900):
        store.save(FakeTrainer(steps))
    kept = [a.path for a in client.list_artifacts(run_id, "resume")]
    assert sorted(p.split("-")[1] for p in kept) == ["600", "900"]  # the last two
    assert client.get_run(run_id).data.tags[POINTER_TAG] in kept
    resumed = FakeTrainer()
    assert store.load(resumed) and resumed.env_steps == 900

    store.clear()
    assert not client.list_artifacts(run_id, "resume")
    assert POINTER_TAG not in client.get_run(run_id).data.tags
    assert not store.load(FakeTrainer())
    assert not (tmp_path / "unused").exists()


def test_local_store_keeps_two_files_per_run_and_clears_them(tmp_path: Path) -> None:
    store = CHECKPOINT_STORES["local"]("sqlite:///x.db", "abc", str(tmp_path / "checkpoints"))
    assert store == LocalCheckpoints(str(tmp_path / "checkpoints" / "abc"))
    for steps in (300, 600, 900):
        store.save(FakeTrainer(steps))
    assert [n.split("-")[1] for n in _names(tmp_path / "checkpoints" / "abc")] == ["600", "900"]
    resumed = FakeTrainer()
    assert store.load(resumed) and resumed.env_steps == 900
    store.clear()
    assert not store.load(FakeTrainer()) and not list((tmp_path / "checkpoints").iterdir())


def test_local_checkpoints_are_keyed_to_the_sqlite_store_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    store = CHECKPOINT_STORES["local"](uri, "abc", None)
    assert store == LocalCheckpoints(str(tmp_path / "store" / "checkpoints" / "abc"))


def test_a_corrupt_newest_checkpoint_falls_back_to_the_older_one_and_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = LocalCheckpoints(str(tmp_path / "abc"))
    store.save(FakeTrainer(300))
    store.save(FakeTrainer(600))
    older, newest = _names(tmp_path / "abc")
    (tmp_path / "abc" / newest).write_text("6")  # truncated: its digest no longer matches
    resumed = FakeTrainer()
    assert store.load(resumed) and resumed.env_steps == 300
    assert newest in capsys.readouterr().err

    (tmp_path / "abc" / older).write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError) as error:
        store.load(FakeTrainer())
    assert newest in str(error.value) and older in str(error.value)
    assert len(str(error.value).splitlines()) == 1


def test_mlflow_store_skips_a_cut_off_upload(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/store.db"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("x")).info.run_id
    store = MlflowCheckpoints(uri, run_id)
    store.save(FakeTrainer(300))
    store.save(FakeTrainer(600))
    newest = sorted(a.path for a in client.list_artifacts(run_id, "resume"))[-1]
    local = Path(client.get_run(run_id).info.artifact_uri.removeprefix("file://")) / newest
    local.write_text("60")
    resumed = FakeTrainer()
    assert store.load(resumed) and resumed.env_steps == 300


def test_a_full_disk_says_so_and_leaves_no_partial_files(tmp_path: Path) -> None:
    store = LocalCheckpoints(str(tmp_path / "abc"))
    store.save(FakeTrainer(300))
    with pytest.raises(CheckpointError, match="^disk full: ") as error:
        store.save(DiskFullTrainer(600))
    assert len(str(error.value).splitlines()) == 1
    assert [n.split("-")[1] for n in _names(tmp_path / "abc")] == ["300"]
    # What a killed save left behind is removed before the next load or save.
    shutil.copy(tmp_path / "abc" / _names(tmp_path / "abc")[0], tmp_path / "abc" / "x.pt.tmp")
    (tmp_path / "abc" / "checkpoint-900.partial").write_text("9")
    resumed = FakeTrainer()
    assert store.load(resumed) and resumed.env_steps == 300
    assert [n.split("-")[1] for n in _names(tmp_path / "abc")] == ["300"]
    assert os.listdir(tmp_path / "abc") == [_names(tmp_path / "abc")[0]]


def test_default_store_goes_through_a_tracking_server_only() -> None:
    assert default_checkpoint_store("http://10.0.0.1:5000") == "mlflow"
    assert default_checkpoint_store("https://mlflow.example") == "mlflow"
    assert default_checkpoint_store("sqlite:////tmp/mlflow.db") == "local"
