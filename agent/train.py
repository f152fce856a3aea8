"""Train one run from the command line.

python -m agent.train --env cartpole --schedule coupled --preset debug --steps 5000 --seed 0
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

import torch
from tqdm.auto import tqdm

from agent.cli import ArgumentParser, key_value
from agent.config import ENV_PRESETS, SCHEDULES, SIZE_PRESETS, STARTS, ConfigError, make_config
from agent.logger import MemoryLogger
from agent.trainer import Trainer


class ConsoleLogger(MemoryLogger):
    """Keeps the history and prints each evaluation as it happens."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        super().log_metrics(metrics, step)
        if "eval/return" in metrics:
            tqdm.write(
                f"step {step}: eval return {metrics['eval/return']:.1f} "
                f"± {metrics['eval/return_std']:.1f}"
            )


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """``["train.lr=1e-4", ...]`` -> ``{"train.lr": "1e-4"}``; raises ConfigError if malformed."""
    return dict(key_value(pair, "--set expects KEY=VALUE") for pair in pairs)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m agent.train", description="Train one DreamerV3 run.")
    parser.add_argument(
        "--env", default="cartpole", help=f"one of: {', '.join(sorted(ENV_PRESETS))}"
    )
    parser.add_argument("--preset", default="debug", choices=list(SIZE_PRESETS))
    parser.add_argument("--schedule", default="coupled", choices=SCHEDULES)
    parser.add_argument("--starts", default="last", choices=STARTS)
    parser.add_argument("--steps", type=int, help="agent steps (default: the env preset's budget)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:i]")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config field, e.g. --set train.train_ratio=256 (repeatable)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        overrides: dict[str, object] = {
            "train.schedule": args.schedule,
            "train.starts": args.starts,
            "train.seed": args.seed,
            "train.device": args.device,
        }
        if args.steps is not None:
            overrides["train.steps"] = args.steps
        overrides.update(parse_overrides(args.set))
        config = make_config(args.env, args.preset, overrides)
        wants_cuda = config.train.device.startswith("cuda") or config.train.cuda_graphs == "on"
        if wants_cuda and not torch.cuda.is_available():
            raise ConfigError("CUDA was asked for (--device or cuda_graphs) but is not available")
        logger = ConsoleLogger()
        trainer = Trainer(config, logger)  # an env that cannot start is a ConfigError too
    except ConfigError as error:
        parser.error(str(error))  # one line, exit code 2

    t = config.train
    print(
        f"{config.env.name} | preset {config.preset} | schedule {t.schedule} | starts {t.starts} | "
        f"seed {t.seed} | device {trainer.device} | {t.updates_per_iteration():g} updates "
        f"per {t.collect_every} steps"
    )
    summary = trainer.train(progress=not args.no_progress)
    lines = [
        f"env steps {summary['env_steps']:.0f}, WM updates {summary['wm_updates']:.0f}, "
        f"AC updates {summary['ac_updates']:.0f}, episodes {summary['episodes']:.0f}, "
        f"wall-clock {summary['wall_seconds']:.1f} s"
    ]
    for name in ("eval/return", "episode/return", "loss/wm", "speed/updates_per_s"):
        if logger.history.get(name):
            lines.append(f"{name}: {logger.last(name):.3f}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
