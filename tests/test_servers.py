"""The tests' wait for a server (tests/servers.py): a probe that times out or is refused is
tried again until the deadline; a server whose process exits ends the wait at once."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import servers
from servers import ServerNotReadyError, free_port, wait_for_http, wait_for_port


class SlowFirstAnswers(http.server.BaseHTTPRequestHandler):
    """Answers 200, but holds each of its first ``slow`` requests for ``hold_s`` seconds,
    as a server still starting on a loaded machine does."""

    slow = 2
    hold_s = 1.5
    seen = 0

    def do_GET(self) -> None:
        type(self).seen += 1
        if type(self).seen <= self.slow:
            time.sleep(self.hold_s)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowFirstAnswers)
    SlowFirstAnswers.seen = 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_probes_that_time_out_are_tried_again_until_one_is_answered(
    slow_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(servers, "PROBE_TIMEOUT_S", 0.5)  # shorter than the server's hold
    wait_for_http(f"http://127.0.0.1:{slow_server}/health", deadline_s=30)
    assert SlowFirstAnswers.seen == 3  # two probes timed out, the third was answered


def test_a_server_that_never_answers_in_time_fails_at_the_deadline_naming_the_timeout(
    slow_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(servers, "PROBE_TIMEOUT_S", 0.5)
    monkeypatch.setattr(SlowFirstAnswers, "slow", 1000)
    start = time.monotonic()
    with pytest.raises(ServerNotReadyError, match=r"within 2 s \(last probe: .*timed out"):
        wait_for_http(f"http://127.0.0.1:{slow_server}/health", deadline_s=2)
    assert 2 <= time.monotonic() - start < 10


def test_a_port_that_opens_late_is_waited_for() -> None:
    port = free_port()  # nothing listens there for now: the first probes are refused
    opened: list[http.server.HTTPServer] = []

    def open_later() -> None:
        time.sleep(2)
        opened.append(http.server.HTTPServer(("127.0.0.1", port), SlowFirstAnswers))

    thread = threading.Thread(target=open_later, daemon=True)
    thread.start()
    try:
        wait_for_port("127.0.0.1", port, deadline_s=30)
        assert opened  # it returned once the port was open, not before
    finally:
        thread.join(30)
        for server in opened:
            server.server_close()


def test_a_server_process_that_exits_ends_the_wait_at_once_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("address already in use\n")
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    start = time.monotonic()
    with pytest.raises(ServerNotReadyError, match="(?s)exited with code 3.*address already in use"):
        wait_for_http(f"http://127.0.0.1:{free_port()}/", process, log, deadline_s=120)
    assert time.monotonic() - start < 60
