"""Long commands show life within seconds, also into a pipe: real subprocesses, real envs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

FIRST_OUTPUT_S = 60.0  # python, torch and mlflow start in seconds; this machine may be loaded


def timed_output(command: list[str], cwd: Path) -> tuple[float, list[tuple[float, str]], int]:
    """Run ``command`` with stdout and stderr into one pipe; returns the seconds to the first
    byte, every chunk with the seconds it arrived at, and the exit code."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    chunks = []
    try:
        while chunk := os.read(process.stdout.fileno(), 65536):
            chunks.append((time.perf_counter() - start, chunk.decode(errors="replace")))
        code = process.wait(timeout=600)
    finally:
        process.kill()
    ended = time.perf_counter() - start
    return ended, chunks, code


@pytest.mark.slow
def test_bench_shows_its_header_and_progress_before_it_ends(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "benchmarks.speed", "--env", "cartpole", "--preset", "debug"]
    command += ["--iterations", "1", "--warmup", "1", "--set", "train.train_ratio=64"]
    ended, chunks, code = timed_output([*command, "--set", "train.prefill=64"], tmp_path)
    assert code == 0
    header = next(at for at, text in chunks if "preset debug" in text)
    assert header < FIRST_OUTPUT_S and header < ended - 0.5  # not held back until the end
    timing = [at for at, text in chunks if "bench: timing" in text]
    assert timing and timing[0] < ended - 0.1


@pytest.mark.slow
def test_an_ablation_shows_each_runs_steps_and_updates_as_it_trains(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "ablations", "--env", "atari_pong", "--seeds", "1"]
    command += ["--preset", "debug", "--steps", "300", "--jobs", "2", "--cpus-per-run", "1"]
    for value in ("train.prefill=100", "train.train_ratio=32", "train.eval_every=0"):
        command += ["--set", value]
    ended, chunks, code = timed_output([*command, "--no-report"], tmp_path)
    output = "".join(text for _, text in chunks)
    assert code == 0, output[-2000:]
    opening = next(at for at, text in chunks if "ablation 'atari_pong-debug-300steps'" in text)
    assert opening < FIRST_OUTPUT_S and opening < ended - 5.0
    # The bar's postfix while runs are in flight, reported from inside the worker.
    seen = re.findall(r"(\w+)-seed0 ([\d,]+)/300 steps, ([\d,]+) updates", output)
    steps = {int(s.replace(",", "")) for _, s, _ in seen}
    assert any(0 < s < 300 for s in steps), seen
    assert {arm for arm, _, _ in seen} == {"separate", "coupled"}
    assert output.count("A.L.E: Arcade Learning Environment") == 1  # not once per run
