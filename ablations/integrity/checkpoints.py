"""Where a run keeps its resume checkpoints: local files, or artifacts of its own MLflow run.

On one machine files are quickest; they live in a folder keyed to the tracking store (next
to its SQLite file by default, whatever the working directory), one subfolder per run.
Workers on other machines share no disk with the driver, so with a tracking server the
checkpoints travel through it as artifacts of the run, and a retried or rerun worker
anywhere downloads them. The worker only sees :class:`CheckpointStore`;
:data:`CHECKPOINT_STORES` is where the choice is made.

Both stores name each checkpoint ``checkpoint-<env steps>-<sha256 prefix>.pt``, keep the
last two, and on load verify the digest and fall back to the older one when the newer is
truncated or corrupt; when none loads, the error names each file (and the worker starts the
run over).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
import posixpath
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from mlflow.artifacts import download_artifacts
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient

from ablations.integrity.retries import retry_locked
from agent.cli import describe
from analysis.store import sqlite_file

if TYPE_CHECKING:
    from agent.trainer import Trainer

KEEP = 2
"""Checkpoints kept per run: the newest, and one to fall back on."""
NAME = re.compile(r"^checkpoint-(\d+)-([0-9a-f]{16})\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written or none can be read; one line naming the file."""


def checkpoint_name(env_steps: int, digest: str) -> str:
    return f"checkpoint-{env_steps}-{digest[:16]}.pt"


def file_digest(path: str) -> str:
    """SHA-256 of a file, read in chunks (a checkpoint may hold gigabytes of replay)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def newest_first(names: list[str]) -> list[str]:
    """Checkpoint file names (others ignored), the most env steps first."""
    found = [(int(m.group(1)), name) for name in names if (m := NAME.match(name))]
    return [name for _, name in sorted(found, reverse=True)]


def _verify(path: str) -> None:
    match = NAME.match(os.path.basename(path))
    if match is None or not file_digest(path).startswith(match.group(2)):
        raise CheckpointError(f"checkpoint {path} is corrupt (its content does not match its name)")


def _write(trainer: Trainer, folder: str) -> str:
    """Save ``trainer`` into ``folder`` under its verified name; returns the path. A full
    disk raises :class:`CheckpointError` ("disk full") and leaves no partial file."""
    partial = os.path.join(folder, f"checkpoint-{trainer.env_steps}.partial")
    try:
        trainer.save(partial)  # writes partial.tmp and renames it: atomic
        path = os.path.join(folder, checkpoint_name(trainer.env_steps, file_digest(partial)))
        os.replace(partial, path)
        return path
    except OSError as error:
        _remove_partial_files(folder)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CheckpointError(
                f"disk full: cannot write checkpoint {partial} ({error.strerror})"
            ) from None
        raise CheckpointError(
            f"cannot write checkpoint {partial}: {error.strerror or error}"
        ) from None


def _remove_partial_files(folder: str) -> None:
    """What a killed or failed save left behind (it may be what keeps a disk full)."""
    for pattern in ("*.tmp", "*.partial"):
        for path in glob.glob(os.path.join(glob.escape(folder), pattern)):
            with contextlib.suppress(OSError):
                os.remove(path)


def _load_first_good(trainer: Trainer, paths: Iterator[tuple[str, str]]) -> bool:
    """Load the first of ``(label, local path)`` that verifies and loads; ``False`` if there
    are none; :class:`CheckpointError` naming each one if none works."""
    problems = []
    for label, path in paths:
        try:
            _verify(path)
            trainer.load(path)
        except Exception as error:  # noqa: BLE001 - any failure: try the older one
            problems.append(f"{label}: {describe(error)}")
            continue
        if problems:
            print(f"resumed from {label}; skipped {'; '.join(problems)}", file=sys.stderr)
        return True
    if problems:
        raise CheckpointError(f"no usable checkpoint: {'; '.join(problems)}")
    return False


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
    """Files in ``folder`` (one per run) on the worker's disk (the driver's too, unless the
    workers share a disk)."""

    folder: str

    def load(self, trainer: Trainer) -> bool:
        if not os.path.isdir(self.folder):
            return False
        _remove_partial_files(self.folder)
        names = newest_first(os.listdir(self.folder))
        return _load_first_good(trainer, ((os.path.join(self.folder, n),) * 2 for n in names))

    def save(self, trainer: Trainer) -> None:
        os.makedirs(self.folder, exist_ok=True)
        _remove_partial_files(self.folder)
        _write(trainer, self.folder)
        for name in newest_first(os.listdir(self.folder))[KEEP:]:
            with contextlib.suppress(OSError):
                os.remove(os.path.join(self.folder, name))

    def clear(self) -> None:
        if not os.path.isdir(self.folder):
            return
        _remove_partial_files(self.folder)
        for name in newest_first(os.listdir(self.folder)):
            os.remove(os.path.join(self.folder, name))
        with contextlib.suppress(OSError):
            os.rmdir(self.folder)


@dataclass(frozen=True)
class MlflowCheckpoints:
    """Artifacts ``resume/checkpoint-<env steps>-<digest>.pt`` of the run, through the store.

    An upload cut off by a killed worker leaves a file whose digest does not match its name;
    :meth:`load` skips it. The tag ``resume_checkpoint`` names the newest complete upload.
    """

    tracking_uri: str
    run_id: str

    def load(self, trainer: Trainer) -> bool:
        with tempfile.TemporaryDirectory() as folder:
            return _load_first_good(trainer, self._downloads(folder))

    def _downloads(self, folder: str) -> Iterator[tuple[str, str]]:
        listing = retry_locked(self._client().list_artifacts, self.run_id, RESUME_DIR)
        for name in newest_first([posixpath.basename(a.path) for a in listing]):
            artifact = posixpath.join(RESUME_DIR, name)
            path = retry_locked(
                download_artifacts,
                run_id=self.run_id,
                artifact_path=artifact,
                dst_path=folder,
                tracking_uri=self.tracking_uri,
            )
            yield f"artifact {artifact} of run {self.run_id}", path

    def save(self, trainer: Trainer) -> None:
        client = self._client()
        with tempfile.TemporaryDirectory() as folder:
            path = _write(trainer, folder)
            retry_locked(client.log_artifact, self.run_id, path, RESUME_DIR)
        name = posixpath.join(RESUME_DIR, os.path.basename(path))
        retry_locked(client.set_tag, self.run_id, POINTER_TAG, name)
        listing = retry_locked(client.list_artifacts, self.run_id, RESUME_DIR)
        names = [posixpath.basename(a.path) for a in listing]
        for old in newest_first(names)[KEEP:] + [n for n in names if not NAME.match(n)]:
            self._delete(posixpath.join(RESUME_DIR, old))

    def clear(self) -> None:
        if not retry_locked(self._client().list_artifacts, self.run_id, RESUME_DIR):
            return
        self._delete(RESUME_DIR)
        with contextlib.suppress(Exception):
            retry_locked(self._client().delete_tag, self.run_id, POINTER_TAG)

    def _client(self) -> MlflowClient:
        return MlflowClient(self.tracking_uri)

    def _delete(self, artifact_path: str) -> None:
        run = retry_locked(self._client().get_run, self.run_id)
        repository = get_artifact_repository(run.info.artifact_uri, tracking_uri=self.tracking_uri)
        with contextlib.suppress(Exception):  # a stale file costs space, not correctness
            retry_locked(repository.delete_artifacts, artifact_path)


CheckpointFactory = Callable[[str, str, "str | None"], CheckpointStore]
"""``(tracking_uri, run_id, checkpoint_dir or None) -> CheckpointStore``."""


def default_checkpoint_dir(tracking_uri: str) -> str:
    """``checkpoints/`` next to a SQLite store's file, so that a rerun from any folder finds
    them; for other stores, ``checkpoints/`` in the working directory."""
    database = sqlite_file(tracking_uri)
    if database is not None:
        return os.path.join(os.path.dirname(database), "checkpoints")
    return os.path.abspath("checkpoints")


CHECKPOINT_STORES: dict[str, CheckpointFactory] = {
    "local": lambda uri, run_id, folder: LocalCheckpoints(
        os.path.join(os.path.abspath(folder or default_checkpoint_dir(uri)), run_id)
    ),
    "mlflow": lambda uri, run_id, folder: MlflowCheckpoints(uri, run_id),
}


def default_checkpoint_store(tracking_uri: str) -> str:
    """``mlflow`` for a tracking server (its workers may share no disk), else ``local``."""
    return "mlflow" if tracking_uri.startswith(("http://", "https://")) else "local"
