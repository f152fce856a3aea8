"""What the fault tests run in several processes at once: claiming a run's lease, and
opening an ablation in a store that does not exist yet (as a command starting does)."""

from __future__ import annotations

import time
from typing import Any

from mlflow.tracking import MlflowClient

from ablations.integrity.leases import Lease, LeaseHeldError, LeaseLostError
from ablations.plan.spec import AblationSpec
from ablations.tracking.connection import store_creation_lock
from ablations.tracking.store import AblationStore


def claim_and_hold(uri: str, parent: str, run: str, command: str, go: Any, out: Any) -> None:
    """Claim the run when ``go`` is set; the winner then stays alive without a heartbeat
    past the stale time, and reports whether it still holds the run."""
    client = MlflowClient(uri)
    out.put(("ready", command))
    go.wait()
    try:
        lease = Lease.claim(client, parent, run, "x-seed0", command)
    except LeaseHeldError:
        out.put(("held", command))
        return
    out.put(("won", lease.generation))
    time.sleep(6.0)
    try:
        lease.check()
        out.put(("kept", command))
    except LeaseLostError:
        out.put(("lost", command))


def open_ablation(uri: str, go: Any, out: Any, name: str = "race") -> None:
    """Create the store, experiment, parent and child runs of a two-run ablation when
    ``go`` is set, the way a starting command does; report the run ids or the error."""
    spec = AblationSpec("cartpole", 1, ("separate", "coupled"), "debug", None, {}, name)
    out.put(("ready", None))
    go.wait()
    try:
        with store_creation_lock(uri):
            store = AblationStore(uri, spec)
            ids = sorted(store.child_for(run, "cpu")[0] for run in spec.runs())
        out.put(("opened", (store.parent_id, ids)))
    except Exception as error:  # noqa: BLE001 - the test shows it
        out.put(("error", f"{type(error).__name__}: {error}"))


def train_run(job: Any, out: Any) -> None:
    """Train a run (:func:`~ablations.launch.worker.run_worker`); report how it ended."""
    import torch

    from ablations.launch.worker import run_worker

    torch.set_num_threads(1)
    try:
        run_worker(job)
        out.put("finished")
    except LeaseLostError:
        out.put("lost")
