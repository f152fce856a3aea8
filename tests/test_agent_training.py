"""Learning, determinism, checkpoints, real envs end to end, and the CLI as a subprocess."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from agent import Trainer
from agent.logger import MemoryLogger

ROOT = Path(__file__).resolve().parents[1]
WALL_CLOCK = ("time/", "speed/")


def test_world_model_loss_falls_on_a_fixed_batch(make_trainer):
    trainer = make_trainer()
    batch, _ = trainer._sample_batch()
    wm = trainer.world_model

    def evaluate() -> dict[str, float]:
        # The same latent samples before and after, so only the parameters differ.
        with torch.no_grad():
            _, metrics, _ = wm.compute_loss(batch, torch.Generator().manual_seed(0))
        return {k: v.item() for k, v in metrics.items()}

    before = evaluate()
    for _ in range(50):
        loss, _, _ = wm.compute_loss(batch, trainer.generator)
        trainer.wm_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainer.wm_optimizer.step()
    after = evaluate()
    assert after["loss/wm"] < 0.9 * before["loss/wm"], (before, after)
    assert after["loss/decoder"] < 0.7 * before["loss/decoder"], (before, after)
    assert after["loss/cont"] < before["loss/cont"], (before, after)


def run_history(tiny, **overrides) -> tuple[Trainer, dict[str, list]]:
    logger = MemoryLogger()
    config = tiny(train__steps=280, train__log_every=16, **overrides)
    trainer = Trainer(config, logger)
    trainer.train()
    history = {k: v for k, v in logger.history.items() if not k.startswith(WALL_CLOCK)}
    return trainer, history


@pytest.mark.parametrize("schedule", ["separate", "coupled"])
def test_same_seed_gives_identical_metrics(tiny, schedule):
    first, history = run_history(tiny, train__schedule=schedule, train__seed=3)
    second, again = run_history(tiny, train__schedule=schedule, train__seed=3)
    assert "loss/wm" in history and "loss/actor" in history and "episode/return" in history
    assert len(history["loss/wm"]) == 5  # one flush per iteration after prefill
    assert history == again
    for (name, a), b in zip(
        first.actor_critic.state_dict().items(),
        second.actor_critic.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(a, b), name


def test_different_seeds_differ(tiny):
    _, history = run_history(tiny, train__seed=0)
    _, other = run_history(tiny, train__seed=1)
    assert history["loss/wm"] != other["loss/wm"]
    assert history["episode/return"] != other["episode/return"]


def test_evaluation_leaves_training_unchanged(tiny):
    # Evaluation draws from its own random streams: the training run is the same whether
    # and how often it is evaluated, so eval settings cannot confound an ablation.
    _, plain = run_history(tiny, train__seed=5)
    _, evaluated = run_history(tiny, train__seed=5, train__eval_every=64, train__eval_episodes=2)
    assert "eval/return" in evaluated and "eval/return" not in plain
    assert {k: v for k, v in evaluated.items() if not k.startswith("eval/")} == plain


def test_metrics_are_finite_and_counters_add_up(tiny):
    trainer, history = run_history(tiny, train__schedule="coupled")
    for name, values in history.items():
        assert all(math.isfinite(v) for _, v in values), name
    summary = trainer.summary()
    assert summary["env_steps"] == 280
    assert summary["wm_updates"] == summary["ac_updates"] == 5 * 8
    assert history["progress/wm_updates"][-1] == (280, 40.0)


def test_evaluate_runs_whole_episodes(make_trainer):
    trainer = make_trainer(prefill=False)
    result = trainer.evaluate(2)
    assert set(result) == {"eval/return", "eval/return_std", "eval/length"}
    assert result["eval/length"] >= 1 and result["eval/return"] == result["eval/length"]


def test_checkpoint_round_trip_and_resume(tiny, tmp_path):
    config = tiny(train__steps=264)
    trainer = Trainer(config)
    trainer.train()
    path = str(tmp_path / "checkpoint.pt")
    trainer.save(path)
    assert os.listdir(tmp_path) == ["checkpoint.pt"]  # the temporary file was renamed

    resumed = Trainer(tiny(train__steps=296))
    resumed.load(path)
    for module in ("world_model", "actor_critic"):
        saved = getattr(trainer, module).state_dict()
        for name, value in getattr(resumed, module).state_dict().items():
            assert torch.equal(value, saved[name]), f"{module}.{name}"
    for name in ("wm_optimizer", "actor_optimizer", "critic_optimizer"):
        assert (
            getattr(resumed, name).state_dict()["state"].keys()
            == getattr(trainer, name).state_dict()["state"].keys()
        )
    assert len(resumed.replay) == len(trainer.replay)
    assert resumed.replay.added == trainer.replay.added
    assert (resumed.replay.data["uid"] == trainer.replay.data["uid"]).all()
    for counter in ("env_steps", "wm_updates", "ac_updates", "iterations", "episodes"):
        assert getattr(resumed, counter) == getattr(trainer, counter), counter
    assert resumed.summary()["wall_seconds"] == trainer.summary()["wall_seconds"]

    summary = resumed.train()  # two more iterations from where the first run stopped
    assert summary["env_steps"] == 296
    assert summary["wm_updates"] == trainer.wm_updates + 16
    assert not torch.equal(
        resumed.world_model.state_dict()["rssm.gru.linear.weight"],
        trainer.world_model.state_dict()["rssm.gru.linear.weight"],
    )


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["separate", "coupled"])
def test_atari_pong_end_to_end(tiny, schedule):
    logger = MemoryLogger()
    config = tiny(
        "atari_pong",
        train__steps=64,
        train__prefill=32,
        train__collect_every=8,
        train__train_ratio=32,  # 2 updates per iteration
        train__log_every=8,
        train__schedule=schedule,
    )
    trainer = Trainer(config, logger)
    summary = trainer.train()
    assert summary["env_steps"] == 64
    assert summary["wm_updates"] == summary["ac_updates"] == 4 * 2
    assert trainer.replay.data["image"].shape[1:] == (64, 64, 3)
    for name in ("loss/wm", "loss/decoder", "loss/actor", "loss/critic"):
        assert math.isfinite(logger.last(name)), name


# --- the command line ------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "agent.train", "--no-progress", "--device", "cpu", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


TINY_CLI = [
    "--steps",
    "264",
    "--set",
    "train.prefill=200",
    "--set",
    "train.eval_every=0",
    "--set",
    "train.train_ratio=16",
]


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["separate", "coupled"])
def test_cli_trains_and_prints_a_summary(schedule):
    result = run_cli("--env", "cartpole", "--schedule", schedule, *TINY_CLI)
    assert result.returncode == 0, result.stderr
    assert f"schedule {schedule}" in result.stdout
    assert "env steps 264, WM updates 8, AC updates 8" in result.stdout
    assert "loss/wm:" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--schedule", "bogus"], "invalid choice: 'bogus'"),
        (["--env", "nope"], "unknown env 'nope'; known envs: acrobot, atari_alien"),
        (["--set", "train.batch_size=abc"], "train.batch_size expects int, got 'abc'"),
        (["--set", "train.batch_size=2.5"], "train.batch_size expects int, got '2.5'"),
        (["--set", "nonsense"], "--set expects KEY=VALUE"),
        (["--steps", "10"], "must exceed prefill + collect_every"),
        (["--set", "train.cuda_graphs=on"], "cuda_graphs=on needs a CUDA device"),
    ],
)
def test_cli_rejects_bad_values_with_one_error_line(args, message):
    result = run_cli(*TINY_CLI, *args)  # tiny budget, should a bad value slip through
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # no usage dump, no traceback
    assert "error:" in lines[0] and message in lines[0]
    assert result.stdout == ""
