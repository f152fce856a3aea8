"""Group-sequential permutation tests for adaptive seeding (AdaStop).

AdaStop (Mathieu et al., TMLR 2024) compares arms in interims of ``n`` runs per arm. After
interim ``k`` (0-based) the statistic of the comparison ``arm`` vs ``reference`` is the sum
over interims ``0..k`` of the difference of the block means, ``S = sum_j (mean(arm_j) -
mean(ref_j))`` ( ``(k + 1)`` times the mean difference when every block has ``n`` runs). Its
null distribution comes from permuting the ``2n`` runs of each interim between the two arms,
independently per interim, with one permutation applied to every comparison at once so that
the maximum over comparisons has its joint null distribution.

The level is spent linearly: by interim ``k`` at most ``alpha (k + 1) / K`` of the null
probability may have crossed a boundary. The boundary ``b_k`` is the smallest value such
that the permutations that never crossed an earlier boundary and whose ``max |S|`` exceeds
``b_k`` have probability at most what is left. Comparisons are rejected step-down: the
largest observed ``|S|`` is rejected if it exceeds ``b_k``, then the boundary is recomputed
over the comparisons still open, and so on. This keeps the family-wise error rate over all
comparisons at ``alpha`` whatever the interim at which the data are looked at. Comparisons
still open after the last interim are "no difference detectable at this budget" (no early
acceptance: the paper's ``beta = 0``).

When ``C(2n, n) ** K`` is at most ``permutations`` every permutation is enumerated (an exact
test); otherwise ``permutations`` random permutation sequences are drawn from the given
generator, the first being the identity (the observed data), as a valid Monte Carlo test.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BETTER, WORSE, NO_DIFFERENCE, OPEN = "better", "worse", "no difference", "continue"


@dataclass(frozen=True)
class InterimResult:
    """The test after one interim.

    Attributes:
        interim: 0-based interim index.
        boundary: the last boundary on ``max |S|`` computed at this interim (inf when none
            was reachable at this level), in units of summed block-mean differences.
        statistics: ``(C,)`` observed signed ``S`` per comparison (NaN once decided earlier).
        decisions: ``(C,)`` decision per comparison after this interim.
    """

    interim: int
    boundary: float
    statistics: tuple[float, ...]
    decisions: tuple[str, ...]


@dataclass(frozen=True)
class SequentialResult:
    """Decisions of the comparisons ``arm a`` vs the reference, ``a = 1..A-1``.

    Attributes:
        decisions: ``(C,)`` one of ``better``, ``worse``, ``no difference``, ``continue``.
        decided_at: ``(C,)`` 0-based interim of the decision, -1 while open.
        interims: one :class:`InterimResult` per interim tested.
        exact: True when every permutation was enumerated.
    """

    decisions: tuple[str, ...]
    decided_at: tuple[int, ...]
    interims: tuple[InterimResult, ...]
    exact: bool

    @property
    def finished(self) -> bool:
        return OPEN not in self.decisions


def is_exact(n: int, n_interims: int, permutations: int) -> bool:
    """Whether all ``C(2n, n) ** n_interims`` permutation sequences fit in ``permutations``."""
    return math.comb(2 * n, n) ** n_interims <= permutations


def adastop(
    blocks: Sequence[np.ndarray],
    n_interims: int,
    alpha: float,
    rng: np.random.Generator,
    permutations: int = 10_000,
) -> SequentialResult:
    """Run the AdaStop test over the interims in ``blocks``.

    Args:
        blocks: one ``(A, n)`` array per interim done: scores of ``A`` arms (row 0 the
            reference), ``n`` runs each. Rows of arms decided at an earlier interim may be
            NaN (they are not used); rows of open arms must be finite.
        n_interims: ``K``, the number of interims planned (the last one decides).
        alpha: family-wise error rate over the ``A - 1`` comparisons with the reference.
        rng: draws the random permutations (unused when the test is exact). Pass a fresh
            generator from the same seed to replay the same test over more interims.
        permutations: number of permutation sequences (the identity included).

    Returns:
        The decisions after the last block given.
    """
    if not blocks:
        raise ValueError("adastop needs at least one interim of scores")
    if len(blocks) > n_interims:
        raise ValueError(f"{len(blocks)} interims given but only {n_interims} planned")
    arms, n = np.asarray(blocks[0]).shape
    if arms < 2 or n < 1:
        raise ValueError(f"blocks must be (arms >= 2, n >= 1), got {(arms, n)}")
    comparisons = arms - 1
    exact = is_exact(n, n_interims, permutations)
    masks = _interim_masks(n, exact, permutations, rng, len(blocks))

    decisions = [OPEN] * comparisons
    decided_at = [-1] * comparisons
    spent = 0.0
    sums = np.zeros((comparisons, 1))  # (C, P): S of every permutation sequence so far
    alive = np.ones(1, dtype=bool)  # (P,): sequences that never crossed a boundary
    history = []
    for k, block in enumerate(blocks):
        block = np.asarray(block, dtype=float)
        if block.shape != (arms, n):
            raise ValueError(f"interim {k} has shape {block.shape}, expected {(arms, n)}")
        open_ = np.array([d == OPEN for d in decisions])
        needed = np.concatenate([[True], open_])
        if not np.all(np.isfinite(block[needed])):
            raise ValueError(f"interim {k} has missing scores for an arm still compared")
        # (C, 2n): each comparison's runs, the arm's first; signs (M, 2n): +1/n in the
        # permuted "arm" group, -1/n in the other; diffs (C, M).
        values = np.concatenate([block[1:], np.repeat(block[:1], comparisons, axis=0)], axis=1)
        signs = np.where(masks[k], 1.0, -1.0) / n
        diffs = np.nan_to_num(values) @ signs.T
        if exact:
            sums = (sums[:, :, None] + diffs[:, None, :]).reshape(comparisons, -1)
            alive = np.repeat(alive, diffs.shape[1])
        else:
            sums = sums + diffs
            alive = np.broadcast_to(alive, sums.shape[1]).copy()
        total = sums.shape[1]
        level = alpha * (k + 1) / n_interims
        observed = sums[:, 0]

        boundary, added, largest = math.inf, 0.0, None
        while open_.any():
            largest = np.abs(sums[open_]).max(axis=0)  # (P,)
            boundary, added = _boundary(largest[alive], total, level - spent)
            candidates = np.flatnonzero(open_)
            top = candidates[np.argmax(np.abs(observed[candidates]))]
            if abs(observed[top]) <= boundary:
                break
            decisions[top] = BETTER if observed[top] > 0 else WORSE
            decided_at[top] = k
            open_[top] = False
        if open_.any():
            spent += added
            alive &= largest <= boundary
        if k == n_interims - 1:
            for c in np.flatnonzero(open_):
                decisions[c] = NO_DIFFERENCE
                decided_at[c] = k
        stats = tuple(float(s) if needed[c + 1] else math.nan for c, s in enumerate(observed))
        history.append(InterimResult(k, float(boundary), stats, tuple(decisions)))
        if OPEN not in decisions:
            break
    return SequentialResult(tuple(decisions), tuple(decided_at), tuple(history), exact)


def _boundary(values: np.ndarray, total: int, level_left: float) -> tuple[float, float]:
    """Smallest ``b`` among ``values`` with ``#(values > b) / total <= level_left``, and that
    probability; ``(inf, 0)`` when none qualifies. ``values``: ``(P_alive,)``."""
    ordered = np.sort(values)
    above = ordered.size - np.searchsorted(ordered, ordered, side="right")
    admissible = above / total <= level_left + 1e-12
    if not admissible.any():
        return math.inf, 0.0
    first = int(np.argmax(admissible))
    return float(ordered[first]), float(above[first] / total)


def _interim_masks(
    n: int, exact: bool, permutations: int, rng: np.random.Generator, interims: int
) -> list[np.ndarray]:
    """Per interim a ``(M, 2n)`` bool array: which of the ``2n`` runs count for the arm.
    Row 0 is the identity (the arm's own runs)."""
    if exact:
        combos = np.array(list(itertools.combinations(range(2 * n), n)))
        masks = np.zeros((len(combos), 2 * n), dtype=bool)
        np.put_along_axis(masks, combos, True, axis=1)
        return [masks] * interims
    out = []
    for _ in range(interims):
        order = rng.permuted(np.tile(np.arange(2 * n), (permutations, 1)), axis=1)
        masks = order < n
        masks[0] = np.arange(2 * n) < n
        out.append(masks)
    return out


def welch_fixed_n(scores: np.ndarray, alpha: float) -> tuple[str, ...]:
    """Fixed-n baseline: Welch's t-test of each arm vs the reference, Bonferroni-corrected.

    Args:
        scores: ``(A, n)`` scores, row 0 the reference.
        alpha: family-wise level over the ``A - 1`` comparisons.

    Returns:
        ``(A-1,)`` decisions (``better``, ``worse`` or ``no difference``).
    """
    from scipy.stats import ttest_ind

    out = []
    comparisons = scores.shape[0] - 1
    for arm in scores[1:]:
        result = ttest_ind(arm, scores[0], equal_var=False)
        if np.isfinite(result.pvalue) and result.pvalue < alpha / comparisons:
            out.append(BETTER if result.statistic > 0 else WORSE)
        else:
            out.append(NO_DIFFERENCE)
    return tuple(out)
