"""The names the ablation runner writes to MLflow and the analysis reads back: metrics, run
tags and the parent's record of the runs planned. The writer (``ablations.tracking``) and the
reader (:mod:`analysis.load`) both import them from here, so that one of them cannot rename a
tag the other still looks for; it lives in ``analysis/`` because the runner may import the
analysis but the analysis may not import the runner (``agent/`` knows nothing of MLflow tags).
"""

from __future__ import annotations

from collections.abc import Mapping

WALL_CLOCK_METRIC = "time/total"
RUN_TAGS = (
    "arm",
    "schedule",
    "starts",
    "env",
    "preset",
    "git_commit",
    "device",
    "torch_version",
    "hardware",
    "cpu_count",
    "gpu",
    "load_avg_start",
    "task",
)
SCORE_TAGS = {"score.random": "score_random", "score.best": "score_best"}
"""A task's score references (tags of its runs) -> float columns; NaN when it has none."""
PLANNED_SEEDS_TAG = "planned_seeds"
"""The parent's record of the runs planned: ``arm:n`` pairs, comma-separated, in the arms'
order; seeds ``0..n-1`` of that arm on every task. Adaptive seeding plans more seeds only for
the arms it still tests, so arms can differ."""


def format_planned_seeds(seeds: Mapping[str, int]) -> str:
    """``{"separate": 10, "coupled": 5}`` -> ``"separate:10,coupled:5"`` (the tag's value)."""
    return ",".join(f"{arm}:{count}" for arm, count in seeds.items())


def parse_planned_seeds(text: str) -> dict[str, int]:
    """The inverse of :func:`format_planned_seeds`; malformed pairs are skipped."""
    seeds: dict[str, int] = {}
    for pair in text.split(","):
        arm, _, count = pair.rpartition(":")
        if arm and count.isdigit():
            seeds[arm] = int(count)
    return seeds
