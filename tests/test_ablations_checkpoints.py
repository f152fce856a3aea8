"""Checkpoint stores against a real MLflow SQLite store, with a stand-in for the trainer."""

from __future__ import annotations

import pickle
from pathlib import Path

from mlflow.tracking import MlflowClient

from ablations.checkpoints import (
    CHECKPOINT_STORES,
    POINTER_TAG,
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


def test_mlflow_store_keeps_one_checkpoint_per_run_and_clears_it(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/store.db"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("x")).info.run_id
    store = CHECKPOINT_STORES["mlflow"](uri, run_id, str(tmp_path / "unused"))
    assert isinstance(store, MlflowCheckpoints)
    store = pickle.loads(pickle.dumps(store))  # it travels to worker processes

    assert not store.load(FakeTrainer())
    store.save(FakeTrainer(300))
    store.save(FakeTrainer(600))
    assert [a.path for a in client.list_artifacts(run_id, "resume")] == ["resume/checkpoint-600.pt"]
    assert client.get_run(run_id).data.tags[POINTER_TAG] == "resume/checkpoint-600.pt"
    resumed = FakeTrainer()
    assert store.load(resumed) and resumed.env_steps == 600

    store.clear()
    assert not client.list_artifacts(run_id, "resume")
    assert POINTER_TAG not in client.get_run(run_id).data.tags
    assert not store.load(FakeTrainer())
    assert not (tmp_path / "unused").exists()


def test_local_store_is_a_file_under_the_checkpoint_dir(tmp_path: Path) -> None:
    store = CHECKPOINT_STORES["local"]("sqlite:///x.db", "abc", str(tmp_path / "checkpoints"))
    assert store == LocalCheckpoints(str(tmp_path / "checkpoints" / "abc.pt"))
    store.save(FakeTrainer(300))
    resumed = FakeTrainer()
    assert store.load(resumed) and resumed.env_steps == 300
    store.clear()
    assert not store.load(FakeTrainer()) and not list((tmp_path / "checkpoints").iterdir())


def test_default_store_goes_through_a_tracking_server_only() -> None:
    assert default_checkpoint_store("http://10.0.0.1:5000") == "mlflow"
    assert default_checkpoint_store("https://mlflow.example") == "mlflow"
    assert default_checkpoint_store("sqlite:////tmp/mlflow.db") == "local"
