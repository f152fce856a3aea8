"""Where a run keeps its resume checkpoint: a local file, or an artifact of its own MLflow run.

On one machine a file under ``checkpoints/`` is quickest. Workers on other machines share
no disk with the driver, so with a tracking server the checkpoint travels through it as an
artifact of the run, and a retried or rerun worker anywhere downloads it. The worker only
sees :class:`CheckpointStore`; :data:`CHECKPOINT_STORES` is where the choice is made.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from mlflow.artifacts import download_artifacts
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient

from ablations.tracking import retry_locked

if TYPE_CHECKING:
    from agent.trainer import Trainer

RESUME_DIR = "resume"
POINTER_TAG = "resume_checkpoint"
"""Run tag naming the artifact of the latest complete checkpoint (:class:`MlflowCheckpoints`)."""


class CheckpointStore(Protocol):
    """The resume checkpoint of one run (picklable: it travels inside a ``WorkerJob``)."""

    def load(self, trainer: Trainer) -> bool:
        """Restore ``trainer`` from the latest checkpoint; ``False`` when there is none."""
        ...

    def save(self, trainer: Trainer) -> None:
        """Replace the checkpoint with ``trainer``'s state; a crash midway keeps the old one."""
        ...

    def clear(self) -> None:
        """Delete the checkpoint: a finished run's holds the replay buffer, large and useless."""
        ...


@dataclass(frozen=True)
class LocalCheckpoints:
    """A file on the worker's disk (the driver's too, unless the workers share a disk)."""

    path: str

    def load(self, trainer: Trainer) -> bool:
        if not os.path.exists(self.path):
            return False
        trainer.load(self.path)
        return True

    def save(self, trainer: Trainer) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        trainer.save(self.path)  # writes a temp file and renames it: atomic

    def clear(self) -> None:
        if os.path.exists(self.path):
            os.remove(self.path)


@dataclass(frozen=True)
class MlflowCheckpoints:
    """An artifact ``resume/checkpoint-<env steps>.pt`` of the run, through the tracking store.

    An upload cut off by a killed worker could leave a truncated file, so each save goes to
    a new name and only then is the tag ``resume_checkpoint`` pointed at it; the previous
    file is deleted after that. :meth:`load` trusts the tag only.
    """

    tracking_uri: str
    run_id: str

    def load(self, trainer: Trainer) -> bool:
        name = self._pointer()
        if not name:
            return False
        with tempfile.TemporaryDirectory() as folder:
            path = retry_locked(
                download_artifacts,
                run_id=self.run_id,
                artifact_path=name,
                dst_path=folder,
                tracking_uri=self.tracking_uri,
            )
            trainer.load(path)
        return True

    def save(self, trainer: Trainer) -> None:
        client = self._client()
        previous = self._pointer()
        filename = f"checkpoint-{trainer.env_steps}.pt"
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, filename)
            trainer.save(path)
            retry_locked(client.log_artifact, self.run_id, path, RESUME_DIR)
        name = posixpath.join(RESUME_DIR, filename)
        retry_locked(client.set_tag, self.run_id, POINTER_TAG, name)
        if previous and previous != name:
            self._delete(previous)

    def clear(self) -> None:
        if self._pointer() is None:
            return
        self._delete(RESUME_DIR)
        retry_locked(self._client().delete_tag, self.run_id, POINTER_TAG)

    def _client(self) -> MlflowClient:
        return MlflowClient(self.tracking_uri)

    def _pointer(self) -> str | None:
        run = retry_locked(self._client().get_run, self.run_id)
        return run.data.tags.get(POINTER_TAG)

    def _delete(self, artifact_path: str) -> None:
        run = retry_locked(self._client().get_run, self.run_id)
        repository = get_artifact_repository(run.info.artifact_uri, tracking_uri=self.tracking_uri)
        with contextlib.suppress(Exception):  # a stale file costs space, not correctness
            retry_locked(repository.delete_artifacts, artifact_path)


CheckpointFactory = Callable[[str, str, str], CheckpointStore]
"""``(tracking_uri, run_id, checkpoint_dir) -> CheckpointStore``."""

CHECKPOINT_STORES: dict[str, CheckpointFactory] = {
    "local": lambda uri, run_id, folder: LocalCheckpoints(
        os.path.abspath(os.path.join(folder, f"{run_id}.pt"))
    ),
    "mlflow": lambda uri, run_id, folder: MlflowCheckpoints(uri, run_id),
}


def default_checkpoint_store(tracking_uri: str) -> str:
    """``mlflow`` for a tracking server (its workers may share no disk), else ``local``."""
    return "mlflow" if tracking_uri.startswith(("http://", "https://")) else "local"
