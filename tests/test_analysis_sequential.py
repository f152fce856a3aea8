"""AdaStop (analysis.sequential) against independent computations: scipy's exact permutation
test, the ``adastop`` package, and simulations of its error rate and stopping time."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import permutation_test

from analysis.sequential import (
    BETTER,
    NO_DIFFERENCE,
    OPEN,
    WORSE,
    adastop,
    exact_interims,
    welch_fixed_n,
)

ARMS = ("separate", "coupled")  # cpu_classic's, reference first


def simulate(
    effects: list[float], n: int, interims: int, alpha: float, reps: int, seed: int
) -> tuple[float, float]:
    """Family-wise rejection rate and mean seeds per arm used over ``reps`` synthetic
    ablations: arm ``a``'s runs ~ N(effects[a], 1), the test applied after each interim."""
    rng = np.random.default_rng(seed)
    rejected, used = 0, []
    for rep in range(reps):
        blocks: list[np.ndarray] = []
        for _ in range(interims):
            blocks.append(rng.normal(0.0, 1.0, (len(effects), n)) + np.array(effects)[:, None])
            result = adastop(blocks, interims, alpha, np.random.default_rng(rep), 1000)
            if result.finished:
                break
        rejected += any(d in (BETTER, WORSE) for d in result.decisions)
        used.append(len(result.interims) * n)
    return rejected / reps, float(np.mean(used))


def test_no_difference_rejects_at_most_alpha_over_all_comparisons():
    alpha, reps = 0.1, 400
    rate, used = simulate([0.0, 0.0, 0.0], n=4, interims=3, alpha=alpha, reps=reps, seed=0)
    monte_carlo = 3 * math.sqrt(alpha * (1 - alpha) / reps)
    assert rate <= alpha + monte_carlo, rate
    assert rate > 0  # the level is spent, not wasted: a test that never rejects fails here
    assert used > 0.85 * 12  # without differences almost every ablation runs to the end


def test_a_large_difference_stops_before_max_seeds_on_average():
    rate, used = simulate([0.0, 2.5], n=5, interims=4, alpha=0.05, reps=60, seed=1)
    assert rate == 1.0
    assert used < 20 / 2, used  # most stop at the first or second interim of 4


@pytest.mark.parametrize("seed", range(12))
def test_single_interim_is_scipys_exact_two_sided_permutation_test(seed):
    rng = np.random.default_rng(seed)
    block = rng.normal(0.0, 1.0, (2, 4)) + np.array([[0.0], [rng.uniform(0, 2.5)]])
    result = adastop([block], 1, 0.1, np.random.default_rng(0))
    assert result.exact
    exact = permutation_test(
        (block[1], block[0]),
        lambda x, y: np.mean(x) - np.mean(y),
        permutation_type="independent",
        n_resamples=math.inf,
    )
    expected = (
        (BETTER if block[1].mean() > block[0].mean() else WORSE)
        if exact.pvalue <= 0.1
        else NO_DIFFERENCE
    )
    assert result.decisions == (expected,)


def test_degenerate_scores_never_reject():
    equal = np.zeros((3, 2))  # zero variance, all tied: no difference at the last interim
    result = adastop([equal, equal], 2, 0.05, np.random.default_rng(0))
    assert result.decisions == (NO_DIFFERENCE, NO_DIFFERENCE)
    assert result.decided_at == (1, 1)
    assert adastop([equal], 2, 0.05, np.random.default_rng(0)).decisions == (OPEN, OPEN)
    # n = 2 per interim: only 6 splits, the smallest two-sided p-value is 1/3: no rejection
    far = np.array([[0.0, 0.1], [100.0, 100.1]])
    assert adastop([far], 1, 0.3, np.random.default_rng(0)).decisions == (NO_DIFFERENCE,)
    assert adastop([far], 1, 0.34, np.random.default_rng(0)).decisions == (BETTER,)


def test_replaying_more_interims_keeps_the_earlier_decisions():
    rng = np.random.default_rng(3)
    blocks = [rng.normal(0, 1, (3, 5)) + np.array([[0.0], [6.0], [0.0]]) for _ in range(3)]
    first = adastop(blocks[:1], 3, 0.05, np.random.default_rng(7))
    assert first.decisions[0] == BETTER
    blocks[1][1] = blocks[2][1] = np.nan  # the decided arm gets no more runs
    later = adastop(blocks, 3, 0.05, np.random.default_rng(7))
    assert later.decisions[0] == BETTER and later.decided_at[0] == 0
    assert later.interims[0] == first.interims[0]
    with pytest.raises(ValueError, match="missing scores"):
        blocks[1][2] = np.nan
        adastop(blocks, 3, 0.05, np.random.default_rng(7))


def test_welch_baseline_decides_by_scipy():
    scores = np.array([[0.0, 0.1, 0.2, 0.1], [5.0, 5.1, 5.3, 5.2], [0.1, 0.0, 0.2, 0.15]])
    assert welch_fixed_n(scores, 0.05) == (BETTER, NO_DIFFERENCE)


def test_matches_the_adastop_package_at_twice_its_alpha():
    """The package (0.1.3) takes its thresholds from the signed maximum of the permuted
    differences while testing the absolute one, so its two-sided test has level 2 alpha
    (measured: 0.20 family-wise rejections at alpha 0.1 over 300 null ablations). With one
    interim and continuous scores its decisions at alpha/2 must equal ours at alpha."""
    package = pytest.importorskip("adastop")
    rng = np.random.default_rng(11)
    names = {"larger": WORSE, "smaller": BETTER, "equal": NO_DIFFERENCE}  # it tests ref - arm
    seen = set()
    for _ in range(20):
        block = rng.normal(0, 1, (2, 4)) + np.array([[0.0], [rng.uniform(0, 2.5)]])
        theirs = package.MultipleAgentsComparator(
            n=4, K=1, B=10_000, comparisons=np.array([(0, 1)]), alpha=0.05, seed=0
        )
        theirs.partial_compare({"ref": block[0], "arm": block[1]}, verbose=False)
        ours = adastop([block], 1, 0.1, np.random.default_rng(0))
        assert names[theirs.decisions[str(np.array((0, 1)))]] == ours.decisions[0], block
        seen.add(ours.decisions[0])
    assert seen == {BETTER, NO_DIFFERENCE}  # both outcomes were compared


def _brute_force_boundary(block: np.ndarray, level: float) -> float:
    """The first interim's boundary by its definition, over every split itertools lists:
    the smallest |mean difference| b of a split such that the splits beyond b make up at
    most ``level`` of all splits. ``block``: ``(2, n)``, reference first."""
    pooled, n = block.reshape(-1), block.shape[1]
    stats = []
    for chosen in itertools.combinations(range(2 * n), n):  # the arm's runs of each split
        rest = [i for i in range(2 * n) if i not in chosen]
        stats.append(abs(pooled[list(chosen)].mean() - pooled[rest].mean()))
    tolerance = 1e-9 * np.abs(pooled).max()
    for b in sorted(stats):
        if sum(s > b + tolerance for s in stats) / len(stats) <= level + 1e-12:
            return b
    return math.inf


@pytest.mark.parametrize("seed", range(6))
def test_a_small_first_interim_is_enumerated_exactly(seed):
    # 5 vs 5 runs: 252 splits, far below 10,000 permutations, while 252^2 sequences over two
    # interims are not: the first interim is exact, whatever the generator.
    rng = np.random.default_rng(seed)
    block = rng.normal(0.0, 1.0, (2, 5)) + np.array([[0.0], [rng.uniform(0, 2.5)]])
    boundaries = {
        adastop([block], 2, 0.05, np.random.default_rng(g)).interims[0].boundaries[0]
        for g in range(3)
    }
    assert math.comb(10, 5) == 252 and len(boundaries) == 1
    (boundary,) = boundaries
    assert boundary == pytest.approx(_brute_force_boundary(block, 0.05 / 2))
    observed = abs(block[1].mean() - block[0].mean())
    result = adastop([block], 2, 0.05, np.random.default_rng(0))
    assert (result.decisions[0] != OPEN) == (observed > boundary + 1e-9)


def test_which_interims_are_enumerated():
    assert exact_interims(5, 2, 10_000) == (True, False)  # 252, then 63,504 sequences
    assert exact_interims(3, 3, 10_000) == (True, True, True)  # 20, 400, 8,000
    assert exact_interims(3, 4, 10_000) == (True, True, True, False)  # then 160,000
    # The rule recorded before: all K interims' sequences, or none.
    assert exact_interims(5, 2, 10_000, per_interim=False) == (False, False)
    assert exact_interims(3, 3, 10_000, per_interim=False) == (True, True, True)
    assert exact_interims(3, 2, 10_000, groups=3) == (True, False)  # 1,680 then 2,822,400


def test_the_published_study_replays_its_recorded_boundaries():
    """cpu_classic was decided with 10,000 random sequences at both interims (the rule of
    its time): that rule replays its decisions.csv; the exact first interim moves only the
    boundaries, and by the brute-force enumeration's amount."""
    folder = Path(__file__).resolve().parents[1] / "results" / "cpu_classic"
    runs = pd.read_csv(folder / "runs.csv")
    suite = runs.groupby(["arm", "seed"])["normalized_score"].mean()  # the suite score
    blocks = [
        np.array([[suite[(arm, s)] for s in range(5 * k, 5 * k + 5)] for arm in ARMS])
        for k in range(2)
    ]
    recorded = pd.read_csv(folder / "decisions.csv")
    old = adastop(blocks, 2, 0.05, np.random.default_rng(0), 10_000, per_interim=False)
    new = adastop(blocks, 2, 0.05, np.random.default_rng(0), 10_000)
    for k, row in enumerate(recorded.itertuples()):
        step = old.interims[k]  # S sums k + 1 interims' mean differences
        assert float(f"{step.boundaries[0] / (k + 1):.6g}") == row.boundary_on_mean_difference
        assert float(f"{step.statistics[0] / (k + 1):.6g}") == row.mean_difference
        assert old.interims[k].decisions[0] == new.interims[k].decisions[0] == row.decision
    assert new.interims[0].boundaries[0] == pytest.approx(_brute_force_boundary(blocks[0], 0.025))
