"""Metric averaging and phase timing, the agent's side of what a run records."""

from __future__ import annotations

import pytest
import torch

from agent.logger import MetricMeans, PhaseTimer


def test_metric_means_average_tensors_and_numbers_per_name():
    means = MetricMeans()
    means.add({"loss/wm": torch.tensor(1.0), "grad_norm/wm": torch.tensor(4.0)})
    means.add({"loss/wm": torch.tensor(3.0), "grad_norm/wm": torch.tensor(8.0)})
    # Another group holding a name of the first, a bf16 value and a plain number.
    means.add({"loss/wm": torch.tensor(5.0, dtype=torch.bfloat16), "diversity/age": 10.0})
    means.add({"diversity/age": 20.0})
    assert means.flush() == {"loss/wm": 3.0, "grad_norm/wm": 6.0, "diversity/age": 15.0}
    assert means.flush() == {}  # a flush starts afresh


def test_metric_means_keep_a_copy_of_what_was_added():
    """A CUDA graph overwrites its outputs at the next replay; what was added must not move."""
    means = MetricMeans()
    value = torch.tensor(2.0)
    means.add({"loss/actor": value})
    value.fill_(100.0)
    assert means.flush() == {"loss/actor": 2.0}


def test_phase_timer_sums_seconds_per_phase_until_flushed():
    timer = PhaseTimer(torch.device("cpu"))
    for _ in range(2):
        with timer.phase("wm"):
            sum(range(10_000))
    with timer.phase("ac"):
        pass
    seconds = timer.flush()
    assert seconds.keys() == {"wm", "ac"} and seconds["wm"] > seconds["ac"] >= 0
    assert timer.flush() == {}


def test_phase_timer_charges_a_phase_that_raised():
    timer = PhaseTimer(torch.device("cpu"))
    with pytest.raises(RuntimeError), timer.phase("wm"):
        raise RuntimeError("boom")
    assert "wm" in timer.flush()
