"""Main effects and interactions of a two-level factorial ablation (:mod:`analysis.factors`),
on the normalised final score, per task and over the suite.

Definitions, with ``k`` two-level factors, the ``2^k`` cells (one arm each) and ``m_c`` the
mean score of cell ``c``'s runs on a task:

- main effect of A: the mean over the other factors' level combinations of
  ``m[A=high] - m[A=low]``; for a 2x2, ``((a2b1 - a1b1) + (a2b2 - a1b2)) / 2``;
- interaction of A and B: A's effect where B is high minus A's effect where B is low
  (averaged over any other factors); for a 2x2, ``(a2b2 - a1b2) - (a2b1 - a1b1)``.

Each is a contrast ``sum_c w_c m_c`` of the cell means. Over the suite, an effect is the mean
of its per-task values (every task weighs the same).

Intervals: stratified percentile bootstrap, runs resampled with replacement within each task
and cell (tasks and cells fixed), from a Generator seeded explicitly; none below
:data:`analysis.aggregate.MIN_RUNS_PER_TASK` runs in some cell. p-values: two-sided
permutation tests, the share of relabelings whose effect is at least as far from 0 as the
observed one:

- main effect of A: runs are relabelled between A's two levels within each task and level
  combination of the other factors, cell sizes kept (exact under the null that A changes
  no run's score);
- interaction: the residuals of the model without the interaction (fitted by least squares
  per task) are relabelled across all cells of a task, and the interaction of the relabelled
  residuals is the statistic (Freedman and Lane 1983; approximate, as residuals are only
  nearly exchangeable). Unrelabelled, it is the observed interaction.

Every distinct relabeling is enumerated when there are at most :data:`EXACT_LIMIT` of them;
beyond, :data:`RANDOM_RELABELINGS` are drawn and ``p = (1 + hits) / (1 + draws)``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import aggregate, suite
from analysis.factors import Design

EXACT_LIMIT = 100_000
"""Most distinct relabelings enumerated for an exact p (5 runs per cell on one task: a main
effect has 252^2 = 63,504); beyond it, random relabelings."""
RANDOM_RELABELINGS = 9_999
CONFIDENCE = 0.95
TIE_TOLERANCE = 1e-9
"""Relative to the largest |score|: relabelings whose |effect| falls short of the observed by
less count as ties (reached), so rounding in the sums never decides a p-value."""
SCORE_NORMALISED, SCORE_RAW = "normalised score", "raw final return"


@dataclass(frozen=True)
class Effect:
    """One effect of the design: its label, the reader's words, the contrast ``weights``
    over cells ``(2^k,)`` (cells in :func:`cells_of` order) and the factors it involves."""

    label: str
    words: str
    weights: np.ndarray
    factors: tuple[int, ...]

    @property
    def is_main(self) -> bool:
        """A main effect (one factor), not an interaction."""
        return len(self.factors) == 1


@dataclass(frozen=True)
class PValue:
    """A permutation p, how it was found and over how many relabelings."""

    p: float
    method: str  # "exact" or "random"
    relabelings: int  # distinct relabelings (exact) or random draws


@dataclass(frozen=True)
class Stratum:
    """Runs whose labels a permutation shuffles among themselves: ``values (n,)``, each
    run's cell position ``labels (n,)`` (0..m-1) and the statistic's coefficient per
    position ``coefficients (m,)``: the stratum adds ``sum_i values_i *
    coefficients[labels_i]`` to the effect."""

    values: np.ndarray
    labels: np.ndarray
    coefficients: np.ndarray

    @property
    def relabelings(self) -> int:
        """Distinct relabelings: the multinomial ``n! / prod(n_c!)``."""
        counts = np.bincount(self.labels, minlength=self.coefficients.size)
        return math.factorial(int(counts.sum())) // math.prod(
            math.factorial(int(c)) for c in counts
        )

    def statistic(self, labels: np.ndarray) -> np.ndarray:
        """``labels (..., n)`` -> ``(...)``: the stratum's part of the effect."""
        return (self.coefficients[labels] * self.values).sum(-1)


def cells_of(k: int) -> list[tuple[int, ...]]:
    """The ``2^k`` cells as level tuples (0 low, 1 high), the order of every weight vector."""
    return list(itertools.product((0, 1), repeat=k))


def _sign(cell: tuple[int, ...], factors: tuple[int, ...]) -> int:
    return math.prod(1 if cell[i] else -1 for i in factors)


def effects(design: Design) -> list[Effect]:
    """Every main effect, then every two-factor interaction, as contrasts over the cells."""
    k = len(design.factors)
    cells = cells_of(k)
    out = []
    for i, factor in enumerate(design.factors):
        weights = np.array([_sign(c, (i,)) for c in cells], float) / 2 ** (k - 1)
        out.append(Effect(factor.name, factor.contrast, weights, (i,)))
    for i, j in itertools.combinations(range(k), 2):
        a, b = design.factors[i], design.factors[j]
        weights = np.array([_sign(c, (i, j)) for c in cells], float) / 2 ** (k - 2)
        words = f"({a.contrast} | {b.high}) - ({a.contrast} | {b.low})"
        out.append(Effect(f"{a.name} x {b.name}", words, weights, (i, j)))
    return out


def effect_value(cell_values: Sequence[np.ndarray], weights: np.ndarray) -> float:
    """The contrast ``sum_c w_c mean(cell c)``; ``cell_values``: per cell ``(n_c,)``."""
    return float(sum(w * np.mean(v) for w, v in zip(weights, cell_values, strict=True)))


# ----------------------------------------------------------------------------------------------
# Bootstrap
# ----------------------------------------------------------------------------------------------


def bootstrap_ci(
    tasks: Sequence[Sequence[np.ndarray]],
    weights: np.ndarray,
    rng: np.random.Generator,
    n_resamples: int,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile interval of the mean over ``tasks`` of the contrast, each task given as
    its cells' scores (per cell ``(n_c,)``), runs resampled within each task and cell.
    NaN (and no draw) when a cell has fewer than ``MIN_RUNS_PER_TASK`` runs."""
    if any(v.size < aggregate.MIN_RUNS_PER_TASK for cells in tasks for v in cells):
        return float("nan"), float("nan")
    total = np.zeros(n_resamples)
    for cells in tasks:
        for w, values in zip(weights, cells, strict=True):
            draws = rng.integers(0, values.size, size=(n_resamples, values.size))
            total += w * values[draws].mean(1)
    total /= len(tasks)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(total, [tail, 100 - tail])
    return float(low), float(high)


# ----------------------------------------------------------------------------------------------
# Permutation
# ----------------------------------------------------------------------------------------------


def main_effect_strata(cells: Sequence[np.ndarray], effect: Effect, scale: float) -> list[Stratum]:
    """One task's strata for a main effect: per level combination of the other factors, the
    runs of the two cells that differ only in this factor. ``scale``: the task's weight."""
    (factor,) = effect.factors
    positions = {cell: index for index, cell in enumerate(cells_of(int(math.log2(len(cells)))))}
    strata = []
    for cell, index in positions.items():
        if cell[factor]:
            continue
        high = positions[cell[:factor] + (1,) + cell[factor + 1 :]]
        values = np.concatenate([cells[index], cells[high]])
        labels = np.repeat([0, 1], [cells[index].size, cells[high].size])
        coefficients = scale * np.array(
            [effect.weights[index] / cells[index].size, effect.weights[high] / cells[high].size]
        )
        strata.append(Stratum(values, labels, coefficients))
    return strata


def interaction_stratum(cells: Sequence[np.ndarray], effect: Effect, scale: float) -> Stratum:
    """One task's stratum for an interaction: every run, its value replaced by its residual
    from the least-squares fit of all other contrasts of the cells (intercept and main
    effects for a 2x2)."""
    k = int(math.log2(len(cells)))
    grid = cells_of(k)
    subsets = [s for r in range(k + 1) for s in itertools.combinations(range(k), r)]
    kept = [s for s in subsets if s != effect.factors]
    labels = np.repeat(np.arange(len(cells)), [v.size for v in cells])
    design = np.array([[_sign(grid[c], s) for s in kept] for c in labels], float)  # (n, 2^k-1)
    values = np.concatenate(cells)
    fitted = design @ np.linalg.lstsq(design, values, rcond=None)[0]
    sizes = np.array([v.size for v in cells], float)
    return Stratum(values - fitted, labels, scale * effect.weights / sizes)


def labelings(labels: np.ndarray) -> np.ndarray:
    """Every distinct assignment of the runs to positions keeping each position's count:
    ``(relabelings, n)``, the observed one among them."""
    counts = np.bincount(labels)
    n = labels.size
    rows: list[np.ndarray] = []

    def fill(row: np.ndarray, free: tuple[int, ...], position: int) -> None:
        if position == counts.size - 1:
            row = row.copy()
            row[list(free)] = position
            rows.append(row)
            return
        for chosen in itertools.combinations(free, int(counts[position])):
            row[list(chosen)] = position
            rest = tuple(i for i in free if i not in chosen)
            fill(row, rest, position + 1)

    fill(np.zeros(n, int), tuple(range(n)), 0)
    return np.stack(rows)


def permutation_p(
    strata: Sequence[Stratum],
    observed: float,
    rng: np.random.Generator,
    exact_limit: int = EXACT_LIMIT,
    draws: int = RANDOM_RELABELINGS,
) -> PValue:
    """Two-sided p of ``observed`` (the sum of the strata's statistics as labelled): every
    relabeling when their number (the product over strata) is at most ``exact_limit``,
    else ``draws`` random ones, each stratum relabelled independently."""
    scale = max((float(np.abs(s.values).max()) for s in strata if s.values.size), default=1.0)
    tolerance = TIE_TOLERANCE * max(scale, 1.0)
    total = math.prod(s.relabelings for s in strata)
    if total <= exact_limit:
        distribution = np.zeros(1)
        for stratum in strata:
            part = stratum.statistic(labelings(stratum.labels))  # (relabelings,)
            distribution = (distribution[:, None] + part[None, :]).ravel()
        hits = int((np.abs(distribution) >= abs(observed) - tolerance).sum())
        return PValue(hits / distribution.size, "exact", distribution.size)
    sums = np.zeros(draws)
    for stratum in strata:
        shuffled = rng.permuted(np.tile(stratum.labels, (draws, 1)), axis=1)  # (draws, n)
        sums += stratum.statistic(shuffled)
    hits = int((np.abs(sums) >= abs(observed) - tolerance).sum())
    return PValue((1 + hits) / (1 + draws), "random", draws)


def effect_strata(tasks: Sequence[Sequence[np.ndarray]], effect: Effect) -> list[Stratum]:
    """The strata of an effect's mean over ``tasks`` (each task weighs ``1 / len(tasks)``)."""
    scale = 1.0 / len(tasks)
    if effect.is_main:
        return [s for cells in tasks for s in main_effect_strata(cells, effect, scale)]
    return [interaction_stratum(cells, effect, scale) for cells in tasks]


# ----------------------------------------------------------------------------------------------
# The page's numbers
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FactorialResult:
    """``effects``: one row per scope (each task, then ``suite``) and effect: ``scope,
    effect, words, score, estimate, low, high, p, p_method, relabelings, fewest_runs``;
    ``cells``: per task and cell ``task, arm, cell, runs, mean``; ``skipped``: per task left
    out (of every scope or of the suite only) the reason; ``suite_tasks``: the tasks the
    suite's effects average."""

    effects: pd.DataFrame
    cells: pd.DataFrame
    skipped: dict[str, str]
    suite_tasks: tuple[str, ...]


def analyse(
    design: Design,
    scores: pd.DataFrame,
    tasks: Sequence[str],
    seed: int,
    n_resamples: int,
) -> FactorialResult:
    """Effects per task and over the suite, from :func:`analysis.summary.per_run_scores`
    (FINISHED runs). A task with score references is analysed on the normalised score, one
    without on its raw final return (and left out of the suite's mean); a task where a cell
    has no finished run is not analysed. ``seed`` seeds the one Generator every bootstrap
    and random relabeling draws from."""
    rng = np.random.default_rng(seed)
    scores = suite.normalised_scores(scores) if "normalised" not in scores else scores
    finished = scores[scores["status"] == "FINISHED"]
    normalised = set(suite.tasks_with_references(scores, tasks))
    grid = cells_of(len(design.factors))
    arms = [design.arm_of(cell) for cell in grid]
    skipped: dict[str, str] = {}
    per_task: dict[str, list[np.ndarray]] = {}
    cell_rows = []
    for task in tasks:
        column = "normalised" if task in normalised else "final_return"
        rows = finished[finished["task"] == task]
        cells = [rows.loc[rows["arm"] == arm, column].to_numpy(float) for arm in arms]
        cells = [v[np.isfinite(v)] for v in cells]
        for arm, cell, values in zip(arms, grid, cells, strict=True):
            mean = float(values.mean()) if values.size else float("nan")
            label = design.cell_label(cell)
            cell_rows.append({"task": task, "arm": arm, "cell": label, "runs": values.size})
            cell_rows[-1] |= {"score": _score_name(task in normalised), "mean": mean}
        empty = [arm for arm, values in zip(arms, cells, strict=True) if values.size == 0]
        if empty:
            skipped[task] = f"no finished run of {', '.join(empty)}"
            continue
        per_task[task] = cells
        if task not in normalised:
            skipped[task] = "no score references: analysed on its raw final return, left out "
            skipped[task] += "of the suite's mean"
    suite_tasks = tuple(t for t in per_task if t in normalised)
    rows = []
    scopes = [(task, [cells], _score_name(task in normalised)) for task, cells in per_task.items()]
    if len(tasks) > 1:
        scopes.append(("suite", [per_task[t] for t in suite_tasks], SCORE_NORMALISED))
    for scope, cell_sets, score in scopes:
        for effect in effects(design):
            rows.append(_effect_row(scope, score, effect, cell_sets, rng, n_resamples))
    frame = pd.DataFrame(rows, columns=EFFECT_COLUMNS)
    return FactorialResult(frame, pd.DataFrame(cell_rows), skipped, suite_tasks)


EFFECT_COLUMNS = (
    "scope", "effect", "words", "score", "estimate", "low", "high", "p", "p_method",
    "relabelings", "fewest_runs",
)  # fmt: skip


def _score_name(normalised: bool) -> str:
    return SCORE_NORMALISED if normalised else SCORE_RAW


def _effect_row(
    scope: str,
    score: str,
    effect: Effect,
    tasks: list[list[np.ndarray]],
    rng: np.random.Generator,
    n_resamples: int,
) -> dict[str, object]:
    row: dict[str, object] = {"scope": scope, "effect": effect.label, "words": effect.words}
    row["score"] = score
    if not tasks:
        nan = float("nan")
        row |= {"estimate": nan, "low": nan, "high": nan, "p": nan, "p_method": ""}
        return row | {"relabelings": 0, "fewest_runs": 0}
    estimate = float(np.mean([effect_value(cells, effect.weights) for cells in tasks]))
    low, high = bootstrap_ci(tasks, effect.weights, rng, n_resamples)
    p = permutation_p(effect_strata(tasks, effect), estimate, rng)
    fewest = min(v.size for cells in tasks for v in cells)
    row |= {"estimate": estimate, "low": low, "high": high, "p": p.p, "p_method": p.method}
    return row | {"relabelings": p.relabelings, "fewest_runs": fewest}
