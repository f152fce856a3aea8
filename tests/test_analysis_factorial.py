"""Factorial analysis (analysis/factors.py, analysis/factorial.py) against independent
computations: the arms' factors read from their configs, effects of a hand-made 2x2 written
out from their definitions, permutation p-values by brute force over every relabeling with
exact fractions, bootstrap intervals against the exact bootstrap distribution, and the
degenerate cases (2 runs per cell, zero variance, ties, one run in a cell)."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from analysis import factorial, factors
from analysis.load import RUNS_COLUMNS, AblationData, runs_frame

BUILT_IN = {
    "separate": {"train.schedule": "separate", "train.starts": "last"},
    "coupled": {"train.schedule": "coupled", "train.starts": "last"},
    "separate_all": {"train.schedule": "separate", "train.starts": "all"},
    "coupled_all": {"train.schedule": "coupled", "train.starts": "all"},
}
SHARED = {"train.train_ratio": "256", "model.units": "64"}


def ablation(
    arms: dict[str, dict[str, str]],
    tasks: tuple[str, ...] = ("cartpole",),
    per_task: dict[tuple[str, str], dict[str, str]] | None = None,
    reference: str = "separate",
    seeds: int = 2,
) -> AblationData:
    """An ablation whose runs carry ``arms``' config values (over :data:`SHARED`, then any
    ``per_task[(task, arm)]``) as params, as the results folder and MLflow give them."""
    rows, params = [], {}
    for task in tasks:
        for arm, values in arms.items():
            for seed in range(seeds):
                run_id = f"{task}-{arm}-{seed}"
                row = {column: "" for column in RUNS_COLUMNS}
                row |= {"run_id": run_id, "run_name": run_id, "arm": arm, "seed": seed}
                row |= {"status": "FINISHED", "task": task}
                rows.append(row)
                extra = (per_task or {}).get((task, arm), {})
                params[run_id] = SHARED | values | extra | {"train.seed": str(seed)}
    metrics = pd.DataFrame(columns=["run_id", "arm", "seed", "metric", "step", "value"])
    return AblationData(
        "x", "0", None, runs_frame(rows), metrics, reference=reference,
        arm_order=tuple(arms), tasks=tasks, run_params=params,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Factors from the arms' configs
# ----------------------------------------------------------------------------------------------


def test_the_built_in_arms_cross_schedule_and_starts() -> None:
    design = factors.crossing(ablation(BUILT_IN))
    assert isinstance(design, factors.Design)
    assert [(f.name, f.low, f.high) for f in design.factors] == [
        ("train.schedule", "separate", "coupled"),
        ("train.starts", "last", "all"),
    ]
    assert design.cells == {
        "separate": (0, 0), "coupled": (1, 0), "separate_all": (0, 1), "coupled_all": (1, 1),
    }  # fmt: skip
    assert design.factors[1].contrast == "all - last" and design.notes == ()


def test_the_low_level_is_the_reference_arms() -> None:
    design = factors.crossing(ablation(BUILT_IN, reference="coupled_all"))
    assert [(f.low, f.high) for f in design.factors] == [("coupled", "separate"), ("all", "last")]


def test_a_grid_crosses_its_key_with_the_arms() -> None:
    arms = {
        f"{name}_train_ratio{ratio}": {"train.schedule": name, "train.train_ratio": ratio}
        for name in ("separate", "coupled")
        for ratio in ("128", "512")
    }
    design = factors.crossing(ablation(arms, reference="separate_train_ratio128"))
    assert [f.name for f in design.factors] == ["train.schedule", "train.train_ratio"]
    assert design.arm_of((1, 1)) == "coupled_train_ratio512"


def test_two_arms_are_a_plain_comparison_not_a_factorial() -> None:
    arms = {arm: BUILT_IN[arm] for arm in ("separate", "coupled")}
    assert factors.crossing(ablation(arms)) is None


def test_three_levels_are_refused_with_the_reason() -> None:
    arms = {
        f"{name}_{ratio}": {"train.schedule": name, "train.train_ratio": ratio}
        for name in ("separate", "coupled")
        for ratio in ("64", "128", "256")
    }
    design = factors.crossing(ablation(arms, reference="separate_64"))
    assert isinstance(design, factors.NoDesign)
    assert "train.train_ratio has 3 levels (64, 128, 256)" in design.reason
    assert design.levels["coupled_256"] == ("coupled", "256")


def test_a_partial_crossing_names_the_missing_cell() -> None:
    arms = {
        "separate": {"train.schedule": "separate", "train.refilter_starts": "False"},
        "coupled": {"train.schedule": "coupled", "train.refilter_starts": "False"},
        "coupled_refiltered": {"train.schedule": "coupled", "train.refilter_starts": "True"},
    }
    design = factors.crossing(ablation(arms))
    assert isinstance(design, factors.NoDesign)
    assert "no arm has train.refilter_starts=True, train.schedule=separate" in design.reason


def test_keys_that_change_together_are_one_factor_and_said_so() -> None:
    arms = {arm: values | {"train.compile": "on" if "all" in arm else "off"}
            for arm, values in BUILT_IN.items()}  # fmt: skip
    design = factors.crossing(ablation(arms))
    assert [f.name for f in design.factors] == ["train.compile + train.starts", "train.schedule"]
    assert design.factors[0].contrast == "on, all - off, last"
    assert any("train.compile, train.starts change together" in note for note in design.notes)


def test_a_key_that_differs_between_arms_on_one_task_only_is_a_noted_confound() -> None:
    per_task = {("pendulum", "separate_all"): {"train.train_ratio": "64"},
                ("pendulum", "coupled_all"): {"train.train_ratio": "64"}}  # fmt: skip
    data = ablation(BUILT_IN, ("cartpole", "pendulum"), per_task)
    design = factors.crossing(data)
    assert [f.name for f in design.factors] == ["train.schedule", "train.starts"]
    assert any(note.startswith("train.train_ratio differs between arms") for note in design.notes)


def test_runs_without_params_fall_back_to_their_tags() -> None:
    data = ablation(BUILT_IN)
    for index, run in data.runs.iterrows():
        data.runs.loc[index, ["schedule", "starts"]] = list(BUILT_IN[run.arm].values())
    data.run_params.clear()
    assert [f.name for f in factors.crossing(data).factors] == ["train.schedule", "train.starts"]


# ----------------------------------------------------------------------------------------------
# Effects, permutation p and bootstrap on hand-made data
# ----------------------------------------------------------------------------------------------

DESIGN = factors.crossing(ablation(BUILT_IN))
CELL_ORDER = [DESIGN.arm_of(cell) for cell in factorial.cells_of(2)]
# Per arm, two runs' scores (exact decimals): means separate 2, coupled 5, separate_all 3,
# coupled_all 10.
HAND = {"separate": ("1", "3"), "coupled": ("4", "6"), "separate_all": ("2", "4"),
        "coupled_all": ("9", "11")}  # fmt: skip


def cells(values: dict[str, tuple[str, ...]]) -> list[np.ndarray]:
    return [np.array([float(v) for v in values[arm]]) for arm in CELL_ORDER]


def fractions(values: dict[str, tuple[str, ...]]) -> dict[str, list[Fraction]]:
    return {arm: [Fraction(v) for v in runs] for arm, runs in values.items()}


def mean(values: list[Fraction]) -> Fraction:
    return sum(values, Fraction(0)) / len(values)


def by_definition(m: dict[str, Fraction]) -> dict[str, Fraction]:
    """The 2x2 effects as the page defines them, schedule A (separate a1, coupled a2) and
    starts B (last b1, all b2)."""
    a1b1, a2b1, a1b2, a2b2 = m["separate"], m["coupled"], m["separate_all"], m["coupled_all"]
    return {
        "train.schedule": ((a2b1 - a1b1) + (a2b2 - a1b2)) / 2,
        "train.starts": ((a1b2 - a1b1) + (a2b2 - a2b1)) / 2,
        "train.schedule x train.starts": (a2b2 - a1b2) - (a2b1 - a1b1),
    }


def test_effects_of_a_hand_made_2x2_are_the_known_ones() -> None:
    known = {"train.schedule": 5, "train.starts": 3, "train.schedule x train.starts": 4}
    means = {arm: mean(v) for arm, v in fractions(HAND).items()}
    assert by_definition(means) == known  # ((5-2)+(10-3))/2, ((3-2)+(10-5))/2, 7-3
    for effect in factorial.effects(DESIGN):
        assert factorial.effect_value(cells(HAND), effect.weights) == pytest.approx(
            known[effect.label], abs=1e-12
        )
    words = [effect.words for effect in factorial.effects(DESIGN)]
    assert words == ["coupled - separate", "all - last",
                     "(coupled - separate | all) - (coupled - separate | last)"]  # fmt: skip


def brute_main_p(
    tasks: list[dict[str, list[Fraction]]], low_high: list[tuple[str, str]]
) -> Fraction:
    """Two-sided p of a main effect over ``tasks`` (their mean): within each task and each
    ``(low arm, high arm)`` pair, every choice of which pooled runs are the high arm's."""

    def effect(assignment: list[dict[str, list[Fraction]]]) -> Fraction:
        return sum(
            (sum(mean(t[high]) - mean(t[low]) for low, high in low_high) / len(low_high)
             for t in assignment), Fraction(0)) / len(assignment)  # fmt: skip

    observed = abs(effect(tasks))
    choices = []
    for task in tasks:
        for low, high in low_high:
            pooled = task[low] + task[high]
            choices.append([
                ([pooled[i] for i in range(len(pooled)) if i not in chosen],
                 [pooled[i] for i in chosen])
                for chosen in itertools.combinations(range(len(pooled)), len(task[high]))
            ])  # fmt: skip
    hits = total = 0
    for picked in itertools.product(*choices):
        assignment, index = [], 0
        for _ in tasks:
            relabelled = {}
            for low, high in low_high:
                relabelled[low], relabelled[high] = picked[index]
                index += 1
            assignment.append(relabelled)
        total += 1
        hits += abs(effect(assignment)) >= observed
    return Fraction(hits, total)


SCHEDULE_PAIRS = [("separate", "coupled"), ("separate_all", "coupled_all")]
STARTS_PAIRS = [("separate", "separate_all"), ("coupled", "coupled_all")]


ARMS = ("separate", "coupled", "separate_all", "coupled_all")


def additive_residuals(task: dict[str, list[Fraction]]) -> list[Fraction]:
    """Each run's residual (arms in :data:`ARMS` order) from the additive fit of balanced
    cells: schedule mean + starts mean - grand mean, all of cell means."""
    m = {arm: mean(v) for arm, v in task.items()}
    grand = sum(m.values(), Fraction(0)) / 4
    schedule = {"separate": (m["separate"] + m["separate_all"]) / 2,
                "coupled": (m["coupled"] + m["coupled_all"]) / 2}  # fmt: skip
    starts = {"last": (m["separate"] + m["coupled"]) / 2,
              "all": (m["separate_all"] + m["coupled_all"]) / 2}  # fmt: skip
    residuals = []
    for arm in ARMS:
        fitted = schedule[arm.removesuffix("_all")] + starts["all" if "_all" in arm else "last"]
        residuals += [v - (fitted - grand) for v in task[arm]]
    return residuals


def relabelled_interactions(task: dict[str, list[Fraction]]) -> list[Fraction]:
    """The interaction of every permutation of one task's residuals over the cells (two
    runs per cell, in :data:`ARMS` order)."""
    residuals = additive_residuals(task)
    values = []
    for permuted in itertools.permutations(residuals):
        means = {arm: (permuted[2 * i] + permuted[2 * i + 1]) / 2 for i, arm in enumerate(ARMS)}
        values.append(by_definition(means)["train.schedule x train.starts"])
    return values


def brute_interaction_p(task: dict[str, list[Fraction]]) -> Fraction:
    """Two-sided p of one task's interaction over every permutation of its residuals."""
    observed = abs(by_definition({a: mean(v) for a, v in task.items()})[
        "train.schedule x train.starts"])  # fmt: skip
    values = relabelled_interactions(task)
    return Fraction(sum(abs(v) >= observed for v in values), len(values))


def code_p(tasks: list[dict[str, tuple[str, ...]]], label: str, **kwargs) -> factorial.PValue:
    effect = next(e for e in factorial.effects(DESIGN) if e.label == label)
    task_cells = [cells(task) for task in tasks]
    observed = float(np.mean([factorial.effect_value(c, effect.weights) for c in task_cells]))
    strata = factorial.effect_strata(task_cells, effect)
    return factorial.permutation_p(strata, observed, np.random.default_rng(1), **kwargs)


# Zero variance in every cell; ties: separate_all equals separate, coupled_all equals coupled.
FLAT = {"separate": ("2", "2"), "coupled": ("5", "5"), "separate_all": ("2", "2"),
        "coupled_all": ("5", "5")}  # fmt: skip
TIES = {"separate": ("1", "2"), "coupled": ("2", "2"), "separate_all": ("1", "2"),
        "coupled_all": ("2", "3")}  # fmt: skip


@pytest.mark.parametrize("values", [HAND, FLAT, TIES], ids=["hand", "zero-variance", "ties"])
def test_exact_p_of_one_task_equals_brute_force(values: dict) -> None:
    exact = fractions(values)
    for label, pairs in (("train.schedule", SCHEDULE_PAIRS), ("train.starts", STARTS_PAIRS)):
        p = code_p([values], label)
        assert (p.method, p.relabelings) == ("exact", 36)  # C(4, 2) per level of the other
        assert p.p == pytest.approx(float(brute_main_p([exact], pairs)), abs=1e-12)
    p = code_p([values], "train.schedule x train.starts")
    assert (p.method, p.relabelings) == ("exact", 2520)  # 8! / (2!)^4
    assert p.p == pytest.approx(float(brute_interaction_p(exact)), abs=1e-12)


def test_no_effect_at_all_gives_p_one_and_a_flat_interval() -> None:
    same = {arm: ("3", "3") for arm in BUILT_IN}
    for effect in factorial.effects(DESIGN):
        assert code_p([same], effect.label).p == 1.0
        low, high = factorial.bootstrap_ci(
            [cells(same)], effect.weights, np.random.default_rng(0), 500
        )
        assert low == high == 0.0


def test_zero_variance_gives_an_interval_on_the_estimate() -> None:
    for effect in factorial.effects(DESIGN):
        value = factorial.effect_value(cells(FLAT), effect.weights)
        low, high = factorial.bootstrap_ci(
            [cells(FLAT)], effect.weights, np.random.default_rng(0), 500
        )
        assert low == pytest.approx(value) and high == pytest.approx(value)


def test_exact_p_over_two_tasks_equals_brute_force_and_random_p_is_close() -> None:
    tasks = [HAND, TIES]
    exact = [fractions(t) for t in tasks]
    p = code_p(tasks, "train.starts")
    assert (p.method, p.relabelings) == ("exact", 36**2)
    expected = float(brute_main_p(exact, STARTS_PAIRS))
    assert p.p == pytest.approx(expected, abs=1e-12)
    sampled = code_p(tasks, "train.starts", exact_limit=100)
    assert (sampled.method, sampled.relabelings) == ("random", factorial.RANDOM_RELABELINGS)
    standard_error = np.sqrt(expected * (1 - expected) / factorial.RANDOM_RELABELINGS)
    assert abs(sampled.p - expected) < 4.5 * standard_error + 1 / factorial.RANDOM_RELABELINGS


def test_interaction_over_two_tasks_is_random_beyond_the_limit_and_close_to_exact() -> None:
    tasks = [HAND, TIES]
    p = code_p(tasks, "train.schedule x train.starts")
    assert (p.method, p.relabelings) == ("random", factorial.RANDOM_RELABELINGS)  # 2520^2 > limit
    # The exact p: every pair of the two tasks' relabelings, each task's relabelled
    # interactions from brute-force permutations (each distinct one appears 2!^4 times).
    # Each task's distinct relabelled interactions with their multiplicities, then every pair.
    (a, a_count), (b, b_count) = (
        np.unique(np.array(relabelled_interactions(fractions(t)), float), return_counts=True)
        for t in tasks
    )
    means = (a[:, None] + b[None, :]) / 2  # (distinct in task 1, distinct in task 2)
    weights = a_count[:, None] * b_count[None, :]
    observed = np.mean(
        [float(by_definition({arm: mean(v) for arm, v in fractions(t).items()})[
            "train.schedule x train.starts"]) for t in tasks]
    )  # fmt: skip
    expected = float(weights[np.abs(means) >= abs(observed) - 1e-9].sum() / weights.sum())
    standard_error = np.sqrt(expected * (1 - expected) / factorial.RANDOM_RELABELINGS)
    assert abs(p.p - expected) < 4.5 * standard_error + 1 / factorial.RANDOM_RELABELINGS


def exact_bootstrap(
    tasks: list[dict[str, tuple[str, ...]]], label: str
) -> tuple[np.ndarray, np.ndarray]:
    """Atoms and probabilities of the bootstrap distribution of an effect's mean over tasks
    with two runs per cell: each cell's resampled mean is a, (a + b) / 2 or b with
    probabilities 1/4, 1/2, 1/4, independently."""
    options = []
    for task in tasks:
        for arm in ("separate", "coupled", "separate_all", "coupled_all"):
            a, b = (float(v) for v in task[arm])
            options.append(
                [(task, arm, a, 0.25), (task, arm, (a + b) / 2, 0.5), (task, arm, b, 0.25)]
            )
    atoms, weights = [], []
    for combination in itertools.product(*options):
        per_task = [{arm: value for t, arm, value, _ in combination if t is task} for task in tasks]
        effects = [by_definition({k: Fraction(v) for k, v in m.items()})[label] for m in per_task]
        atoms.append(float(sum(effects)) / len(tasks))
        weights.append(np.prod([w for *_, w in combination]))
    order = np.argsort(atoms)
    return np.array(atoms)[order], np.cumsum(np.array(weights)[order])


def quantile(atoms: np.ndarray, cumulative: np.ndarray, q: float) -> float:
    """The smallest atom whose cumulative probability reaches ``q``."""
    return float(atoms[np.searchsorted(cumulative, q - 1e-12)])


@pytest.mark.parametrize("tasks", [[HAND], [HAND, TIES]], ids=["one task", "two tasks"])
def test_bootstrap_interval_matches_the_exact_bootstrap_distribution(tasks: list) -> None:
    for effect in factorial.effects(DESIGN):
        atoms, cumulative = exact_bootstrap(tasks, effect.label)

        low, high = factorial.bootstrap_ci(
            [cells(t) for t in tasks], effect.weights, np.random.default_rng(7), 20_000
        )
        assert (
            quantile(atoms, cumulative, 0.01) - 1e-9
            <= low
            <= quantile(atoms, cumulative, 0.04) + 1e-9
        ), effect.label
        assert (
            quantile(atoms, cumulative, 0.96) - 1e-9
            <= high
            <= quantile(atoms, cumulative, 0.99) + 1e-9
        ), effect.label


def test_the_same_seed_gives_the_same_interval_and_one_run_in_a_cell_gives_none() -> None:
    weights = factorial.effects(DESIGN)[0].weights
    first = factorial.bootstrap_ci([cells(HAND)], weights, np.random.default_rng(3), 300)
    again = factorial.bootstrap_ci([cells(HAND)], weights, np.random.default_rng(3), 300)
    assert first == again
    single = cells(HAND)
    single[0] = single[0][:1]
    assert all(np.isnan(factorial.bootstrap_ci([single], weights, np.random.default_rng(3), 300)))
    # One run in a cell still has a permutation p: 3 relabelings (which of 3 runs is alone).
    effect = factorial.effects(DESIGN)[0]
    p = factorial.permutation_p(
        factorial.effect_strata([single], effect), factorial.effect_value(single, weights),
        np.random.default_rng(0),
    )  # fmt: skip
    assert (p.method, p.relabelings) == ("exact", 3 * 6)


def test_analyse_names_a_task_with_an_empty_cell_and_leaves_it_out_of_the_suite() -> None:
    rows = []
    for task in ("cartpole", "pendulum", "dmc_cartpole_balance"):
        for arm, values in HAND.items():
            if task == "dmc_cartpole_balance" and arm.endswith("_all"):
                continue
            for seed, value in enumerate(values):
                rows.append({"task": task, "arm": arm, "status": "FINISHED", "seed": seed,
                             "final_return": float(value), "score_random": 0.0,
                             "score_best": 1.0 if task == "cartpole" else 2.0})  # fmt: skip
    result = factorial.analyse(
        DESIGN, pd.DataFrame(rows), ["cartpole", "pendulum", "dmc_cartpole_balance"], 0, 200
    )  # noqa: E501
    assert result.skipped == {
        "dmc_cartpole_balance": "no finished run of separate_all, coupled_all"
    }
    assert result.suite_tasks == ("cartpole", "pendulum")
    suite = result.effects[result.effects["scope"] == "suite"].set_index("effect")["estimate"]
    # pendulum's scores are halved by its best of 2: the suite mean is 3/4 of cartpole's.
    assert suite["train.schedule"] == pytest.approx(0.75 * 5)
    assert suite["train.schedule x train.starts"] == pytest.approx(0.75 * 4)
    assert set(result.effects["scope"]) == {"cartpole", "pendulum", "suite"}
