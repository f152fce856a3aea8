"""Starting and waiting for the servers the tests start: ``mlflow server``, ``mlflow ui``, a
Ray head.

On a loaded machine a server can take tens of seconds to start and as long again to answer
its first request. Every wait here therefore runs against one deadline
(:data:`DEADLINE_S`); each probe may be refused, reset or time out, and is tried again
until the deadline; the wait ends early only when the server's process has exited (with
the end of its log in the error).
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

DEADLINE_S = 120.0
"""How long a server may take to answer its first probe."""
PROBE_TIMEOUT_S = 10.0
"""How long one probe may wait for an answer before it counts as not yet."""
POLL_S = 0.5
"""Pause between a failed probe and the next (a refused connection fails at once)."""


class ServerNotReadyError(RuntimeError):
    """A server did not answer before the deadline, or its process exited first."""


def _log_tail(log: Path | None) -> str:
    if log is None or not log.exists():
        return ""
    return "; its log ends:\n" + log.read_text(errors="replace")[-2000:]


def wait_until_answering(
    probe: Callable[[float], None],
    what: str,
    process: subprocess.Popen | None = None,
    log: Path | None = None,
    deadline_s: float = DEADLINE_S,
) -> None:
    """Call ``probe(timeout)`` until it returns without raising ``OSError`` or
    ``http.client.HTTPException`` (refused, reset, timed out, an HTTP error status), each
    call allowed up to :data:`PROBE_TIMEOUT_S` and never past the deadline. Raises
    :class:`ServerNotReadyError` when ``process`` exits first or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    last = "no probe answered"
    while True:
        if process is not None and process.poll() is not None:
            raise ServerNotReadyError(
                f"{what} exited with code {process.returncode} before answering{_log_tail(log)}"
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ServerNotReadyError(
                f"{what} did not answer within {deadline_s:.0f} s (last probe: {last})"
                f"{_log_tail(log)}"
            )
        try:
            probe(min(PROBE_TIMEOUT_S, remaining))
            return
        except (OSError, http.client.HTTPException) as error:  # URLError and timeouts too
            last = f"{type(error).__name__}: {error}"
        time.sleep(min(POLL_S, max(deadline - time.monotonic(), 0.0)))


def wait_for_http(
    url: str,
    process: subprocess.Popen | None = None,
    log: Path | None = None,
    deadline_s: float = DEADLINE_S,
) -> None:
    """Return once ``GET url`` answers with a 2xx status (see :func:`wait_until_answering`)."""

    def probe(timeout: float) -> None:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # raises on >= 400
            response.read()

    wait_until_answering(probe, f"the server at {url}", process, log, deadline_s)


def wait_for_port(
    host: str,
    port: int,
    process: subprocess.Popen | None = None,
    log: Path | None = None,
    deadline_s: float = DEADLINE_S,
) -> None:
    """Return once ``host:port`` accepts a TCP connection (see :func:`wait_until_answering`)."""

    def probe(timeout: float) -> None:
        socket.create_connection((host, port), timeout=timeout).close()

    wait_until_answering(probe, f"the server at {host}:{port}", process, log, deadline_s)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_mlflow_server(folder: Path, port: int) -> subprocess.Popen:
    """``mlflow server`` on ``127.0.0.1:port`` with its SQLite store and artifacts in
    ``folder`` (its log appended to ``folder / "server.log"``), once it answers ``/health``.
    It runs in a session of its own: :func:`stop_server` stops it with its web workers."""
    command = [
        str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
        "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
        "--artifacts-destination", str(folder / "artifacts"),
    ]  # fmt: skip
    return start_http_server(command, port, folder / "server.log")


def start_http_server(
    command: list[str], port: int, log: Path, cwd: Path | None = None
) -> subprocess.Popen:
    """``command`` (a server on ``127.0.0.1:port``) in a session of its own, its output
    appended to ``log``, once it answers ``/health``; stopped again if it never does."""
    with open(log, "a") as output:  # the server keeps its own copy of the descriptor
        server = subprocess.Popen(
            command, cwd=cwd, stdout=output, stderr=output, start_new_session=True
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", server, log)
    except BaseException:
        stop_server(server)
        raise
    return server


def stop_server(server: subprocess.Popen) -> None:
    """SIGTERM to the server's session (its workers too), SIGKILL after 15 s."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=15)
    except ProcessLookupError:
        server.wait()
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
