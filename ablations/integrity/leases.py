"""Leases: one trainer per run, even with two commands on one experiment.

A worker claims its run before training it and renews the claim from a thread (a heartbeat);
another command leaves a claimed run alone, and takes over one whose owner died. The claim
is a param of the ablation's parent run, ``lease.<run name>.<generation>``: MLflow refuses to
change a param's value, in SQLite and behind a tracking server alike, so exactly one
claimant wins each generation (see :func:`read_lease`).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass

from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ablations.integrity.retries import retry_locked

LEASE_PREFIX = "lease."
COMMAND_ID = uuid.uuid4().hex[:12]
"""This command's identity in the leases its workers take (inherited by spawned workers
through :class:`~ablations.launch.worker.WorkerJob`, not through this module)."""


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
