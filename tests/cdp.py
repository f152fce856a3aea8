"""A headless Chromium driven over the DevTools protocol on a pipe, for what its command
line cannot do (wait for an element, click one): ``--remote-debugging-pipe`` reads
commands on the browser's fd 3 and writes answers and events on its fd 4, each a JSON
message ended by a NUL byte. Standard library only."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any


class DevToolsError(RuntimeError):
    """The browser answered with an error, closed the pipe, or did not answer in time."""


class Chromium:
    """One headless Chromium on ``profile`` with one page; close it with :meth:`close`,
    which shuts the browser down cleanly, so that its storage reaches the profile."""

    def __init__(self, browser: str, profile: Path, window: str = "1400,900") -> None:
        commands_read, self._commands = os.pipe()
        self._answers, answers_write = os.pipe()

        def onto_fds_3_and_4() -> None:  # in the child, before exec
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (commands_read, answers_write)]
            os.dup2(high[0], 3)  # dup2 leaves the copies inheritable, unlike os.pipe's ends
            os.dup2(high[1], 4)

        command = [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", f"--window-size={window}",
            "--remote-debugging-pipe", "about:blank",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            preexec_fn=onto_fds_3_and_4,  # safe: this process starts no threads
            close_fds=False,  # the pipes' other ends are close-on-exec already
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(commands_read)
        os.close(answers_write)
        self._next_id = 0
        self._buffer = b""
        self.session = ""

    def send(self, method: str, timeout: float = 120.0, **params: Any) -> dict[str, Any]:
        """Send one command (to the page once :meth:`open` attached it) and return its
        result; raises :class:`DevToolsError` on an error answer or after ``timeout`` s."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._read(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise DevToolsError(f"{method}: {answer['error'].get('message')}")
                return answer.get("result", {})

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._answers], [], [], left)[0]:
                raise DevToolsError("the browser did not answer in time")
            chunk = os.read(self._answers, 1 << 16)
            if not chunk:
                raise DevToolsError("the browser closed the pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def open(self, url: str) -> None:
        """Open ``url`` in a new page and send page commands to it from now on."""
        target = self.send("Target.createTarget", url=url)["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise DevToolsError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float) -> bool:
        """Whether ``expression`` became true in the page within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.evaluate(expression):
                return True
            time.sleep(0.5)
        return False

    def close(self) -> None:
        """Shut the browser down (it writes its storage to the profile) and wait for it."""
        # It may close the pipe before it answers, or be gone already.
        with contextlib.suppress(DevToolsError, OSError):
            self.send("Browser.close", timeout=60)
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        finally:
            os.close(self._commands)
            os.close(self._answers)
