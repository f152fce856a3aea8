"""`make bench-throughput`: its arithmetic by hand, and a smoke run of real processes on a CPU."""

from __future__ import annotations

import re

import pytest

from ablations.plan.estimate import count_work
from agent import make_config
from benchmarks import throughput as bench_throughput
from benchmarks.throughput import Span, ablation_seconds, aggregate, table
from tests.test_makefile import make


def test_aggregate_rate_is_all_updates_over_the_whole_span() -> None:
    # Two processes: 32 updates in [10, 14] and 48 in [10.5, 15]: 80 updates in 5 s.
    row = aggregate([Span(10.0, 14.0, 32), Span(10.5, 15.0, 48)])
    assert (row.k, row.updates, row.seconds, row.rate) == (2, 80, 5.0, 16.0)
    first = aggregate([Span(0.0, 8.0, 32)])  # 4 updates/s alone
    lines = table([first, row]).splitlines()
    assert lines[1].split() == ["1", "32", "8.00", "4.00", "4.00", "1.00x"]
    assert lines[2].split() == ["2", "80", "5.00", "16.00", "8.00", "4.00x"]


def test_the_ablation_estimate_by_hand() -> None:
    # Atari100k Pong at S: 100k agent steps, the first 1024 random (prefill), then 16 steps
    # per iteration with 1024 * 16 / (16 * 64) = 16 updates each: 98,976 updates per run.
    pong = make_config("atari_pong", "S", {})
    train = pong.train
    assert (train.steps, train.prefill, train.train_ratio) == (100_000, 1024, 1024.0)
    per_run = (train.steps - train.prefill) * train.train_ratio / (train.batch_size * train.seq_len)
    assert count_work(train).updates == per_run == 98_976
    # 10 runs at 30 updates/s in all: 989,760 / 30 s = 9.165 h.
    assert ablation_seconds(98_976, 10, 30.0) == pytest.approx(32_992.0)


@pytest.mark.slow
def test_smoke_run_of_concurrent_processes_on_a_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--env", "cartpole", "--preset", "debug", "--ks", "1,2", "--updates", "8"]
    argv += ["--warmup", "0", "--device", "cpu", "--set", "train.prefill=64"]
    assert bench_throughput.main(argv) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if re.match(r"\s+[12]\s+\d", line)]
    assert [row[0] for row in rows] == ["1", "2"]
    # Whole iterations: 512 * 16 / (8 * 16) = 64 updates each, at least the 8 asked for.
    assert [int(row[1]) for row in rows] == [64, 128]
    rates = {int(row[0]): float(row[3]) for row in rows}
    best = max(rates, key=rates.__getitem__)
    # (20,000 - 64) steps x 512 / (8 x 16) = 79,744 updates per run; 10 runs at the best rate.
    line = next(x for x in out.splitlines() if x.startswith("estimated 5-seed x 2-arm cartpole"))
    assert f"at k = {best}: 10 runs x 79,744 updates / {rates[best]:.2f} updates/s" in line
    hours = float(re.search(r"= ([\d.]+) h", line).group(1))
    assert hours == pytest.approx(10 * 79_744 / rates[best] / 3600, abs=0.006)


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--ks", "1,x", "KS must be comma-separated whole numbers, got '1,x'"),
        ("--ks", "0,2", "KS must be positive whole numbers, got '0,2'"),
        ("--updates", "0", "UPDATES must be positive, got 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], flag: str, value: str, says: str
) -> None:
    with pytest.raises(SystemExit) as stop:
        bench_throughput.main(["--env", "cartpole", "--preset", "debug", flag, value])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0]


def test_make_bench_throughput_passes_its_variables(tmp_path) -> None:
    default = make("-n", "bench-throughput", cwd=tmp_path).stdout
    assert "--ks '1,2,4,8'" in default and "--env 'atari_pong'" in default
    assert "--preset" not in default and "--shape" not in default  # the module's S
    smoke = make("-n", "bench-throughput", "ENV=cartpole", "PRESET=debug", "KS=1,2", cwd=tmp_path)
    words = smoke.stdout.replace("\\\n", " ").split()
    assert "--ks '1,2' --env 'cartpole' --preset 'debug'" in " ".join(words)


def test_seed_batch_lines_say_the_ratio_of_the_times_they_print(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from benchmarks import seed_batch

    argv = ["--presets", "debug", "--starts", "last", "--ks", "2", "--reps", "2"]
    assert seed_batch.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    pattern = re.compile(
        r"seed batch: K=(\d+), debug, starts=last: ([\d.]+)x the updates/s per core of one run "
        r"per process \(one update: 1 run ([\d.]+) ms, \d+ batched ([\d.]+) ms; median of 2\)"
    )
    rows = [pattern.fullmatch(line) for line in out[1:]]
    assert len(rows) == 2 and all(rows), out
    for row in rows:
        k, ratio, single, batched = (float(x) for x in row.groups())
        assert ratio == pytest.approx(k * single / batched, abs=0.06)  # one decimal printed
    assert [int(float(row.group(1))) for row in rows] == [1, 2]


def test_seed_batch_bad_input_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import seed_batch

    with pytest.raises(SystemExit) as exit_info:
        seed_batch.main(["--presets", "huge"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "huge" in err[0]
