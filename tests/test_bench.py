"""`make bench` runs end to end on a real env and accounts for every second it times."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from agent import Trainer, make_config
from benchmarks import speed as bench
from tests.conftest import TINY


def test_compare_schedules_accounts_for_the_whole_iteration() -> None:
    config = make_config("cartpole", "debug", {**TINY, "train.prefill": 64})
    result = bench.compare_schedules(config, iterations=1, warmup=0)
    sep, cou = result["separate"], result["coupled"]
    assert sep["updates"] == cou["updates"] == round(config.train.updates_per_iteration())
    for row in (sep, cou):
        # One iteration: the medians are the values, so phases plus other are the total.
        parts = sum(row[p] for p in bench.PHASES) + row["other"]
        assert parts == pytest.approx(row["total"], rel=1e-9)
        assert row["wm"] > 0 and row["imagine"] > 0 and row["ac"] > 0 and row["other"] >= 0
    assert sep["starts"] > 0
    assert cou["starts"] == 0  # coupled imagines from the WM batch: no sampling of starts


def test_bench_prints_shares_and_the_ideal_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--env", "cartpole", "--preset", "debug", "--iterations", "1", "--warmup", "0"]
    assert bench.main([*argv, "--set", "train.prefill=64", "--set", "train.train_ratio=64"]) == 0
    out = capsys.readouterr().out
    for phase in (*bench.PHASES, "other", "total"):
        assert any(line.split()[:1] == [phase] and "%" in line for line in out.splitlines())
    assert "ideal" in out and "off by" in out


def test_bench_rejects_a_bad_override(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--env", "cartpole", "--preset", "debug", "--set", "train.nonsense=1"])
    assert exit_info.value.code != 0
    assert "nonsense" in capsys.readouterr().err


def test_profile_prints_the_op_table_and_counts_per_update(capsys: pytest.CaptureFixture[str]):
    argv = ["--env", "cartpole", "--preset", "debug", "--profile", "--iterations", "1"]
    argv += ["--device", "cpu"]  # on a GPU machine too: a CPU has no launches or syncs
    assert bench.main([*argv, "--set", "train.prefill=64"]) == 0
    out = capsys.readouterr().out
    assert "Self CPU" in out and "aten::mm" in out  # the profiler's table, sorted by own time
    # A CPU has no kernel launches or device syncs to count.
    assert "per update: 0 kernel launches, 0 device syncs" in out


def test_counted_flops_of_a_linear_layer_are_its_multiply_adds_forward_and_backward() -> None:
    # The counter as bench uses it, on a hand-checkable product: (4, 3) @ (3, 5) is
    # 4 * 3 * 5 multiply-adds, 2 FLOPs each, once forward and twice backward (input, weight).
    layer = torch.nn.Linear(3, 5, bias=False)
    x = torch.randn(4, 3, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        layer(x).sum().backward()
    assert counter.get_total_flops() == 3 * 2 * 4 * 3 * 5


def hand_counted_linear_flops(trainer: Trainer) -> Callable[[], int]:
    """Hooks on every Linear layer of ``trainer``'s networks that add up ``2 * M * in * out``
    per call forward, and the same again for each product its backward computes (the weight's
    gradient, and the input's where it needs one); returns a function reading the total."""
    total = [0]

    def on_forward(layer: torch.nn.Linear, inputs: tuple[torch.Tensor], output: torch.Tensor):
        rows = inputs[0].numel() // layer.in_features
        flops = 2 * rows * layer.in_features * layer.out_features
        total[0] += flops
        if output.requires_grad:
            # Fires only when a gradient does reach this output in a backward pass.
            products = int(layer.weight.requires_grad) + int(inputs[0].requires_grad)
            output.register_hook(lambda grad: total.__setitem__(0, total[0] + products * flops))

    networks = (trainer.world_model, trainer.actor_critic)
    layers = [m for net in networks for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert layers and not any(
        isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)
        for net in networks
        for m in net.modules()
    ), "a vector env's networks are Linear layers only"
    for layer in layers:
        layer.register_forward_hook(on_forward)
    return lambda: total[0]


def test_update_flops_equal_the_sum_over_its_linear_layers_by_hand() -> None:
    config = make_config("cartpole", "debug", {**TINY, "train.prefill": 64})
    config.train.schedule, config.train.starts = "coupled", "all"
    trainer = bench.filled_trainer(config)
    read_total = hand_counted_linear_flops(trainer)
    counted = bench.counted_update(trainer)
    assert counted == read_total() > 0
    # A second update costs the same (fixed shapes), and the twin of update_flops as much.
    assert bench.counted_update(trainer) == counted == bench.update_flops(config)
    # The count is of one whole update: twice the batch, twice the FLOPs (every product's
    # rows are batch x time or batch x time x horizon).
    double = make_config("cartpole", "debug", {**TINY, "train.prefill": 64})
    double.train.batch_size *= 2
    assert bench.update_flops(double) == 2 * counted


def test_bench_shape_prints_the_achieved_gflops_beside_the_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--env", "cartpole", "--preset", "debug", "--full", "--iterations", "1"]
    argv += ["--warmup", "1", "--device", "cpu", "--set", "train.prefill=64"]
    assert bench.main(argv) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "one WM + AC update" in x)
    match = re.search(
        r": ([\d.]+) ms \(median\), ([\d.]+) GFLOP/s \(([\d.]+) GFLOP per update", line
    )
    assert match, line
    milliseconds, rate, gflop = (float(g) for g in match.groups())
    config = make_config("cartpole", "debug", {**TINY, "train.prefill": 64})
    flops = bench.update_flops(config)
    assert gflop == pytest.approx(flops / 1e9, rel=1e-3)
    # The printed rate is the counted FLOPs over the printed time (both rounded).
    assert rate == pytest.approx(flops / (milliseconds / 1e3) / 1e9, rel=0.01, abs=0.06)
