"""Speed compared in pairs: the runs of two arms that share a task and a seed and trained side
by side on the same machine meet the same load, so their ratio of updates/s cancels it.

Runs are created before they train (an interim's at once), so a run's ``start_time`` says
when it was created, not when it trained. What is known for sure is that a run trained for
its training seconds (``wall_clock``, evaluation excluded) before its ``end_time``: its
*training window* ``[max(start_time, end_time - wall_clock), end_time]`` lies within the
time it ran. Two runs *trained side by side* when their training windows overlap for at
least :data:`SIDE_BY_SIDE_SHARE` of the shorter one. Pairs that did are analysed paired:
per pair the ratio arm / reference of updates/s, their geometric mean with a Student-t 95%
CI on the log ratios, and the Wilcoxon signed-rank test of the log ratios (scipy, two-sided).
Arms whose runs did not train side by side are compared unpaired, as every other score is,
unless they *trained apart*: every run of one trained before every run of the other (the arms
of two studies merged from different days, :mod:`analysis.merge`). Their speeds met different
loads, so no speed comparison is made at all.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from analysis import stats

SIDE_BY_SIDE_SHARE = 0.5
"""Two runs trained side by side when their training windows overlap for at least this
share of the shorter window."""
MIN_PAIRS = 2
"""Fewest side-by-side pairs for a paired analysis (a t interval needs two)."""
LOAD_PER_CORE_LIMIT = 0.5
"""A pair whose runs' mean load per core differs by more than this is flagged."""
PAIR_COLUMNS = (
    "task",
    "seed",
    "run_name",
    "reference_run",
    "ratio",
    "side_by_side",
    "same_machine",
    "load_gap",
)


def training_window(row: pd.Series | dict) -> tuple[float, float] | None:
    """``(start, end)`` in seconds since the epoch of the time a run surely trained in (see
    the module docstring); None when its end, its start or its training seconds are unknown."""
    end, start, seconds = row.get("end_time"), row.get("start_time"), row.get("wall_clock")
    if end is None or start is None or pd.isna(end) or pd.isna(start):
        return None
    if seconds is None or not np.isfinite(float(seconds)):
        return None
    end_s = pd.Timestamp(end).timestamp()
    return max(pd.Timestamp(start).timestamp(), end_s - float(seconds)), end_s


def trained_side_by_side(one: pd.Series | dict, other: pd.Series | dict) -> bool:
    """Whether the two runs' training windows overlap for at least :data:`SIDE_BY_SIDE_SHARE`
    of the shorter one (False when a window is unknown or empty)."""
    first, second = training_window(one), training_window(other)
    if first is None or second is None:
        return False
    shorter = min(first[1] - first[0], second[1] - second[0])
    overlap = min(first[1], second[1]) - max(first[0], second[0])
    return shorter > 0 and overlap >= SIDE_BY_SIDE_SHARE * shorter


TRAINED_APART = "trained at other times than {reference}'s runs: speed not compared"
"""The note of a speed comparison that :func:`trained_apart` rules out."""


def trained_apart(scores: pd.DataFrame, arm: str, reference: str) -> bool:
    """Whether ``arm``'s FINISHED runs all trained before, or all after, ``reference``'s: the
    span from the first training window's start to the last one's end of each arm do not
    meet (False where a window is unknown or an arm has no finished run: True only on
    evidence). Runs of one ablation, side by side or one after the other, interleave."""
    if not {"end_time", "start_time", "wall_clock"} <= set(scores.columns):
        return False
    finished = scores[scores["status"] == "FINISHED"]
    spans = []
    for name in (arm, reference):
        windows = [
            training_window(row) for row in finished[finished["arm"] == name].to_dict("records")
        ]
        if not windows or any(window is None for window in windows):
            return False
        spans.append((min(w[0] for w in windows), max(w[1] for w in windows)))
    (start, end), (other_start, other_end) = spans
    return end < other_start or other_end < start


def speed_pairs(scores: pd.DataFrame, arm: str, reference: str) -> pd.DataFrame:
    """One row per ``(task, seed)`` with a FINISHED run of ``arm`` and of ``reference``, both
    with a positive finite speed: columns :data:`PAIR_COLUMNS` (``ratio`` = updates/s of
    the arm's run / the reference's; ``same_machine``: equal hardware and device tags;
    ``load_gap``: the difference of their mean load per core, NaN where unknown).

    ``scores``: :func:`analysis.summary.per_run_scores` rows (all statuses); without the
    columns that identify a run (``seed``, ``run_name``), no pairs.
    """
    if not {"seed", "run_name", "updates_per_s"} <= set(scores.columns):
        return pd.DataFrame(columns=list(PAIR_COLUMNS))
    finished = scores[scores["status"] == "FINISHED"]
    if "task" not in finished:
        finished = finished.assign(task="")
    speed = finished["updates_per_s"].to_numpy(float)
    finished = finished[np.isfinite(speed) & (speed > 0)]
    mine = {(r["task"], r["seed"]): r for _, r in finished[finished["arm"] == arm].iterrows()}
    base = {(r["task"], r["seed"]): r for _, r in finished[finished["arm"] == reference].iterrows()}
    rows = []
    for key in [key for key in mine if key in base]:
        run, ref = mine[key], base[key]
        machine = all(
            str(run.get(tag, "")) == str(ref.get(tag, "")) for tag in ("hardware", "device")
        )
        rows.append(
            {
                "task": key[0],
                "seed": key[1],
                "run_name": run["run_name"],
                "reference_run": ref["run_name"],
                "ratio": float(run["updates_per_s"]) / float(ref["updates_per_s"]),
                "side_by_side": trained_side_by_side(run, ref),
                "same_machine": machine,
                "load_gap": abs(_load(run) - _load(ref)),
            }
        )
    return pd.DataFrame(rows, columns=list(PAIR_COLUMNS))


def _load(run: pd.Series) -> float:
    return float(run.get("load_per_core", np.nan))


@dataclass(frozen=True)
class PairedSpeed:
    """The paired speed comparison of one arm with the reference.

    Attributes:
        pairs: ``(task, seed)`` pairs with both runs finished and timed.
        side_by_side: of those, the pairs that trained side by side (the ones analysed).
        ratio: geometric mean over the side-by-side pairs of updates/s arm / reference.
        low, high: its 95% CI, ``exp`` of the Student-t interval of the mean log ratio.
        p: two-sided Wilcoxon signed-rank p of the log ratios (scipy's default method:
            exact below 50 pairs without ties or zeros); NaN where undefined.
        faster: side-by-side pairs in which the arm's run was the faster.
    """

    pairs: int
    side_by_side: int
    ratio: float = math.nan
    low: float = math.nan
    high: float = math.nan
    p: float = math.nan
    faster: int = 0

    @property
    def paired(self) -> bool:
        """Whether speed is analysed paired: at least :data:`MIN_PAIRS` side-by-side pairs."""
        return self.side_by_side >= MIN_PAIRS


def paired_speed(pairs: pd.DataFrame) -> PairedSpeed:
    """The paired comparison over the side-by-side rows of :func:`speed_pairs` output."""
    ratios = pairs.loc[pairs["side_by_side"].astype(bool), "ratio"].to_numpy(float)
    result = PairedSpeed(pairs=len(pairs), side_by_side=ratios.size)
    if not result.paired:
        return result
    logs = np.log(ratios)  # (n_pairs,)
    n = logs.size
    half = scipy_stats.t.ppf(0.5 + stats.CONFIDENCE / 2, n - 1) * logs.std(ddof=1) / math.sqrt(n)
    mean = float(logs.mean())
    return PairedSpeed(
        pairs=len(pairs),
        side_by_side=n,
        ratio=math.exp(mean),
        low=math.exp(mean - half),
        high=math.exp(mean + half),
        p=wilcoxon_p(logs),
        faster=int((ratios > 1).sum()),
    )


def wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of ``(n,)`` paired differences (scipy's defaults:
    zero differences dropped); NaN when every difference is zero."""
    if not np.any(differences != 0):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # scipy's note on ties and small n
        return float(scipy_stats.wilcoxon(differences).pvalue)


def comparison(scores: pd.DataFrame, arm: str, reference: str) -> PairedSpeed:
    """:func:`paired_speed` of :func:`speed_pairs`: the arm's paired speed comparison."""
    return paired_speed(speed_pairs(scores, arm, reference))


def pairing_sentence(result: PairedSpeed, arm: str, reference: str, where: str = "") -> str:
    """The pairing stated, with the paired numbers: e.g. ``'Speed, paired: in 30 of 30 (task,
    seed) pairs the coupled and separate runs trained side by side ...'``. ``where`` names
    the scope (``'on cartpole'``); empty when not paired."""
    if not result.paired:
        return ""
    scope = f" {where}" if where else ""
    return (
        f"Speed{scope}, paired: in {result.side_by_side} of {result.pairs} (task, seed) pairs "
        f"the {arm} and {reference} runs trained side by side (training windows overlapping "
        f"for at least {SIDE_BY_SIDE_SHARE:.0%} of the shorter), so each pair's ratio of "
        "updates/s shares its machine's load; geometric mean "
        f"{arm}/{reference} {result.ratio:.3g}, 95% CI [{result.low:.3g}, {result.high:.3g}] "
        f"(Student t on the log ratios), Wilcoxon signed-rank p = {_p_text(result.p)} "
        f"(two-sided, log ratios); {arm} faster in {result.faster} of "
        f"{result.side_by_side} pairs."
    )


def _p_text(p: float) -> str:
    return "n/a" if not np.isfinite(p) else f"{p:.2g}"


def pair_conditions(pairs: pd.DataFrame, arm: str, reference: str) -> list[str]:
    """Cautions on a paired speed comparison, one sentence each: pairs left out for not
    training side by side, pairs whose two runs ran on different machines, pairs whose
    runs' load per core differs by more than :data:`LOAD_PER_CORE_LIMIT`. Load that
    differs *between* pairs does not bias a paired ratio, so it is not flagged."""
    warnings_ = []
    apart = pairs[~pairs["side_by_side"].astype(bool)]
    if not apart.empty:
        warnings_.append(
            f"{len(apart)} of {len(pairs)} {arm}/{reference} pairs did not train side by side "
            f"and are left out of the paired speed: {', '.join(apart['run_name'])}."
        )
    together = pairs[pairs["side_by_side"].astype(bool)]
    for row in together[~together["same_machine"].astype(bool)].itertuples():
        warnings_.append(
            f"{row.run_name} and {row.reference_run} trained on different hardware or devices: "
            "their ratio compares machines as well as schedules."
        )
    gaps = together["load_gap"].to_numpy(float)
    for row in together[np.isfinite(gaps) & (gaps > LOAD_PER_CORE_LIMIT)].itertuples():
        warnings_.append(
            f"{row.run_name} and {row.reference_run} trained side by side but their mean load "
            f"per core differed by {row.load_gap:.2f}: that pair's ratio is distorted."
        )
    return warnings_
