"""Calls to the tracking store that ride out transient failures: SQLite's write lock, and a
tracking server that is down for a while (a restart)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


TRANSIENT = (
    "database is locked",
    "connection",
    "max retries exceeded",
    "timed out",
    "temporarily unavailable",
    "bad gateway",
    "service unavailable",
    "gateway timeout",
    # Two writers setting one new tag at once: MLflow's upsert reads, finds nothing, and
    # inserts, and the second insert breaks the key's uniqueness. Tried again, the upsert
    # finds the row and updates it. (SQLite's, PostgreSQL's and MySQL's wordings.)
    "unique constraint failed",
    "violates unique constraint",
    "duplicate entry",
)
"""Errors worth waiting out: SQLite's lock, a tracking server down or restarting, and a
write that collided with another's."""
FINAL_CODES = ("RESOURCE_ALREADY_EXISTS",)
"""Error codes that answer the call for good (an experiment name taken), whatever their text
(which quotes the uniqueness error behind them)."""


def tracking_retry_seconds() -> float:
    """How long a store call is retried through transient errors before giving up
    (``ABLATION_TRACKING_RETRY_S``, default 300: a server restart, not a lost server)."""
    return float(os.environ.get("ABLATION_TRACKING_RETRY_S", "300"))


def retry_locked(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn``, retrying with backoff through transient store errors (:data:`TRANSIENT`)
    for up to :func:`tracking_retry_seconds`.

    Several worker processes share one SQLite store; SQLite serialises writers and makes the
    loser fail rather than wait, so waiting here is the fix. A tracking server that is down
    for a while (a restart) is waited for the same way.
    """
    deadline = time.monotonic() + tracking_retry_seconds()
    delay = 0.05
    while True:
        try:
            return fn(*args, **kwargs)
        except Exception as error:
            text = str(error).lower()
            final = getattr(error, "error_code", None) in FINAL_CODES
            if final or not any(sign in text for sign in TRANSIENT):
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
