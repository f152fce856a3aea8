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
    """Accumulates metrics between flushes and averages them.

    Each :meth:`add` stacks its tensor values into one new device tensor (a single kernel,
    and a copy, so a CUDA graph may overwrite the originals at its next replay); values stay
    on the device until :meth:`flush`, which fetches every mean in one transfer instead of
    one ``.item()`` per metric per update. Plain numbers are averaged on the host.
    """

    def __init__(self) -> None:
        self._rows: dict[tuple[str, ...], list[torch.Tensor]] = defaultdict(list)
        self._numbers: dict[str, list[float]] = defaultdict(list)

    def add(self, metrics: Mapping[str, torch.Tensor | float]) -> None:
        names = tuple(name for name, value in metrics.items() if torch.is_tensor(value))
        if names:
            row = torch.stack([metrics[name].detach().float() for name in names])
            self._rows[names].append(row)
        for name, value in metrics.items():
            if not torch.is_tensor(value):
                self._numbers[name].append(float(value))

    def add_rows(self, names: tuple[str, ...], rows: torch.Tensor) -> None:
        """``rows (R, len(names))``: R adds of the tensor metrics ``names`` at once (a seed
        batch hands each member its share this way, see :mod:`agent.seed_batch`)."""
        self._rows[names].extend(rows.unbind(0))

    def add_numbers(self, name: str, values: list[float]) -> None:
        """``values``: adds of the plain number ``name``, in order."""
        self._numbers[name].extend(values)

    def flush(self) -> dict[str, float]:
        """Means of everything added since the last flush; then start afresh."""
        sums: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        if self._rows:
            groups = list(self._rows.items())
            totals = torch.cat([torch.stack(rows).sum(0) for _, rows in groups]).cpu().tolist()
            flat_names = [name for names, rows in groups for name in names]
            flat_counts = [len(rows) for names, rows in groups for _ in names]
            for name, total, count in zip(flat_names, totals, flat_counts, strict=True):
                sums[name] += total
                counts[name] += count
        for name, values in self._numbers.items():
            sums[name] += sum(values)
            counts[name] += len(values)
        self._rows.clear()
        self._numbers.clear()
        return {name: sums[name] / counts[name] for name in sums}


class PhaseTimer:
    """Wall-clock seconds per named phase, summed until :meth:`flush`.

    On CUDA a phase is timed by events recorded on the stream at its start and end, so that
    it is charged for the kernels it launched without a synchronisation at each boundary
    (which would stop the host from queueing work ahead); :meth:`flush` synchronises once.
    """

    def __init__(self, device: torch.device):
        self._cuda = device.type == "cuda"
        self.seconds: dict[str, float] = defaultdict(float)
        self._events: list[tuple[str, torch.cuda.Event, torch.cuda.Event]] = []

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if self._cuda:
            start_event = torch.cuda.Event(enable_timing=True)
            end_event = torch.cuda.Event(enable_timing=True)
            start_event.record()
            try:
                yield
            finally:
                end_event.record()
                self._events.append((name, start_event, end_event))
            return
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def flush(self) -> dict[str, float]:
        if self._events:
            torch.cuda.synchronize()
            for name, start_event, end_event in self._events:
                self.seconds[name] += start_event.elapsed_time(end_event) / 1000.0
            self._events.clear()
        out = dict(self.seconds)
        self.seconds.clear()
        return out
