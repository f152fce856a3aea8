"""Metrics to MLflow in batches: the agent's logger for a run, and one-off batched logging."""

from __future__ import annotations

import time
from collections.abc import Mapping

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from ablations.integrity.retries import retry_locked

BATCH_LIMIT = 1000  # MlflowClient.log_batch takes at most 1000 metrics per call


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
