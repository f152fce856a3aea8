"""The tracking store itself: its URI, whether it can be used, and the lock that serialises
creating an ablation in it (what :mod:`ablations.tracking.store` records there is its own job)."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator

from mlflow.tracking import MlflowClient

from ablations.environment import environment_variables
from analysis.store import sqlite_file


class TrackingError(RuntimeError):
    """The tracking store cannot be used; the message is one line for the user."""


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The URI given, else ``MLFLOW_TRACKING_URI``, else MLflow's default
    (``sqlite:///<cwd>/mlflow.db``), made explicit so that workers use the same store."""
    if uri:
        return uri
    import mlflow

    return mlflow.get_tracking_uri()


REACHABLE_DEADLINE_S = 60.0
"""How long a tracking server that accepts connections may take to answer the first request."""
PROBE_TIMEOUT_S = 10
"""Seconds one request of that check may wait for its answer (MLflow takes whole seconds)."""


def check_reachable(uri: str) -> None:
    """Raise :class:`TrackingError` if the store at ``uri`` cannot be reached or written."""
    path = sqlite_file(uri)
    if path is not None:
        folder = os.path.dirname(path)
        if not os.path.isdir(folder):
            raise TrackingError(
                f"the folder {folder} of the tracking store {uri} does not exist; create it "
                f"(mkdir -p {folder}) or point MLFLOW_TRACKING_URI at another store"
            )
        target = path if os.path.exists(path) else folder
        if not os.access(target, os.W_OK):
            raise TrackingError(
                f"the tracking store {target} is not writable ({uri}); make it writable or "
                "point MLFLOW_TRACKING_URI at another store"
            )
        return  # created on first use; probing it here would race with nothing to gain
    # Fail fast instead of MLflow's minutes of retries, for this probe only: the workers
    # inherit this environment and must ride out a short outage (see
    # ablations.integrity.retries.retry_locked). A server that is there but slow (a loaded machine)
    # is asked again until REACHABLE_DEADLINE_S; any other failure (nothing listening, a
    # name that does not resolve, not an MLflow server) ends the wait at once.
    deadline = time.monotonic() + REACHABLE_DEADLINE_S
    while True:
        timeout = max(1, min(PROBE_TIMEOUT_S, math.ceil(deadline - time.monotonic())))
        with environment_variables(
            MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT=str(timeout)
        ):
            try:
                MlflowClient(uri).search_experiments(max_results=1)
                return
            except Exception as error:  # noqa: BLE001 - any failure here means "unreachable"
                if "timed out" not in str(error) or time.monotonic() >= deadline:
                    raise TrackingError(unusable_store_message(uri, error)) from None


STORE_FIX = "set MLFLOW_TRACKING_URI to sqlite:///<folder>/mlflow.db or http://<host>:<port>"

# Why a server did not answer, found in the text of requests' exception (the first match).
SERVER_PROBLEMS = {
    "Connection refused": "nothing listens there (connection refused)",
    "Name or service not known": "its host name does not resolve",
    "Temporary failure in name resolution": "its host name does not resolve",
    "timed out": "it did not answer within {deadline:.0f} s",
    "SSL": "the TLS handshake failed",
    "response code 403": "it refused the request (HTTP 403; a server reached by a host name "
    "needs it in --allowed-hosts)",
    "response code 404": "it answers, but not as an MLflow tracking server (HTTP 404)",
}


def unusable_store_message(uri: str, error: BaseException) -> str:
    """Why the store at ``uri`` failed with ``error`` and what to do about it: one whole
    sentence for the user, without a final stop, like the CLI's other errors (MLflow's own
    messages run to hundreds of characters and get cut)."""
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme in ("", "file"):
        return (
            f"the tracking URI {uri} names a folder, and MLflow's folder store is not "
            f"supported; {STORE_FIX}"
        )
    if scheme in ("http", "https"):
        text = str(error)
        reason = next(
            (why for key, why in SERVER_PROBLEMS.items() if key in text),
            f"the request failed with {type(error).__name__}",
        ).format(deadline=REACHABLE_DEADLINE_S)
        return (
            f"cannot reach the MLflow tracking store at {uri}: {reason}; start the server "
            f"(make tracking-server) or {STORE_FIX}"
        )
    if isinstance(error, ModuleNotFoundError) and error.name:
        return (
            f"the tracking URI {uri} needs the Python package {error.name}, which is not "
            f"installed; pip install it or {STORE_FIX}"
        )
    if "unsupported URI" in str(error):
        return f"MLflow does not support the tracking URI scheme {scheme}:// of {uri}; {STORE_FIX}"
    return (
        f"the MLflow tracking store at {uri} cannot be used ({type(error).__name__}); check that "
        f"it is up, or {STORE_FIX}"
    )


@contextlib.contextmanager
def store_creation_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive lock beside a SQLite store while creating its tables, experiment
    and runs, so that two commands starting at once do not race MLflow's schema creation
    (``duplicate column name``) or create the ablation twice. Other stores: no lock."""
    database = sqlite_file(uri)
    if database is None:
        yield
        return
    import fcntl

    path = database + ".lock"
    try:
        handle = open(path, "a")  # noqa: SIM115 - closed below
    except OSError as error:
        raise TrackingError(f"cannot use the tracking store at {uri}: {error.strerror}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        handle.close()
