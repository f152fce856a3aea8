"""MLflow plumbing: the store, the ablation's experiment and runs, and a batched logger.

The layout in the store (the contract that ``analysis/`` reads):

- one experiment per ablation, tagged ``mlflow.experimentKind=custom_model_development``
  so MLflow 3's UI opens on the runs table;
- a parent run named after the ablation (tag ``ablation.role=parent``);
- a child run ``<arm>-seed<k>`` per run (tags ``ablation.role=child``, ``arm``,
  ``schedule``, ``starts``, ``seed``, ``env``, ``preset``, ``git_commit``, ``device``,
  ``torch_version``, ``hardware``, ``config_hash``), the flattened config as params and
  every agent metric stepped by agent env steps.
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ablations.spec import ARMS, AblationSpec, RunSpec
from agent.config import flatten

T = TypeVar("T")
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
BATCH_LIMIT = 1000  # MlflowClient.log_batch takes at most 1000 metrics per call


class TrackingError(RuntimeError):
    """The tracking store cannot be used; the message is one line for the user."""


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The URI given, else ``MLFLOW_TRACKING_URI``, else MLflow's default
    (``sqlite:///<cwd>/mlflow.db``), made explicit so that workers use the same store."""
    if uri:
        return uri
    import mlflow

    return mlflow.get_tracking_uri()


def check_reachable(uri: str) -> None:
    """Raise :class:`TrackingError` if the store at ``uri`` cannot be reached or written."""
    if uri.startswith("sqlite:///"):
        path = os.path.abspath(uri.removeprefix("sqlite:///"))
        folder = os.path.dirname(path)
        if not os.path.isdir(folder):
            raise TrackingError(f"tracking store folder {folder} does not exist ({uri})")
        target = path if os.path.exists(path) else folder
        if not os.access(target, os.W_OK):
            raise TrackingError(f"tracking store {target} is not writable ({uri})")
        return  # created on first use; probing it here would race with nothing to gain
    if not uri.startswith(("http://", "https://")):
        return
    # Fail fast instead of MLflow's minutes of retries, for this probe only: the workers
    # inherit this environment and must ride out a short outage (see retry_locked).
    with _environment(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="10"):
        try:
            MlflowClient(uri).search_experiments(max_results=1)
        except Exception as error:  # noqa: BLE001 - any failure here means "unreachable"
            raise TrackingError(
                f"cannot reach the MLflow tracking store at {uri}: {first_line(error)}"
            ) from None


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def first_line(error: BaseException) -> str:
    """An error's first line, at most 200 characters (its type when it has no message)."""
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


TRANSIENT = (
    "database is locked",
    "connection",
    "max retries exceeded",
    "timed out",
    "temporarily unavailable",
    "bad gateway",
    "service unavailable",
    "gateway timeout",
)
"""Errors worth waiting out: SQLite's lock, and a tracking server down or restarting."""


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
            if not any(sign in text for sign in TRANSIENT) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


@contextlib.contextmanager
def store_creation_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive lock beside a SQLite store while creating its tables, experiment
    and runs, so that two commands starting at once do not race MLflow's schema creation
    (``duplicate column name``) or create the ablation twice. Other stores: no lock."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    path = os.path.abspath(uri.removeprefix("sqlite:///")) + ".lock"
    try:
        handle = open(path, "a")  # noqa: SIM115 - closed below
    except OSError as error:
        raise TrackingError(f"cannot use the tracking store at {uri}: {error.strerror}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        handle.close()


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return (
            out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def hardware() -> str:
    import torch

    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}; {cpu}"
    return f"CPU only; {cpu}"


class AblationStore:
    """The ablation's experiment, parent run and child runs in one tracking store."""

    def __init__(self, uri: str, spec: AblationSpec):
        self.uri = uri
        self.spec = spec
        self.client = MlflowClient(uri)
        self.experiment_id = self._ensure_experiment()
        self.parent_id = self._ensure_parent()
        arms = {run.data.tags.get("arm", "") for run in self.children().values()} - {""}
        retry_locked(
            self.client.set_tag, self.parent_id, "arms", ",".join(sorted(arms | set(spec.arms)))
        )

    def _ensure_experiment(self) -> str:
        experiment = retry_locked(self.client.get_experiment_by_name, self.spec.name)
        if experiment is None:
            experiment_id = retry_locked(self.client.create_experiment, self.spec.name)
        else:
            experiment_id = experiment.experiment_id
        for key, value in EXPERIMENT_KIND.items():
            retry_locked(self.client.set_experiment_tag, experiment_id, key, value)
        return experiment_id

    def _ensure_parent(self) -> str:
        runs = retry_locked(
            self.client.search_runs,
            [self.experiment_id],
            filter_string="tags.`ablation.role` = 'parent'",
            max_results=1,
        )
        if runs:
            run_id = runs[0].info.run_id
        else:
            run = retry_locked(
                self.client.create_run,
                self.experiment_id,
                run_name=self.spec.name,
                tags={"ablation.role": "parent", "mlflow.note.content": self.spec.description()},
            )
            run_id = run.info.run_id
            retry_locked(
                self.client.log_batch,
                run_id,
                params=_params({"env": self.spec.env, "preset": self.spec.preset}),
            )
        retry_locked(self.client.set_terminated, run_id, "RUNNING")
        return run_id

    def children(self) -> dict[str, Any]:
        """Existing child runs by run name."""
        runs = retry_locked(
            self.client.search_runs,
            [self.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{self.parent_id}'",
            max_results=10_000,
        )
        return {run.info.run_name: run for run in runs}

    def child_for(self, run: RunSpec, device: str) -> tuple[str, str]:
        """The child run for ``run``: ``(run_id, status)``, created if it does not exist.

        Raises :class:`TrackingError` if a run of that name exists with another config: a
        rerun must train the same thing, or use a new experiment name.
        """
        existing = self.children().get(run.name)
        config_hash = run.config_hash()
        if existing is not None:
            if existing.data.tags.get("config_hash") != config_hash:
                raise TrackingError(
                    f"experiment '{self.spec.name}' already has run {run.name} with a different "
                    "config; pass a new EXPERIMENT name to run this one"
                )
            return existing.info.run_id, existing.info.status
        import torch

        config = run.config()
        arm = ARMS[run.arm]
        tags = {
            "mlflow.parentRunId": self.parent_id,
            "mlflow.note.content": run.description(),
            "ablation.role": "child",
            "ablation.name": run.ablation,
            "arm": run.arm,
            "schedule": arm["train.schedule"],
            "starts": arm["train.starts"],
            "seed": str(run.seed),
            "env": run.env,
            "preset": run.preset,
            "git_commit": git_commit(),
            "device": device,
            "torch_version": torch.__version__,
            "hardware": hardware(),
            "config_hash": config_hash,
        }
        created = retry_locked(
            self.client.create_run, self.experiment_id, run_name=run.name, tags=tags
        )
        run_id = created.info.run_id
        params = _params(flatten(config))
        for start in range(0, len(params), 100):
            retry_locked(self.client.log_batch, run_id, params=params[start : start + 100])
        retry_locked(self.client.set_terminated, run_id, "SCHEDULED")
        return run_id, "SCHEDULED"

    def log_parent_summary(self) -> dict[str, dict[str, float]]:
        """Per-arm means of the children's final return and speed, logged on the parent."""
        summary: dict[str, dict[str, list[float]]] = {}
        for run in self.children().values():
            if run.info.status != "FINISHED":
                continue
            arm = summary.setdefault(run.data.tags.get("arm", "?"), {"final": [], "ups": []})
            if "final/eval_return" in run.data.metrics:
                arm["final"].append(run.data.metrics["final/eval_return"])
            if "final/updates_per_s" in run.data.metrics:
                arm["ups"].append(run.data.metrics["final/updates_per_s"])
        means: dict[str, dict[str, float]] = {}
        metrics = {}
        for arm, values in summary.items():
            means[arm] = {"runs": float(len(values["final"]) or len(values["ups"]))}
            for key, name in (("final", "final_return"), ("ups", "updates_per_s")):
                if values[key]:
                    means[arm][name] = sum(values[key]) / len(values[key])
                    metrics[f"summary/{arm}/{name}"] = means[arm][name]
        if metrics:
            log_metrics_batched(self.client, self.parent_id, metrics, step=0)
        return means

    def held_elsewhere(self, run_id: str, run_name: str) -> LeaseState | None:
        """The lease on a child held by another live command, if any."""
        lease = read_lease(self.client, self.parent_id, run_id, run_name)
        if lease is not None and lease.alive() and lease.command != COMMAND_ID:
            return lease
        return None

    def settle_parent(self) -> str:
        """Set the parent's status from its children's and return it: RUNNING while another
        command trains some, else FAILED if any failed, FINISHED if all finished, else
        KILLED (some were stopped)."""
        status = self._parent_status()
        retry_locked(self.client.set_terminated, self.parent_id, status)
        return status

    def _parent_status(self) -> str:
        children = self.children()
        statuses = {run.info.status for run in children.values()}
        if any(
            self.held_elsewhere(run.info.run_id, name)
            for name, run in children.items()
            if run.info.status not in ("FINISHED", "FAILED")
        ):
            status = "RUNNING"
        elif "FAILED" in statuses:
            status = "FAILED"
        elif statuses <= {"FINISHED"}:
            status = "FINISHED"
        else:
            status = "KILLED"
        return status

    def mark_killed(self) -> None:
        """After an interruption: children left SCHEDULED or RUNNING (by this command, or by
        one that is gone) become KILLED, as does the parent unless another command still
        trains some of its runs. A rerun resumes them."""
        for name, run in self.children().items():
            if run.info.status not in ("SCHEDULED", "RUNNING"):
                continue
            lease = read_lease(self.client, self.parent_id, run.info.run_id, name)
            if lease is not None and lease.alive() and lease.command != COMMAND_ID:
                continue  # another command's run
            retry_locked(self.client.set_terminated, run.info.run_id, "KILLED")
            if lease is not None and lease.command == COMMAND_ID:
                # Its worker is stopped: a rerun need not wait for the lease to go stale
                # (a worker on another machine leaves no process here to look for).
                release = str(lease.generation)
                retry_locked(self.client.set_tag, run.info.run_id, "lease.released", release)
        status = self._parent_status()
        retry_locked(
            self.client.set_terminated,
            self.parent_id,
            status if status in ("RUNNING", "FINISHED") else "KILLED",
        )


def _params(values: Mapping[str, Any]) -> list[Param]:
    return [Param(key, str(value)[:6000]) for key, value in values.items()]


def log_metrics_batched(
    client: MlflowClient, run_id: str, metrics: Mapping[str, float], step: int
) -> None:
    stamp = int(time.time() * 1000)
    batch = [Metric(k, float(v), stamp, step) for k, v in metrics.items()]
    for start in range(0, len(batch), BATCH_LIMIT):
        retry_locked(client.log_batch, run_id, metrics=batch[start : start + BATCH_LIMIT])


class MlflowLogger:
    """The agent's :class:`~agent.logger.Logger`, buffering points into ``log_batch`` calls.

    Nothing is sent until :meth:`flush` (the worker flushes right before each checkpoint),
    and a run costs a few batched calls instead of one call per metric. After
    :meth:`skip_logged_steps`, points at or below a metric's last step in the store are
    dropped, so that a resumed run never logs a step twice.
    """

    def __init__(self, client: MlflowClient, run_id: str):
        self.client = client
        self.run_id = run_id
        self.pending: list[Metric] = []
        self.logged_up_to: dict[str, int] = {}
        """Per metric, the last step already in the store: nothing at or below is sent."""
        self.seconds = 0.0  # time spent in MLflow calls, to report tracking overhead

    def skip_logged_steps(self) -> None:
        """Read each metric's last step in the store; points up to it will not be sent."""
        keys = retry_locked(self.client.get_run, self.run_id).data.metrics
        for key in keys:
            history = retry_locked(self.client.get_metric_history, self.run_id, key)
            if history:
                self.logged_up_to[key] = max(point.step for point in history)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        stamp = int(time.time() * 1000)
        self.pending.extend(
            Metric(k, float(v), stamp, step)
            for k, v in metrics.items()
            if step > self.logged_up_to.get(k, -1)
        )

    def flush(self) -> None:
        start = time.perf_counter()
        while self.pending:
            chunk, self.pending = self.pending[:BATCH_LIMIT], self.pending[BATCH_LIMIT:]
            retry_locked(self.client.log_batch, self.run_id, metrics=chunk)
        self.seconds += time.perf_counter() - start


# --- leases: one trainer per run ------------------------------------------------------------

LEASE_PREFIX = "lease."
COMMAND_ID = uuid.uuid4().hex[:12]
"""This command's identity in the leases its workers take (inherited by spawned workers
through :class:`~ablations.worker.WorkerJob`, not through this module)."""


def lease_stale_seconds() -> float:
    """Seconds without a heartbeat after which a lease is free for another command to take
    (``ABLATION_LEASE_STALE_S``, default 120); heartbeats come four times as often."""
    return float(os.environ.get("ABLATION_LEASE_STALE_S", "120"))


class LeaseHeldError(RuntimeError):
    """Another live process trains this run; the message names it."""


class LeaseLostError(RuntimeError):
    """This process's lease was taken over (it was presumed dead): stop without writing."""


@dataclass(frozen=True)
class LeaseState:
    """The latest claim on a run: generation, owner ``host:pid:command``, last sign of life."""

    generation: int
    owner: str
    last_seen: float
    released: bool

    @property
    def host(self) -> str:
        return self.owner.split(":")[0]

    @property
    def command(self) -> str:
        return self.owner.rsplit(":", 1)[-1]

    def alive(self, now: float | None = None) -> bool:
        """Whether the owner may still be training: not released, a heartbeat within
        :func:`lease_stale_seconds`, and (on this host) its process still exists."""
        if self.released:
            return False
        if (now or time.time()) - self.last_seen > lease_stale_seconds():
            return False
        if self.host == socket.gethostname():
            return _process_exists(int(self.owner.split(":")[1]))
        return True

    def describe(self) -> str:
        return f"process {self.owner.split(':')[1]} on {self.host}"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    try:  # a zombie has exited; only its parent has not collected it yet
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _lease_key(run_name: str, generation: int) -> str:
    return f"{LEASE_PREFIX}{run_name}.{generation}"


def read_lease(
    client: MlflowClient, parent_id: str, run_id: str, run_name: str
) -> LeaseState | None:
    """The latest lease on child ``run_id`` (``None`` if it was never claimed).

    Claims are params of the parent run, ``lease.<run name>.<generation>`` = ``"<owner>
    <unix time>"``: MLflow refuses to change a param's value, in SQLite and behind a server
    alike, so exactly one claimant wins each generation. Heartbeats are tags of the child
    (``lease.generation``, ``lease.heartbeat``, ``lease.released``).
    """
    params = retry_locked(client.get_run, parent_id).data.params
    prefix = f"{LEASE_PREFIX}{run_name}."
    claims = {
        int(key[len(prefix) :]): value
        for key, value in params.items()
        if key.startswith(prefix) and key[len(prefix) :].isdigit()
    }
    if not claims:
        return None
    generation = max(claims)
    owner, _, claimed_at = claims[generation].rpartition(" ")
    tags = retry_locked(client.get_run, run_id).data.tags
    last_seen = float(claimed_at)
    released = False
    if tags.get("lease.generation") == str(generation):
        last_seen = max(last_seen, float(tags.get("lease.heartbeat", 0)))
        released = tags.get("lease.released") == str(generation)
    return LeaseState(generation, owner, last_seen, released)


@dataclass(frozen=True)
class Lease:
    """This process's claim on one child run (see :func:`read_lease`)."""

    client: MlflowClient
    parent_id: str
    run_id: str
    run_name: str
    generation: int
    owner: str

    @classmethod
    def claim(
        cls, client: MlflowClient, parent_id: str, run_id: str, run_name: str, command: str
    ) -> Lease:
        """Take the run, or raise :class:`LeaseHeldError` if another live process has it.

        A lease whose owner stopped beating (or, on this host, whose process is gone) is
        taken over; so is one held by an earlier attempt of the same command (a Ray task
        retried after its worker died).
        """
        owner = f"{socket.gethostname()}:{os.getpid()}:{command}"
        current = read_lease(client, parent_id, run_id, run_name)
        if current is not None and current.alive() and current.command != command:
            raise LeaseHeldError(f"{run_name} is being trained by {current.describe()}")
        generation = (current.generation if current else 0) + 1
        try:
            retry_locked(
                client.log_param,
                parent_id,
                _lease_key(run_name, generation),
                f"{owner} {time.time():.3f}",
            )
        except MlflowException as error:
            if error.error_code != "INVALID_PARAMETER_VALUE":
                raise
            winner = read_lease(client, parent_id, run_id, run_name)
            who = winner.describe() if winner else "another process"
            raise LeaseHeldError(f"{run_name} was just claimed by {who}") from None
        lease = cls(client, parent_id, run_id, run_name, generation, owner)
        lease.heartbeat()
        return lease

    def check(self) -> None:
        """Raise :class:`LeaseLostError` if a later claim took the run over."""
        current = read_lease(self.client, self.parent_id, self.run_id, self.run_name)
        if current is None or current.generation != self.generation:
            who = current.describe() if current else "nobody"
            raise LeaseLostError(f"{self.run_name} was taken over by {who}")

    def heartbeat(self) -> None:
        """Check the lease is still this process's, then record a sign of life."""
        self.check()
        tags = [
            RunTag("lease.generation", str(self.generation)),
            RunTag("lease.owner", self.owner),
            RunTag("lease.heartbeat", f"{time.time():.3f}"),
        ]
        retry_locked(self.client.log_batch, self.run_id, tags=tags)

    def release(self) -> None:
        """Let another command take the run at once (this process stops training it)."""
        retry_locked(self.client.set_tag, self.run_id, "lease.released", str(self.generation))
