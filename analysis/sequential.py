"""Group-sequential permutation tests for adaptive seeding (AdaStop).

AdaStop (Mathieu et al., TMLR 2024) compares arms in interims of ``n`` runs per arm. After
interim ``k`` (0-based) the statistic of the comparison ``arm`` vs ``reference`` is the sum
over interims ``0..k`` of the difference of the block means, ``S = sum_j (mean(arm_j) -
mean(ref_j))`` ( ``(k + 1)`` times the mean difference when every block has ``n`` runs).

Several comparisons share the reference, so the family-wise error is controlled by closed
testing: every non-empty set ``I`` of comparisons has its own group-sequential test of the
intersection null "the arms of ``I`` score as the reference does", on ``max_{c in I} |S_c|``.
Its null distribution comes from permuting each interim's runs of the reference and the arms
of ``I`` among those groups, independently per interim: under that null they are
exchangeable, so this is a permutation group acting on the data and the test is exact. (A
permutation applied to each pair arm/reference separately is not one: it let the
family-wise error of 4 arms reach 0.057 +- 0.003 at alpha 0.05, 3 interims of 3.) A
comparison is decided once every set containing it has been rejected; its direction is the
sign of its ``S``. With one comparison this is the two-arm test itself.

Each set's test spends its level linearly: by interim ``k`` at most ``alpha (k + 1) / K`` of
the null probability may have crossed a boundary. Its boundary ``b_k`` is the smallest value
such that the permutation sequences that never crossed an earlier boundary and whose
statistic exceeds ``b_k`` have probability at most what is left; it rejects when the observed
statistic exceeds ``b_k``. Statistics equal up to rounding (tied scores swapped, e.g. runs at
a return ceiling) count as equal: a tie is never beyond a boundary. Comparisons still open
after the last interim are "no difference detectable at this budget" (no early acceptance:
the paper's ``beta = 0``).

A set's test enumerates, at each interim ``k``, every sequence of assignments of runs to
groups over interims ``0..k`` while their number (``assignments ** (k + 1)``) is at most
``permutations`` (exact: 252 splits at a first interim of 5 vs 5); from the first interim
where it is not, it draws ``permutations`` random permutation sequences, the first being the
identity (the observed data), from its own child of the given generator: each continues a
sequence drawn uniformly from those enumerated so far (what an exact interim crossed stays
exact) with a random assignment per later interim. A valid Monte Carlo test, replayed
identically from the same seed. Ablations recorded before this rule (``per_interim=False``)
enumerated only when all ``assignments ** K`` sequences fit, else drew every interim; their
replays keep doing so.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

BETTER, WORSE, NO_DIFFERENCE, OPEN = "better", "worse", "no difference", "continue"
MAX_COMPARISONS = 8
"""Closed testing runs one test per set of comparisons (``2^C - 1``); 8 comparisons (9 arms)
are 255 tests, a few seconds per interim."""


@dataclass(frozen=True)
class InterimResult:
    """The test after one interim.

    Attributes:
        interim: 0-based interim index.
        boundaries: ``(C,)`` per comparison, the largest boundary on ``max |S|`` among the
            sets containing it that were still unrejected at this interim (what its ``|S|``
            has to beat; inf when none was reachable at this level, NaN once decided
            earlier), in units of summed block-mean differences.
        statistics: ``(C,)`` observed signed ``S`` per comparison (NaN once decided earlier).
        decisions: ``(C,)`` decision per comparison after this interim.
    """

    interim: int
    boundaries: tuple[float, ...]
    statistics: tuple[float, ...]
    decisions: tuple[str, ...]


@dataclass(frozen=True)
class SequentialResult:
    """Decisions of the comparisons ``arm a`` vs the reference, ``a = 1..A-1``.

    Attributes:
        decisions: ``(C,)`` one of ``better``, ``worse``, ``no difference``, ``continue``.
        decided_at: ``(C,)`` 0-based interim of the decision, -1 while open.
        interims: one :class:`InterimResult` per interim tested.
        exact: True when every set's test enumerated all its permutations at every interim.
    """

    decisions: tuple[str, ...]
    decided_at: tuple[int, ...]
    interims: tuple[InterimResult, ...]
    exact: bool

    @property
    def finished(self) -> bool:
        return OPEN not in self.decisions


def assignments(groups: int, n: int) -> int:
    """Distinct ways to split ``groups * n`` runs into ``groups`` labelled groups of ``n``."""
    return math.factorial(groups * n) // math.factorial(n) ** groups


def is_exact(n: int, n_interims: int, permutations: int, groups: int = 2) -> bool:
    """Whether all ``assignments(groups, n) ** n_interims`` sequences fit in ``permutations``."""
    return assignments(groups, n) ** n_interims <= permutations


def exact_interims(
    n: int, n_interims: int, permutations: int, groups: int = 2, per_interim: bool = True
) -> tuple[bool, ...]:
    """``(K,)``: whether a set's test of ``groups`` groups enumerates interim ``k`` exactly:
    while ``assignments(groups, n) ** (k + 1) <= permutations`` (``per_interim``), or, as
    ablations recorded before that rule did, at every interim when all ``K`` interims'
    sequences fit and at none otherwise."""
    if not per_interim:
        return (is_exact(n, n_interims, permutations, groups),) * n_interims
    return tuple(is_exact(n, k + 1, permutations, groups) for k in range(n_interims))


def adastop(
    blocks: Sequence[np.ndarray],
    n_interims: int,
    alpha: float,
    rng: np.random.Generator,
    permutations: int = 10_000,
    per_interim: bool = True,
) -> SequentialResult:
    """Run the AdaStop test over the interims in ``blocks``.

    Args:
        blocks: one ``(A, n)`` array per interim done: scores of ``A`` arms (row 0 the
            reference), ``n`` runs each. Rows of arms decided at an earlier interim may be
            NaN (they are not used); rows of open arms must be finite.
        n_interims: ``K``, the number of interims planned (the last one decides).
        alpha: family-wise error rate over the ``A - 1`` comparisons with the reference.
        rng: parent of each set's permutation generator (unused by exact tests). Pass a
            fresh generator from the same seed to replay the same test over more interims.
        permutations: number of permutation sequences (the identity included), and the most
            an interim enumerates exactly (:func:`exact_interims`).
        per_interim: exactness decided per interim (False: the rule of ablations recorded
            before it, all interims exact or none).

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
    if comparisons > MAX_COMPARISONS:
        raise ValueError(f"at most {MAX_COMPARISONS} comparisons, got {comparisons}")
    tolerance = _tie_tolerance(blocks)
    members = [
        tuple(c for c in range(comparisons) if mask >> c & 1) for mask in range(1, 2**comparisons)
    ]
    family = [
        _SetTest(m, n, n_interims, permutations, generator, per_interim)
        for m, generator in zip(members, rng.spawn(len(members)), strict=True)
    ]

    decisions = [OPEN] * comparisons
    decided_at = [-1] * comparisons
    history = []
    for k, block in enumerate(blocks):
        block = np.asarray(block, dtype=float)
        if block.shape != (arms, n):
            raise ValueError(f"interim {k} has shape {block.shape}, expected {(arms, n)}")
        open_ = [c for c in range(comparisons) if decisions[c] == OPEN]
        if not np.all(np.isfinite(block[[0, *(c + 1 for c in open_)]])):
            raise ValueError(f"interim {k} has missing scores for an arm still compared")
        level = alpha * (k + 1) / n_interims
        # A set holding a decided comparison was rejected by the interim of that decision.
        live = [test for test in family if not test.rejected]
        boundaries = dict.fromkeys(open_, -math.inf)
        for test in live:
            test.step(block, level, tolerance)
            for c in test.members:
                boundaries[c] = max(boundaries[c], test.boundary)
        statistics = [math.nan] * comparisons
        for c in open_:
            statistics[c] = float(np.sum(block[c + 1] - block[0]) / n) + (
                history[-1].statistics[c] if history else 0.0
            )
        for c in open_:
            if all(test.rejected for test in family if c in test.members):
                decisions[c] = BETTER if statistics[c] > 0 else WORSE
                decided_at[c] = k
        if k == n_interims - 1:
            for c in range(comparisons):
                if decisions[c] == OPEN:
                    decisions[c], decided_at[c] = NO_DIFFERENCE, k
        history.append(
            InterimResult(
                k,
                tuple(boundaries.get(c, math.nan) for c in range(comparisons)),
                tuple(statistics),
                tuple(decisions),
            )
        )
        if OPEN not in decisions:
            break
    exact = all(test.exact for test in family)
    return SequentialResult(tuple(decisions), tuple(decided_at), tuple(history), exact)


@dataclass
class _SetTest:
    """The group-sequential test of one intersection null: the arms of ``members``
    (0-based comparisons, arm ``c + 1``) exchangeable with the reference."""

    members: tuple[int, ...]
    n: int
    n_interims: int
    permutations: int
    rng: np.random.Generator
    per_interim: bool = True
    rejected: bool = False
    boundary: float = math.inf
    """The boundary of the last interim tested."""
    exact: bool = field(init=False)
    """Every interim enumerated exactly."""
    spent: float = 0.0
    sums: np.ndarray = field(init=False)  # (|I|, P): S of every permutation sequence so far
    alive: np.ndarray = field(init=False)  # (P,): sequences that never crossed a boundary

    def __post_init__(self) -> None:
        groups = len(self.members) + 1
        self._plan = exact_interims(
            self.n, self.n_interims, self.permutations, groups, self.per_interim
        )
        self.exact = all(self._plan)
        self.sums = np.zeros((len(self.members), 1))
        self.alive = np.ones(1, dtype=bool)
        self._orders = _all_orders(groups, self.n) if any(self._plan) else None
        self._tested = 0  # interims added so far
        self._sampling = False  # drawing random sequences (from the first inexact interim)

    def step(self, block: np.ndarray, level: float, tolerance: float) -> None:
        """Add one interim's ``(A, n)`` block and test at cumulative ``level``."""
        groups = len(self.members) + 1
        exact = self._plan[self._tested]
        self._tested += 1
        values = block[[0, *(c + 1 for c in self.members)]].reshape(-1)  # (G n,) group-major
        orders = self._orders if exact else self._draw(groups)
        means = values[orders].reshape(len(orders), groups, self.n).mean(-1)  # (M, G)
        diffs = (means[:, 1:] - means[:, :1]).T  # (|I|, M)
        if exact:
            self.sums = (self.sums[:, :, None] + diffs[:, None, :]).reshape(len(self.members), -1)
            self.alive = np.repeat(self.alive, diffs.shape[1])
        else:
            if not self._sampling and self.sums.shape[1] > 1:
                # After exact interims: each random sequence continues an enumerated one,
                # drawn uniformly (every enumerated sequence is equally likely), the
                # observed data's (index 0) first.
                prefixes = self.rng.integers(0, self.sums.shape[1], size=self.permutations)
                prefixes[0] = 0
                self.sums, self.alive = self.sums[:, prefixes], self.alive[prefixes]
            self._sampling = True
            self.sums = self.sums + diffs
            self.alive = np.broadcast_to(self.alive, self.sums.shape[1]).copy()
        largest = np.abs(self.sums).max(axis=0)  # (P,); index 0 is the observed data
        self.boundary, added = _boundary(
            largest[self.alive], largest.size, level - self.spent, tolerance
        )
        if largest[0] > self.boundary + tolerance:
            self.rejected = True
            return
        self.spent += added
        self.alive &= largest <= self.boundary + tolerance

    def _draw(self, groups: int) -> np.ndarray:
        """``(P, G n)`` random orders of the runs, row 0 the identity."""
        size = groups * self.n
        orders = self.rng.permuted(np.tile(np.arange(size), (self.permutations, 1)), axis=1)
        orders[0] = np.arange(size)
        return orders


def _all_orders(groups: int, n: int) -> np.ndarray:
    """Every assignment of ``groups * n`` runs to ``groups`` groups of ``n``, as ``(M, G n)``
    orders (group ``g`` takes positions ``g n .. (g + 1) n - 1``); row 0 the identity."""
    rows: list[tuple[int, ...]] = []

    def extend(prefix: tuple[int, ...], left: tuple[int, ...]) -> None:
        if not left:
            rows.append(prefix)
            return
        for chosen in itertools.combinations(left, n):
            rest = tuple(i for i in left if i not in chosen)
            extend(prefix + chosen, rest)

    extend((), tuple(range(groups * n)))
    return np.array(rows, dtype=np.intp)


def _tie_tolerance(blocks: Sequence[np.ndarray]) -> float:
    """How far apart two statistics may be and still count as equal: permutations that tie
    in exact arithmetic (two equal scores swapped, e.g. runs at a return ceiling) sum their
    terms in another order and differ in the last bits. Relative to the scores' scale, far
    below any real difference of means."""
    finite = [np.abs(b[np.isfinite(b)]) for b in map(np.asarray, blocks)]
    scale = max((float(f.max()) for f in finite if f.size), default=0.0)
    return 1e-9 * max(scale, 1e-300)


def _boundary(
    values: np.ndarray, total: int, level_left: float, tolerance: float = 0.0
) -> tuple[float, float]:
    """Smallest ``b`` among ``values`` with ``#(values > b + tolerance) / total <=
    level_left``, and that probability; ``(inf, 0)`` when none qualifies. Values within
    ``tolerance`` of ``b`` count as ties, never as beyond it. ``values``: ``(P_alive,)``."""
    ordered = np.sort(values)
    above = ordered.size - np.searchsorted(ordered, ordered + tolerance, side="right")
    admissible = above / total <= level_left + 1e-12
    if not admissible.any():
        return math.inf, 0.0
    first = int(np.argmax(admissible))
    return float(ordered[first]), float(above[first] / total)


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
