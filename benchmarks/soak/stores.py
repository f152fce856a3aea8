"""The two stores the soak runs its ablation against, and where each keeps the runs' resume
checkpoints on disk (what a corrupting fault reaches)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ablations.integrity.checkpoints import default_checkpoint_dir, newest_first
from benchmarks.soak.server import TrackingServer


@dataclass
class SoakStore:
    """A SQLite file (``server`` None), or a real ``mlflow server`` the soak started."""

    name: str
    folder: Path
    server: TrackingServer | None = None

    @property
    def uri(self) -> str:
        if self.server is not None:
            return self.server.uri
        return f"sqlite:///{self.folder / 'mlflow.db'}"

    def open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.server is not None:
            self.server.start()

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()

    def checkpoints(self) -> dict[str, list[Path]]:
        """Each run id with resume checkpoints on disk, its files the newest first: files
        next to a SQLite store, or the server's artifacts ``resume/`` of the run."""
        if self.server is None:  # <folder>/<run id>/<file>
            files, depth = Path(default_checkpoint_dir(self.uri)).glob("*/checkpoint-*.pt"), 0
        else:  # <experiment id>/<run id>/artifacts/resume/<file>
            files = self.server.artifacts.glob("*/*/artifacts/resume/checkpoint-*.pt")
            depth = 2
        by_run: dict[str, list[Path]] = {}
        for path in files:
            by_run.setdefault(path.parents[depth].name, []).append(path)
        return {
            run: [path.parent / name for name in newest_first([p.name for p in paths])]
            for run, paths in sorted(by_run.items())
        }


def make_stores(work: Path) -> list[SoakStore]:
    """The SQLite store, then the server's (on a free port of 127.0.0.1)."""
    return [
        SoakStore("sqlite", work / "sqlite"),
        SoakStore("server", work / "server", TrackingServer(work / "server")),
    ]
