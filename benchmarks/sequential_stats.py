"""Operating characteristics of adaptive seeding (``make bench-stats``): a benchmark, not a test.

Synthetic ablations, no training: each arm's run scores are drawn from N(d, 1) with ``d`` the
effect size (Cohen's d) of the compared arm over the reference. For each effect size it
prints AdaStop's rejection rate and the mean seeds per arm it used, beside Welch's t-test on
a fixed ``max_seeds`` per arm and Welch peeked at after every interim (stopping at the first
p < alpha). First the rows without any difference, 2 to 4 arms at the rule given and at
small interims: the family-wise false-positive rate, each with its standard error (enough
ablations that it is at most 0.005); then the power of two arms at d = 0.5 .. 2.
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np

from agent.cli import ArgumentParser
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


NULL_ROWS = ((2, None), (3, None), (4, None), (3, (3, 3)), (4, (3, 3)), (3, (5, 2)), (4, (5, 2)))
"""``(arms, (interim, interims))`` of the no-difference rows; None: the rule given."""
MAX_STANDARD_ERROR = 0.005


def null_reps(alpha: float, standard_error: float = MAX_STANDARD_ERROR) -> int:
    """Ablations per no-difference row so that the rate's standard error at ``alpha`` is at
    most ``standard_error`` (binomial: ``sqrt(alpha (1 - alpha) / reps)``)."""
    return math.ceil(alpha * (1 - alpha) / standard_error**2)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m benchmarks.sequential_stats")
    parser.add_argument("--interim", type=int, default=5)
    parser.add_argument("--max-seeds", type=int, default=25)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--reps", type=int, default=1000, help="synthetic ablations per power row")
    parser.add_argument(
        "--null-reps",
        type=int,
        default=None,
        help="synthetic ablations per no-difference row (default: a standard error <= 0.005)",
    )
    parser.add_argument("--permutations", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.interim < 2 or args.max_seeds < args.interim or not 0 < args.alpha < 0.5:
        parser.error("need INTERIM >= 2, MAX_SEEDS >= INTERIM and 0 < ALPHA < 0.5")
    rng = np.random.default_rng(args.seed)
    reps_null = args.null_reps or null_reps(args.alpha)
    rule = (args.interim, args.max_seeds // args.interim)
    print(
        f"AdaStop at alpha {args.alpha}, {args.permutations} permutations, beside Welch's "
        f"t-test (Bonferroni over the comparisons) at the same maximum of seeds, and Welch "
        "peeked at after every interim; synthetic scores ~ N(d, 1)."
    )
    start = time.perf_counter()
    print(
        f"\nfalse-positive rate (no difference): every arm ~ N(0, 1), {reps_null} ablations per "
        f"row (standard error at alpha: {math.sqrt(args.alpha * (1 - args.alpha) / reps_null):.4f})"
    )
    print(
        f"{'arms':<6}{'interim x K':>12}{'false-positive rate (s.e.)':>28}{'seeds/arm':>11}"
        f"{'Welch':>8}{'Welch peeking':>15}"
    )
    high = []
    for arms, shape in NULL_ROWS:
        interim, interims = shape or rule
        rates = simulate(
            (0.0,) * arms, interim, interim * interims, args.alpha, reps_null,
            args.permutations, rng,
        )  # fmt: skip
        rate = rates["adastop_reject"]
        error = math.sqrt(max(rate * (1 - rate), 1e-12) / reps_null)
        if rate > args.alpha + 2 * error:
            high.append(f"{arms} arms at {interim} x {interims}")
        print(
            f"{arms:<6}{f'{interim} x {interims}':>12}{f'{rate:.4f} ({error:.4f})':>28}"
            f"{rates['adastop_seeds']:>11.1f}{rates['welch_reject']:>8.3f}"
            f"{rates['peeking_reject']:>15.3f}"
        )
    print(
        f"\npower (2 arms, interims of {rule[0]}, at most {rule[0] * rule[1]} seeds): one arm "
        f"~ N(d, 1), {args.reps} ablations per row"
    )
    print(
        f"{'d':>5}{'AdaStop reject':>16}{'seeds/arm':>11}{'Welch reject':>14}{'Welch peeking':>15}"
    )
    for effect in EFFECTS[1:]:
        rates = simulate(
            (0.0, effect), rule[0], rule[0] * rule[1], args.alpha, args.reps,
            args.permutations, rng,
        )  # fmt: skip
        print(
            f"{effect:>5.1f}{rates['adastop_reject']:>16.3f}{rates['adastop_seeds']:>11.1f}"
            f"{rates['welch_reject']:>14.3f}{rates['peeking_reject']:>15.3f}"
        )
    verdict = (
        f"above alpha by more than 2 standard errors: {', '.join(high)}"
        if high
        else "every false-positive rate is at or below alpha within 2 standard errors"
    )
    print(f"\n{verdict} ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
