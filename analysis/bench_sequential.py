"""Operating characteristics of adaptive seeding (``make bench-stats``): a benchmark, not a test.

Synthetic ablations, no training: each arm's run scores are drawn from N(d, 1) with ``d`` the
effect size (Cohen's d) of the compared arm over the reference. For each effect size it
prints AdaStop's rejection rate (the false-positive rate at d = 0, the power otherwise) and
the mean seeds per arm it used, beside Welch's t-test on a fixed ``max_seeds`` per arm.
A last row runs three arms without any difference: the family-wise false-positive rate. The
last column peeks: Welch after every interim, stopping at the first p < alpha.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from analysis.sequential import BETTER, WORSE, adastop, welch_fixed_n

EFFECTS = (0.0, 0.5, 1.0, 1.5, 2.0)


def simulate(
    effects: tuple[float, ...],
    interim: int,
    max_seeds: int,
    alpha: float,
    reps: int,
    permutations: int,
    rng: np.random.Generator,
) -> dict[str, float]:
    """Rates over ``reps`` synthetic ablations with arm means ``effects`` (reference first).

    Returns:
        ``adastop_reject`` (any comparison rejected), ``adastop_seeds`` (mean seeds per arm,
        the reference's), ``welch_reject`` (fixed ``max_seeds``, Bonferroni over comparisons),
        ``peeking_reject`` (Welch after every interim, stopping at the first rejection: the
        optional-stopping bias the sequential test avoids).
    """
    interims = max_seeds // interim
    means = np.array(effects)[:, None]
    reject = seeds = welch = peeking = 0.0
    for _ in range(reps):
        scores = rng.normal(0.0, 1.0, (len(effects), interims * interim)) + means
        blocks = [scores[:, k * interim : (k + 1) * interim] for k in range(interims)]
        # One call suffices: the test stops at the interim where everything is decided and
        # ignores the later runs of arms decided earlier, as the planner never runs them.
        result = adastop(blocks, interims, alpha, rng, permutations)
        reject += any(d in (BETTER, WORSE) for d in result.decisions)
        seeds += len(result.interims) * interim
        welch += any(d in (BETTER, WORSE) for d in welch_fixed_n(scores, alpha))
        peeking += any(
            d in (BETTER, WORSE)
            for k in range(1, interims + 1)
            for d in welch_fixed_n(scores[:, : k * interim], alpha)
        )
    return {
        "adastop_reject": reject / reps,
        "adastop_seeds": seeds / reps,
        "welch_reject": welch / reps,
        "peeking_reject": peeking / reps,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.bench_sequential")
    parser.add_argument("--interim", type=int, default=5)
    parser.add_argument("--max-seeds", type=int, default=25)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--reps", type=int, default=1000, help="synthetic ablations per row")
    parser.add_argument("--permutations", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.interim < 2 or args.max_seeds < args.interim or not 0 < args.alpha < 0.5:
        parser.error("need INTERIM >= 2, MAX_SEEDS >= INTERIM and 0 < ALPHA < 0.5")
    rng = np.random.default_rng(args.seed)
    budget = args.max_seeds // args.interim * args.interim
    error = 2 * np.sqrt(args.alpha * (1 - args.alpha) / args.reps)
    print(
        f"AdaStop: interims of {args.interim} seeds per arm, at most {budget}, alpha "
        f"{args.alpha}, {args.permutations} permutations; Welch: fixed {budget} seeds, same alpha; "
        f"{args.reps} synthetic ablations per row (scores ~ N(d, 1)); Monte Carlo 2 s.e. at "
        f"alpha: {error:.3f}"
    )
    print(
        f"{'arms':<6}{'d':>5}{'AdaStop reject':>16}{'seeds/arm':>11}{'Welch reject':>14}"
        f"{'Welch peeking':>15}"
    )
    start = time.perf_counter()
    rows = [(0.0, d) for d in EFFECTS] + [(0.0, 0.0, 0.0)]
    for effects in rows:
        rates = simulate(
            effects, args.interim, args.max_seeds, args.alpha, args.reps, args.permutations, rng
        )
        print(
            f"{len(effects):<6}{max(effects):>5.1f}{rates['adastop_reject']:>16.3f}"
            f"{rates['adastop_seeds']:>11.1f}{rates['welch_reject']:>14.3f}"
            f"{rates['peeking_reject']:>15.3f}"
        )
    print(f"({time.perf_counter() - start:.0f} s; d = 0 rows are false-positive rates)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
