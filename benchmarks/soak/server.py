"""A real ``mlflow server`` on 127.0.0.1, started and stopped as its user would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

START_DEADLINE_S = 180.0
"""How long a start may take before it is an error: a loaded machine imports MLflow slowly."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class TrackingServer:
    """``mlflow server`` on ``port`` with its SQLite store and artifacts in ``folder``; it
    keeps its port over restarts, so clients see one URI throughout."""

    folder: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def artifacts(self) -> Path:
        """Where the server keeps the runs' artifacts (checkpoints included)."""
        return self.folder / "artifacts"

    def start(self, deadline_s: float = START_DEADLINE_S) -> None:
        """Start the server and return once it answers ``/health`` (each probe may take 5 s);
        :class:`RuntimeError` with the end of its log if it dies or the deadline passes."""
        mlflow = Path(sys.executable).parent / "mlflow"
        command = [
            str(mlflow), "server", "--host", "127.0.0.1", "--port", str(self.port),
            "--workers", "1",
            "--backend-store-uri", f"sqlite:///{self.folder}/mlflow.db",
            "--artifacts-destination", str(self.artifacts),
        ]  # fmt: skip
        self.folder.mkdir(parents=True, exist_ok=True)
        log = self.folder / "server.log"
        with open(log, "a") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=out, start_new_session=True, cwd=self.folder
            )
        deadline = time.monotonic() + deadline_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {log.read_text()[-2000:]}")
            try:
                if requests.get(f"{self.uri}/health", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mlflow server did not answer in {deadline_s:.0f} s")
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop the server and everything it started (its process group)."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except ProcessLookupError:
            self.process.wait()
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None
