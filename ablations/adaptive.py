"""Adaptive seeding: run seeds in interims until each comparison with the reference is decided.

The planner is stateless: it replays the AdaStop test (``analysis.sequential``) over the
finished runs' scores in MLflow, with the permutation generator seeded from the rule, so a
rerun after an interruption reaches the same decisions and continues the interim it was in,
and a rerun after the last decision trains nothing. Interim ``k`` (0-based) runs seeds
``k*INTERIM .. (k+1)*INTERIM - 1`` of the reference arm and of every arm still undecided.

Over several tasks (a suite) the test decides on the aggregate: one value per arm and seed,
the suite score, the mean over tasks of the normalised final return (see
:func:`analysis.aggregate.suite_score`); a seed of an arm counts once its run on every task
has finished, and every task gets the same seeds.

The rule (interim size, maximum seeds, alpha, reference, scored value, permutations,
generator seed) is logged as params of the parent run before the first run is created;
MLflow params cannot change, so a rerun with another rule is refused. Each interim's
decisions are tags of the parent (``adaptive.status``, ``adaptive.decision.<arm>``) and a
table artifact ``adaptive/decisions.csv``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
from mlflow.entities import Param
from mlflow.tracking import MlflowClient

from ablations.integrity.retries import retry_locked
from ablations.plan.spec import SEED_LIMIT, AblationSpec, RunSpec
from ablations.tracking.connection import TrackingError
from ablations.tracking.store import AblationStore
from agent.config import ConfigError
from analysis.aggregate import suite_score
from analysis.decisions import DECISIONS_ARTIFACT
from analysis.sequential import MAX_COMPARISONS, NO_DIFFERENCE, OPEN, SequentialResult, adastop

SCORE_METRIC = "final/eval_return"
ENUMERATION_PARAM = "adaptive.enumeration"
ENUMERATION = "exact at an interim whose permutation sequences number at most permutations"
"""Recorded by rules that decide exactness per interim; its absence marks an older rule."""
DEFAULT_INTERIM, DEFAULT_MAX_SEEDS, DEFAULT_ALPHA = 5, 25, 0.05


@dataclass(frozen=True)
class AdaptiveRule:
    """The decision rule, fixed before the first run.

    Attributes:
        interim: runs per arm per interim.
        max_seeds: most seeds an arm gets; the test plans ``max_seeds // interim`` interims.
        alpha: family-wise error rate over the comparisons with the reference.
        reference: the arm every other arm is compared with (the first of ARMS).
        tasks: the ablation's tasks; over several, the test decides on the suite score.
        permutations: permutation sequences of the test (exact enumeration of an interim
            whose sequences are fewer).
        permutation_seed: seeds the test's generator, so a replay decides the same.
        per_interim: exactness decided per interim (:func:`analysis.sequential.exact_interims`);
            False for an ablation recorded before that rule (no ``adaptive.enumeration``
            param), which replays as it was decided (:func:`as_recorded`).
    """

    interim: int
    max_seeds: int
    alpha: float
    reference: str
    tasks: tuple[str, ...] = ()
    permutations: int = 10_000
    permutation_seed: int = 0
    per_interim: bool = True

    @property
    def metric(self) -> str:
        """What one run (one task) or one seed of an arm (several tasks) scores."""
        if len(self.tasks) <= 1:
            return SCORE_METRIC
        return (
            f"the suite score (mean over {', '.join(self.tasks)} of the normalised {SCORE_METRIC})"
        )

    @property
    def n_interims(self) -> int:
        return self.max_seeds // self.interim

    @property
    def seed_budget(self) -> int:
        """Most seeds an arm can get: ``max_seeds`` rounded down to whole interims."""
        return self.n_interims * self.interim

    def params(self) -> dict[str, str]:
        suite = {"adaptive.tasks": ",".join(self.tasks)} if len(self.tasks) > 1 else {}
        return {
            "adaptive.method": "adastop (group-sequential permutation test, Mathieu et al. 2024)",
            "adaptive.metric": self.metric,
            **suite,
            "adaptive.reference": self.reference,
            "adaptive.interim": str(self.interim),
            "adaptive.max_seeds": str(self.max_seeds),
            "adaptive.interims": str(self.n_interims),
            "adaptive.alpha": str(self.alpha),
            "adaptive.spending": "linear: alpha*(k+1)/K by interim k; no early acceptance",
            "adaptive.permutations": str(self.permutations),
            "adaptive.permutation_seed": str(self.permutation_seed),
            **({ENUMERATION_PARAM: ENUMERATION} if self.per_interim else {}),
        }


def rule_from_flags(
    seeds: str,
    interim: str | None,
    max_seeds: str | None,
    alpha: str | None,
    arms: tuple[str, ...],
    tasks: tuple[str, ...] = (),
) -> AdaptiveRule | None:
    """The rule for ``--seeds auto`` (None for a fixed seed count); over several ``tasks``
    it decides on the suite score.

    Raises:
        ConfigError: one line for the user on bad values.
    """
    if seeds.strip().lower() != "auto":
        given = [flag for flag, value in (("INTERIM", interim), ("MAX_SEEDS", max_seeds),
                 ("ALPHA", alpha)) if value is not None]  # fmt: skip
        if given:
            raise ConfigError(
                f"{', '.join(given)} apply only with SEEDS=auto; drop them or set SEEDS=auto"
            )
        return None
    size = _integer("INTERIM", interim, DEFAULT_INTERIM)
    if size <= 1:
        raise ConfigError(
            f"INTERIM must be 2 or more with SEEDS=auto (a permutation test needs at least 2 runs "
            f"per arm per interim), got {size}"
        )
    most = _integer("MAX_SEEDS", max_seeds, DEFAULT_MAX_SEEDS)
    if most < size:
        raise ConfigError(f"MAX_SEEDS must be at least INTERIM ({size}), got {most}")
    if most > SEED_LIMIT:
        raise ConfigError(f"MAX_SEEDS must be at most {SEED_LIMIT}, got {most}")
    try:
        level = float(alpha) if alpha is not None else DEFAULT_ALPHA
    except ValueError:
        raise ConfigError(f"ALPHA must be a number between 0 and 0.5, got '{alpha}'") from None
    if not 0 < level < 0.5:
        raise ConfigError(f"ALPHA must be between 0 and 0.5 (both excluded), got {alpha}")
    if len(arms) < 2:
        raise ConfigError("SEEDS=auto compares arms with the first one: give at least two ARMS")
    if len(arms) - 1 > MAX_COMPARISONS:
        raise ConfigError(
            f"SEEDS=auto compares at most {MAX_COMPARISONS + 1} arms (one test per set of "
            f"comparisons), got {len(arms)}; split the arms over several ablations"
        )
    return AdaptiveRule(size, most, level, arms[0], tuple(tasks))


def _integer(name: str, value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got '{value}'") from None


@dataclass(frozen=True)
class Plan:
    """Where an adaptive ablation stands.

    Attributes:
        interim: 0-based interim to run next (or the last one tested once finished).
        next_runs: ``(arm, seed)`` pairs the current interim still needs finished.
        interim_runs: every ``(arm, seed)`` pair of the current interim, finished or not
            (empty once decided).
        result: the test over the complete interims, None before the first.
        arms: the compared arms, reference first.
    """

    interim: int
    next_runs: tuple[tuple[str, int], ...]
    result: SequentialResult | None
    arms: tuple[str, ...]
    interim_runs: tuple[tuple[str, int], ...] = ()

    @property
    def finished(self) -> bool:
        return self.result is not None and self.result.finished

    def decisions(self) -> dict[str, str]:
        """Decision per non-reference arm (``continue`` while open)."""
        if self.result is None:
            return dict.fromkeys(self.arms[1:], OPEN)
        return dict(zip(self.arms[1:], self.result.decisions, strict=True))


def plan(
    rule: AdaptiveRule, arms: tuple[str, ...], scores: Mapping[str, Mapping[int, float]]
) -> Plan:
    """Replay the test over the interims whose runs are all finished; say what runs next.

    Args:
        rule: the decision rule; ``arms[0]`` must be ``rule.reference``.
        arms: compared arms, reference first.
        scores: finished runs' scores, ``scores[arm][seed]``.
    """
    result: SequentialResult | None = None
    blocks: list[np.ndarray] = []
    for k in range(rule.n_interims):
        open_arms = [arms[0]] + [
            arm
            for arm, decision in zip(
                arms[1:], result.decisions if result else [OPEN] * (len(arms) - 1), strict=True
            )
            if decision == OPEN
        ]
        seeds = range(k * rule.interim, (k + 1) * rule.interim)
        missing = tuple(
            (arm, seed) for seed in seeds for arm in open_arms if seed not in scores.get(arm, {})
        )
        if missing:
            pairs = tuple((arm, seed) for seed in seeds for arm in open_arms)
            return Plan(k, missing, result, arms, pairs)
        block = np.full((len(arms), rule.interim), math.nan)
        for row, arm in enumerate(arms):
            if arm in open_arms:
                block[row] = [scores[arm][seed] for seed in seeds]
        blocks.append(block)
        rng = np.random.default_rng(rule.permutation_seed)
        result = adastop(
            blocks, rule.n_interims, rule.alpha, rng, rule.permutations, rule.per_interim
        )
        if result.finished:
            return Plan(k, (), result, arms)
    raise AssertionError("the last interim decides every comparison")


def _search(uri: str, experiment: str, filter_string: str, max_results: int = 10_000) -> list:
    """The experiment's runs that match ``filter_string`` (none if it does not exist yet)."""
    client = MlflowClient(uri)
    found = retry_locked(client.get_experiment_by_name, experiment)
    if found is None:
        return []
    return retry_locked(
        client.search_runs,
        [found.experiment_id],
        filter_string=filter_string,
        max_results=max_results,
    )


def finished_scores(
    uri: str, experiment: str, tasks: tuple[str, ...] = ()
) -> dict[str, dict[int, float]]:
    """``scores[arm][seed]`` of the experiment's FINISHED child runs (read only): the final
    return with one task, the suite score over several (a seed of an arm appears once its
    run on every task has finished).

    Raises:
        TrackingError: a finished run has no score (it would be planned again forever), or
            no score references over several tasks.
    """
    runs = _search(
        uri, experiment, "tags.`ablation.role` = 'child' and attributes.status = 'FINISHED'"
    )
    per_task: dict[tuple[str, int], dict[str, float]] = {}
    for run in runs:
        if SCORE_METRIC not in run.data.metrics:
            raise TrackingError(
                f"run {run.info.run_name} finished without '{SCORE_METRIC}'; delete it in MLflow "
                "and rerun"
            )
        tags = run.data.tags
        arm, seed = tags.get("arm", "?"), int(tags.get("seed", "-1"))
        value = run.data.metrics[SCORE_METRIC]
        if len(tasks) > 1:
            try:
                low, high = float(tags["score.random"]), float(tags["score.best"])
            except (KeyError, ValueError):
                raise TrackingError(
                    f"run {run.info.run_name} has no score references (tags score.random, "
                    "score.best): the suite score cannot be computed"
                ) from None
            value = (value - low) / (high - low)
        per_task.setdefault((arm, seed), {})[tags.get("task") or tags.get("env", "")] = value
    scores: dict[str, dict[int, float]] = {}
    for (arm, seed), values in per_task.items():
        score = suite_score(values, tasks) if len(tasks) > 1 else next(iter(values.values()))
        if math.isfinite(score):
            scores.setdefault(arm, {})[seed] = score
    return scores


def recorded_rule(uri: str, experiment: str) -> dict[str, str]:
    """The ``adaptive.*`` params of the experiment's parent run ({} if none yet)."""
    parents = _search(uri, experiment, "tags.`ablation.role` = 'parent'", max_results=1)
    if not parents:
        return {}
    return {k: v for k, v in parents[0].data.params.items() if k.startswith("adaptive.")}


def as_recorded(rule: AdaptiveRule, uri: str, experiment: str) -> AdaptiveRule:
    """``rule`` as the experiment's parent recorded it: an ablation recorded before exactness
    was decided per interim (no ``adaptive.enumeration`` param) keeps its own test, so that
    its replays reach the decisions it took; a new one (nothing recorded) takes ``rule``."""
    recorded = recorded_rule(uri, experiment)
    if recorded and ENUMERATION_PARAM not in recorded:
        return replace(rule, per_interim=False)
    return rule


def interim_runs(spec: AblationSpec, rule: AdaptiveRule, uri: str) -> list[RunSpec]:
    """The runs of the interim in progress (finished ones included, the runner skips them);
    empty once every comparison is decided. Creates nothing.

    Raises:
        ConfigError: the experiment was started with another rule.
    """
    recorded = recorded_rule(uri, spec.name)
    if recorded:
        changed = sorted(k for k, v in rule.params().items() if recorded.get(k, v) != v)
        if changed:
            was = ", ".join(f"{k.removeprefix('adaptive.')}={recorded[k]}" for k in changed)
            raise ConfigError(
                f"experiment '{spec.name}' was started with another adaptive rule ({was}); rerun "
                "with the same values or pass a new EXPERIMENT name"
            )
    stand = plan(rule, spec.arms, finished_scores(uri, spec.name, rule.tasks))
    # The whole interim, finished runs included, so a resumed command counts what is
    # left of the interim rather than presenting the remainder as the ablation.
    wanted = set(stand.interim_runs)
    if stand.finished:
        print(f"adaptive seeding: {status_line(rule, stand)}; nothing left to run")
    else:
        first = stand.interim * rule.interim
        arms = ", ".join(dict.fromkeys(arm for arm, _ in stand.next_runs))
        print(
            f"adaptive seeding: interim {stand.interim + 1} of {rule.n_interims}, seeds "
            f"{first}..{first + rule.interim - 1} of {arms} (alpha {rule.alpha}, reference "
            f"{rule.reference}, at most {rule.seed_budget} seeds per arm)"
        )
    return [run for run in spec.runs() if (run.arm, run.seed) in wanted]


def record_rule(store: AblationStore, rule: AdaptiveRule) -> None:
    """Log the rule as params of the parent run (before any child run exists)."""
    retry_locked(
        store.client.log_batch,
        store.parent_id,
        params=[Param(k, v) for k, v in rule.params().items()],
    )


def record_interim(store: AblationStore, rule: AdaptiveRule) -> Plan:
    """Replan from the store and record where the ablation stands on the parent run."""
    stand = plan(rule, store.spec.arms, finished_scores(store.uri, store.spec.name, rule.tasks))
    tags = {"adaptive.status": status_line(rule, stand)}
    for arm, decision in stand.decisions().items():
        tags[f"adaptive.decision.{arm}"] = (
            decision_line(rule, stand, arm) if decision != OPEN else OPEN
        )
    for key, value in tags.items():
        retry_locked(store.client.set_tag, store.parent_id, key, value)
    if stand.result is not None:
        retry_locked(
            store.client.log_text, store.parent_id, decisions_csv(rule, stand), DECISIONS_ARTIFACT
        )
    return stand


def status_line(rule: AdaptiveRule, stand: Plan) -> str:
    if stand.finished:
        return f"decided at interim {stand.interim + 1} of {rule.n_interims}"
    return f"running interim {stand.interim + 1} of {rule.n_interims}"


def seeds_used(rule: AdaptiveRule, stand: Plan, arm: str) -> int:
    """Seeds of the arm in the interims tested: up to its decision, if decided."""
    if stand.result is None:
        return 0
    tested = len(stand.result.interims)
    if arm == stand.arms[0]:
        return tested * rule.interim
    at = stand.result.decided_at[stand.arms.index(arm) - 1]
    return ((at + 1) if at >= 0 else tested) * rule.interim


def decision_line(rule: AdaptiveRule, stand: Plan, arm: str) -> str:
    """``better than separate at interim 2 of 5 (10 of 25 seeds)`` and the like."""
    decision = stand.decisions()[arm]
    at = stand.result.decided_at[stand.arms.index(arm) - 1] if stand.result else -1
    used = seeds_used(rule, stand, arm)
    where = f"at interim {at + 1} of {rule.n_interims} ({used} of {rule.seed_budget} seeds)"
    if decision == NO_DIFFERENCE:
        return f"no difference from {rule.reference} detectable at this budget, {where}"
    return f"{decision} than {rule.reference} {where}"


def decisions_csv(rule: AdaptiveRule, stand: Plan) -> str:
    """One row per interim and compared arm: mean difference, boundary, decision."""
    out = io.StringIO()
    out.write("interim,arm,reference,seeds,mean_difference,boundary_on_mean_difference,decision\n")
    assert stand.result is not None
    for step in stand.result.interims:
        scale = step.interim + 1  # S is a sum over interims of block-mean differences
        for arm, stat, boundary, decision in zip(
            stand.arms[1:], step.statistics, step.boundaries, step.decisions, strict=True
        ):
            if math.isnan(stat):
                continue
            out.write(
                f"{step.interim + 1},{arm},{rule.reference},{scale * rule.interim},"
                f"{stat / scale:.6g},{boundary / scale:.6g},{decision}\n"
            )
    return out.getvalue()


def print_decisions(rule: AdaptiveRule, stand: Plan) -> None:
    print(f"\nadaptive seeding ({status_line(rule, stand)}, alpha {rule.alpha}):")
    for arm in stand.arms[1:]:
        decision = stand.decisions()[arm]
        print(f"  {arm}: {decision_line(rule, stand, arm) if decision != OPEN else 'undecided'}")
