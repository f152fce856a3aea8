"""`make bench` runs end to end on a real env and accounts for every second it times."""

from __future__ import annotations

import pytest

from agent import bench, make_config
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
