"""How the agent reports: a tiny logger interface, metric averaging and phase timing.

The agent knows nothing of MLflow; anything with ``log_metrics(metrics, step)`` can
receive its metrics (the ablation runner plugs an MLflow logger in).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Protocol

import torch


class Logger(Protocol):
    """Receives flat metric dicts (``{"loss/wm": 1.2}``) stepped by agent env steps."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...


class NullLogger:
    """Drops everything."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        pass


class MemoryLogger:
    """Keeps every logged value: ``history[name] == [(step, value), ...]``."""

    def __init__(self) -> None:
        self.history: dict[str, list[tuple[int, float]]] = defaultdict(list)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.history[name].append((step, float(value)))

    def last(self, name: str) -> float:
        return self.history[name][-1][1]


class MetricMeans:
    """Accumulates metric tensors between flushes and averages them.

    Values stay on the device until :meth:`flush`, which fetches them all at once: one
    host-device transfer per flush instead of one ``.item()`` per metric per update.
    """

    def __init__(self) -> None:
        self._values: dict[str, list[torch.Tensor | float]] = defaultdict(list)

    def add(self, metrics: Mapping[str, torch.Tensor | float]) -> None:
        for name, value in metrics.items():
            self._values[name].append(value.detach() if torch.is_tensor(value) else value)

    def flush(self) -> dict[str, float]:
        """Means of everything added since the last flush; then start afresh."""
        names = list(self._values)
        if not names:
            return {}
        means = [
            torch.stack([torch.as_tensor(v, dtype=torch.float32).cpu() for v in values]).mean()
            for values in self._values.values()
        ]
        self._values.clear()
        return dict(zip(names, torch.stack(means).tolist(), strict=True))


class PhaseTimer:
    """Wall-clock seconds per named phase, summed until :meth:`flush`.

    On CUDA each phase boundary synchronises, so that a phase is charged for the kernels it
    launched rather than the next phase waiting for them.
    """

    def __init__(self, device: torch.device):
        self._sync = device.type == "cuda"
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if self._sync:
            torch.cuda.synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            if self._sync:
                torch.cuda.synchronize()
            self.seconds[name] += time.perf_counter() - start

    def flush(self) -> dict[str, float]:
        out = dict(self.seconds)
        self.seconds.clear()
        return out
