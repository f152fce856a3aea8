"""A 2x2 suite ablation's report, on a real MLflow store: the built-in arms separate, coupled,
separate_all and coupled_all (train.schedule x train.starts, read from each run's logged
config) on two tasks, two seeds each, with hand-made final returns and diversity metrics.
The factorial page's effects, intervals and p-values, and the suite diversity page's means
and ratios, equal independent computations from those values."""

from __future__ import annotations

import itertools
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from mlflow.entities import Metric, Param

from agent.config import flatten, make_config
from analysis import diversity, export, plots, suite, summary
from analysis.load import load_ablation
from analysis.results import read_results
from reports.diversity_page import suite_diversity
from reports.factorial_page import factorial_report
from tests.suite_store import child_tags, new_suite, report_pages
from tests.test_analysis_factorial import BUILT_IN, ablation
from tests.test_results_folder import assert_report_equal

ARMS = {
    "separate": ("separate", "last"),
    "coupled": ("coupled", "last"),
    "separate_all": ("separate", "all"),
    "coupled_all": ("coupled", "all"),
}
REFERENCES = {"cartpole": (0.0, 500.0), "pendulum": (-1000.0, 0.0)}
# (task, arm) -> each seed's normalised score (exact decimals; pendulum's separate runs tie,
# and its two starts=all cells hold the same values).
SCORES = {
    ("cartpole", "separate"): ("0.2", "0.4"),
    ("cartpole", "coupled"): ("0.3", "0.5"),
    ("cartpole", "separate_all"): ("0.6", "0.8"),
    ("cartpole", "coupled_all"): ("0.8", "1.0"),
    ("pendulum", "separate"): ("0.1", "0.1"),
    ("pendulum", "coupled"): ("0.1", "0.3"),
    ("pendulum", "separate_all"): ("0.4", "0.6"),
    ("pendulum", "coupled_all"): ("0.4", "0.6"),
}
# Effects by their definitions (schedule A: separate a1, coupled a2; starts B: last b1, all b2):
# cartpole cell means .3 .4 .7 .9: A ((.4-.3) + (.9-.7)) / 2, B ((.7-.3) + (.9-.4)) / 2,
# AB (.9-.7) - (.4-.3); pendulum .1 .2 .5 .5: A .05, B .35, AB -.1; the suite their means.
KNOWN = {
    "cartpole": {"train.schedule": 0.15, "train.starts": 0.45, "interaction": 0.1},
    "pendulum": {"train.schedule": 0.05, "train.starts": 0.35, "interaction": -0.1},
    "suite": {"train.schedule": 0.10, "train.starts": 0.40, "interaction": 0.0},
}
INTERACTION = "train.schedule x train.starts"
# h dispersion of each seed; coupled's is 1.0016 x separate's on both tasks (page 1 once
# printed that ratio as "1"), the starts=all arms' 1.5 x and 1.25 x.
H = {"separate": (1.0, 1.2), "coupled": (1.0016, 1.0016 * 1.2),
     "separate_all": (1.5, 1.8), "coupled_all": (1.25, 1.5)}  # fmt: skip
STEPS = range(0, 1001, 100)
ONE_POINT = ("pendulum", "coupled_all", 1)  # logged its diversity metrics at one step only


def _final(task: str, arm: str, seed: int) -> float:
    random, best = REFERENCES[task]
    return random + float(SCORES[(task, arm)][seed]) * (best - random)


def _diversity(task: str, arm: str, seed: int, step: int) -> dict[str, float]:
    scale = 2.0 if task == "pendulum" else 1.0
    return {
        "diversity/h_dispersion": H[arm][seed] * scale,
        "diversity/distinct_starts": 0.9 + 0.01 * seed + step / 100_000,
        "diversity/latent_entropy": 1.0 + 0.1 * seed + (0.5 if arm.endswith("_all") else 0.0),
        "diversity/replay_age": 100.0 * (seed + 1) + step / 10,
    }


def _log_run(client, experiment_id, parent_id, task: str, arm: str, seed: int) -> None:
    schedule, starts = ARMS[arm]
    random, best = REFERENCES[task]
    tags = child_tags(parent_id, task, arm, seed) | {"schedule": schedule, "starts": starts}
    tags |= {"score.random": repr(random), "score.best": repr(best), "score.kind": "max"}
    run = client.create_run(experiment_id, run_name=f"{task}/{arm}-seed{seed}", tags=tags)
    config = make_config(task, "debug", {"train.schedule": schedule, "train.starts": starts,
                                         "train.seed": seed})  # fmt: skip
    now, final = int(time.time() * 1000), _final(task, arm, seed)
    metrics = []
    for index, step in enumerate(STEPS):
        values = {
            "eval/return": final if step >= 900 else random,  # the final-return window: final
            "time/total": float(index),
            "progress/wm_updates": 10.0 * index,
        }
        if (task, arm, seed) != ONE_POINT or step == 500:
            values |= _diversity(task, arm, seed, step)
        metrics += [Metric(key, value, now, step) for key, value in values.items()]
    params = [Param(key, str(value)) for key, value in flatten(config).items()]
    client.log_batch(run.info.run_id, metrics=metrics, params=params)
    client.set_terminated(run.info.run_id, "FINISHED")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("factorial")
    client, uri, experiment_id, parent_id = new_suite(root, "separate", tuple(ARMS), REFERENCES)
    for task, arm, seed in itertools.product(REFERENCES, ARMS, (0, 1)):
        _log_run(client, experiment_id, parent_id, task, arm, seed)
    return report_pages(uri, root, n_resamples=4000)


def _effects(report: dict) -> pd.DataFrame:
    effects = pd.read_csv(report["tables"] / "factorial_effects.csv")
    effects["effect"] = effects["effect"].replace(INTERACTION, "interaction")
    return effects.set_index(["scope", "effect"])


def test_the_factorial_page_gives_the_known_effects(report: dict) -> None:
    effects = _effects(report)
    for scope, known in KNOWN.items():
        for effect, value in known.items():
            assert effects.loc[(scope, effect), "estimate"] == pytest.approx(value, abs=1e-12)
    page = next(p for p in report["pages"] if "Factorial analysis: train.schedule x" in p)
    assert (
        "read from their configs: train.schedule (separate, coupled); train.starts (last, all)"
        in page
    )
    for scope, effect, words in (
        ("suite", "train.starts", "all - last"),
        ("cartpole", "train.schedule", "coupled - separate"),
        ("suite", "interaction", "(coupled - separate | all) - (coupled - separate | last)"),
    ):
        row = effects.loc[(scope, effect)]
        text = f"{words}: {KNOWN[scope][effect]:+.2f} [{row['low']:.2f}, {row['high']:.2f}]"
        assert text in page, text
    assert "(coupled - separate | last): +0.00 [" in page  # the suite's zero, unsigned noise
    assert "Over the suite (cartpole, pendulum; equal task weights)" in page


def quantile(atoms: np.ndarray, cumulative: np.ndarray, q: float) -> float:
    """The smallest atom of a discrete distribution whose cumulative probability reaches q."""
    return float(atoms[np.searchsorted(cumulative, q - 1e-12)])


def _bootstrap_atoms(tasks: tuple[str, ...], effect: str) -> tuple[np.ndarray, np.ndarray]:
    """The exact bootstrap distribution of an effect's mean over ``tasks``: each cell's two
    runs resample to a mean of a, (a + b) / 2 or b with probabilities 1/4, 1/2, 1/4."""
    cells = [(task, arm) for task in tasks for arm in ARMS]
    options = []
    for key in cells:
        a, b = (Fraction(v) for v in SCORES[key])
        options.append([(a, 0.25), ((a + b) / 2, 0.5), (b, 0.25)])
    atoms, weights = [], []
    for combination in itertools.product(*options):
        means = dict(zip(cells, (value for value, _ in combination), strict=True))
        atoms.append(float(np.mean([_by_definition(means, task)[effect] for task in tasks])))
        weights.append(float(np.prod([weight for _, weight in combination])))
    order = np.argsort(atoms)
    return np.array(atoms)[order], np.cumsum(np.array(weights)[order])


def _by_definition(means: dict, task: str) -> dict[str, Fraction]:
    a1b1, a2b1 = means[(task, "separate")], means[(task, "coupled")]
    a1b2, a2b2 = means[(task, "separate_all")], means[(task, "coupled_all")]
    return {
        "train.schedule": ((a2b1 - a1b1) + (a2b2 - a1b2)) / 2,
        "train.starts": ((a1b2 - a1b1) + (a2b2 - a2b1)) / 2,
        "interaction": (a2b2 - a1b2) - (a2b1 - a1b1),
    }


def test_intervals_fall_where_the_exact_bootstrap_distribution_puts_them(report: dict) -> None:
    effects = _effects(report)
    for scope, tasks in (("cartpole", ("cartpole",)), ("suite", ("cartpole", "pendulum"))):
        for effect in ("train.schedule", "train.starts", "interaction"):
            atoms, cumulative = _bootstrap_atoms(tasks, effect)
            low, high = effects.loc[(scope, effect), ["low", "high"]]
            assert quantile(atoms, cumulative, 0.005) - 1e-9 <= low, (scope, effect)
            assert low <= quantile(atoms, cumulative, 0.05) + 1e-9, (scope, effect)
            assert quantile(atoms, cumulative, 0.95) - 1e-9 <= high, (scope, effect)
            assert high <= quantile(atoms, cumulative, 0.995) + 1e-9, (scope, effect)


def _main_p(tasks: tuple[str, ...], pairs: list[tuple[str, str]], effect: str) -> Fraction:
    """Brute force: within each task and pair of cells, every choice of which pooled runs
    take the high cell; the share of relabelings whose |mean effect| reaches the observed."""

    def value(scores: dict) -> Fraction:
        means = {key: sum(v, Fraction(0)) / len(v) for key, v in scores.items()}
        return sum((_by_definition(means, t)[effect] for t in tasks), Fraction(0)) / len(tasks)

    base = {key: [Fraction(v) for v in SCORES[key]] for key in SCORES if key[0] in tasks}
    observed = abs(value(base))
    strata = [(task, low, high) for task in tasks for low, high in pairs]
    options = [list(itertools.combinations(range(4), 2)) for _ in strata]
    hits = total = 0
    for chosen in itertools.product(*options):
        scores = dict(base)
        for (task, low, high), picked in zip(strata, chosen, strict=True):
            pooled = base[(task, low)] + base[(task, high)]
            scores[(task, high)] = [pooled[i] for i in picked]
            scores[(task, low)] = [pooled[i] for i in range(4) if i not in picked]
        total += 1
        hits += abs(value(scores)) >= observed
    return Fraction(hits, total)


def test_main_effect_p_values_equal_brute_force_and_say_exact(report: dict) -> None:
    effects = _effects(report)
    pairs = {
        "train.schedule": [("separate", "coupled"), ("separate_all", "coupled_all")],
        "train.starts": [("separate", "separate_all"), ("coupled", "coupled_all")],
    }
    for scope, tasks in (("pendulum", ("pendulum",)), ("suite", ("cartpole", "pendulum"))):
        for effect, pair in pairs.items():
            row = effects.loc[(scope, effect)]
            assert row["p_method"] == "exact"
            assert row["relabelings"] == 36 ** len(tasks)
            assert row["p"] == pytest.approx(float(_main_p(tasks, pair, effect)), abs=1e-12)
    # The interaction over the suite has 2520^2 relabelings: drawn at random, and said so.
    assert effects.loc[("suite", "interaction"), "p_method"] == "random"
    page = next(p for p in report["pages"] if "Factorial analysis: train.schedule x" in p)
    assert "(exact, 36)" in page and "(random, 9,999)" in page


def test_page_one_prints_the_diversity_ratio_to_three_digits_with_its_interval(
    report: dict,
) -> None:
    aggregates = pd.read_csv(report["tables"] / "aggregates.csv").set_index("arm")
    expected = {"coupled": 1.0016, "separate_all": 1.5, "coupled_all": 1.25}
    for arm, ratio in expected.items():  # per task mean(arm) / mean(separate): the same on both
        assert aggregates.loc[arm, "diversity_ratio"] == pytest.approx(ratio, rel=1e-12)
        assert aggregates.loc[arm, "diversity_ratio_low"] <= ratio
        assert ratio <= aggregates.loc[arm, "diversity_ratio_high"]
    row = aggregates.loc["coupled"]
    low, high = row["diversity_ratio_low"], row["diversity_ratio_high"]
    assert "coupled 4 (2)" in report["pages"][0]
    assert f"1.00 [{low:#.3g}, {high:#.3g}]" in report["pages"][0]


def test_suite_diversity_ratio_interval_is_the_exact_bootstrap_distributions() -> None:
    # coupled vs separate, two runs per task and arm: h (1, 1.2) x 1.0016 and (1, 1.2), on
    # cartpole and (doubled) pendulum. Each arm-task mean resamples to 3 values.
    scores = []
    for task, scale in (("cartpole", 1.0), ("pendulum", 2.0)):
        for arm in ("separate", "coupled"):
            for seed in (0, 1):
                scores.append({"task": task, "arm": arm, "status": "FINISHED",
                               "h_dispersion": H[arm][seed] * scale})  # fmt: skip
    frame = pd.DataFrame(scores)
    table = diversity.suite_ratios(frame, ["separate", "coupled"], "separate",
                                   np.random.default_rng(5), 20_000)  # fmt: skip
    options = []
    for task, scale in (("cartpole", 1.0), ("pendulum", 2.0)):
        for arm in ("separate", "coupled"):
            a, b = (h * scale for h in H[arm])
            options.append(
                [(task, arm, a, 0.25), (task, arm, (a + b) / 2, 0.5), (task, arm, b, 0.25)]
            )
    atoms, weights = [], []
    for combination in itertools.product(*options):
        means = {(t, arm): value for t, arm, value, _ in combination}
        ratios = [means[(t, "coupled")] / means[(t, "separate")] for t in ("cartpole", "pendulum")]
        atoms.append(float(np.sqrt(ratios[0] * ratios[1])))
        weights.append(np.prod([w for *_, w in combination]))
    order = np.argsort(atoms)
    atoms, cumulative = np.array(atoms)[order], np.cumsum(np.array(weights)[order])
    row = table.iloc[0]
    assert row["ratio"] == pytest.approx(1.0016, rel=1e-12)
    assert quantile(atoms, cumulative, 0.01) - 1e-12 <= row["low"]
    assert row["low"] <= quantile(atoms, cumulative, 0.04) + 1e-12
    assert quantile(atoms, cumulative, 0.96) - 1e-12 <= row["high"]
    assert row["high"] <= quantile(atoms, cumulative, 0.99) + 1e-12


def test_the_diversity_page_gives_each_task_and_arm_its_means(report: dict) -> None:
    table = pd.read_csv(report["tables"] / "diversity.csv")
    per_task = table[table["task"] != "all tasks"].set_index(["task", "arm"])
    for task, arm in itertools.product(REFERENCES, ARMS):
        run_means = {}
        for seed in (0, 1):
            steps = [500] if (task, arm, seed) == ONE_POINT else list(STEPS)
            points = [_diversity(task, arm, seed, step) for step in steps]
            run_means[seed] = {k: np.mean([p[k] for p in points]) for k in points[0]}
        row = per_task.loc[(task, arm)]
        assert row["runs"] == 2
        for column in ("h_dispersion", "distinct_starts", "latent_entropy", "replay_age"):
            expected = np.mean([run_means[s][f"diversity/{column}"] for s in (0, 1)])
            assert row[column] == pytest.approx(expected, rel=1e-12), (task, arm, column)
        if arm != "separate":
            h = [run_means[s]["diversity/h_dispersion"] for s in (0, 1)]
            base = [np.mean([_diversity(task, "separate", s, 0)["diversity/h_dispersion"]])
                    for s in (0, 1)]  # fmt: skip
            assert row["diversity_ratio"] == pytest.approx(np.mean(h) / np.mean(base))
            assert np.isnan(row["diversity_ci_low"])  # 2 runs per arm: below 5, no interval
    page = next(p for p in report["pages"] if "Diversity of the actor-critic" in p)
    assert "cartpole coupled 2 0.910 1.10 1.05 200 1.00 [n/a]" in page
    assert "all tasks separate_all 4 1.50 [" in page and "(geometric mean)" in page
    figures = report["tables"].parent / "figures"
    names = ("against_score", "distinct_starts", "h_dispersion", "latent_entropy", "replay_age")
    for name in (f"diversity_{name}" for name in names):
        assert (figures / f"{name}.png").stat().st_size > 0


def test_the_diversity_figure_plots_each_runs_diversity_against_its_score(report: dict) -> None:
    data = scores_from_store(report)
    figure = plots.diversity_against_score(data, list(ARMS), list(REFERENCES))
    points = sorted(
        (round(float(x), 9), round(float(y), 9))
        for collection in figure.axes[0].collections
        for x, y in collection.get_offsets()
    )
    expected = sorted(
        (round(np.mean([_diversity(t, a, s, step)["diversity/h_dispersion"] for step in
                        ([500] if (t, a, s) == ONE_POINT else STEPS)]), 9),
         round(float(SCORES[(t, a)][s]), 9))
        for t, a, s in itertools.product(REFERENCES, ARMS, (0, 1))
    )  # fmt: skip
    assert points == expected


def scores_from_store(report: dict) -> pd.DataFrame:
    """Per-run scores with the mean h dispersion and the normalised score, from the store."""
    data = load_ablation("suite", report["uri"])
    return suite.normalised_scores(summary.per_run_scores(data.runs, data.metrics))


def test_the_exported_folder_gives_the_same_pages_tables_and_figures(
    report: dict, tmp_path: Path
) -> None:
    out = tmp_path / "folder"
    assert (
        export.main(["--experiment", "suite", "--out", str(out), "--tracking-uri", report["uri"]])
        == 0
    )
    from_folder, record = read_results(out)
    assert_report_equal(load_ablation("suite", report["uri"]), None, from_folder, record, tmp_path)


def _texts(page: Figure) -> list[Text]:
    """Every text of a page: its own and its tables' cells (which findobj does not reach)."""
    cells = [
        cell.get_text() for ax in page.axes for table in ax.tables
        for cell in table.get_celld().values()
    ]  # fmt: skip
    return [*page.findobj(Text), *cells]


def _page_text(page: Figure) -> str:
    return " ".join(text.get_text() for text in _texts(page))


def _texts_inside(page: Figure) -> bool:
    """Whether every text of the page, and every table cell, lies within the page."""
    renderer = FigureCanvasAgg(page).get_renderer()
    page.draw(renderer)  # lays the tables out
    box = page.bbox
    boxes = [t.get_window_extent(renderer) for t in _texts(page) if t.get_text().strip()]
    boxes += [
        cell.get_window_extent(renderer) for ax in page.axes for table in ax.tables
        for cell in table.get_celld().values()
    ]  # fmt: skip
    return all(
        b.x0 >= box.x0 - 1 and b.x1 <= box.x1 + 1 and b.y0 >= box.y0 - 1 and b.y1 <= box.y1 + 1
        for b in boxes
    )


def _scores(tasks: list[str], arms: list[str]) -> pd.DataFrame:
    rows = []
    for index, (task, arm, seed) in enumerate(itertools.product(tasks, arms, (0, 1))):
        rows.append({"run_id": f"{task}-{arm}-{seed}", "task": task, "arm": arm, "seed": seed,
                     "status": "FINISHED", "final_return": 0.1 * (index % 7) + 0.05 * seed,
                     "score_random": 0.0, "score_best": 1.0,
                     "h_dispersion": 1.0 + 0.1 * seed})  # fmt: skip
    return pd.DataFrame(rows)


def test_arms_that_do_not_cross_fully_get_a_page_saying_why() -> None:
    arms = {
        "separate": {"train.schedule": "separate", "train.refilter_starts": "False"},
        "coupled": {"train.schedule": "coupled", "train.refilter_starts": "False"},
        "coupled_refiltered": {"train.schedule": "coupled", "train.refilter_starts": "True"},
    }
    data = ablation(arms)
    pages, tables = factorial_report(data, _scores(["cartpole"], list(arms)), 0, 100)
    assert tables == {} and len(pages) == 1
    text = _page_text(pages[0])
    assert "Factorial analysis: none" in text and "no factorial analysis is given" in text
    assert "no arm has train.refilter_starts=True, train.schedule=separate" in text
    assert _texts_inside(pages[0])


def test_thirty_tasks_run_over_several_pages_and_no_text_leaves_its_page() -> None:
    tasks = [f"task{i:02d}" for i in range(30)]
    data = ablation(BUILT_IN, tuple(tasks))
    scores = _scores(tasks, list(BUILT_IN))
    pages, tables = factorial_report(data, scores, 0, 100)
    assert len(pages) > 2 and all(_texts_inside(page) for page in pages)
    text = " ".join(_page_text(page) for page in pages)
    assert all(f"{task} " in text for task in tasks) and "Freedman and Lane" in text
    assert len(tables["factorial_effects"]) == 3 * 31  # every task and the suite, 3 effects
    metrics = scores[["run_id", "arm", "seed", "h_dispersion"]].rename(
        columns={"h_dispersion": "value"}
    )
    metrics = metrics.assign(metric="diversity/h_dispersion", step=0)
    per_task = pd.DataFrame(columns=["task", "arm"])
    diversity_pages = suite_diversity(
        suite.normalised_scores(scores), metrics, per_task, tasks, list(BUILT_IN), "separate", 0, 50
    ).pages
    assert len(diversity_pages) > 1 and all(_texts_inside(page) for page in diversity_pages)


def test_a_one_task_2x2_report_has_the_factorial_page(tmp_path: Path) -> None:
    client, uri, experiment_id, parent_id = new_suite(
        tmp_path, "separate", tuple(ARMS), {"cartpole": REFERENCES["cartpole"]}
    )
    for arm, seed in itertools.product(ARMS, (0, 1)):
        _log_run(client, experiment_id, parent_id, "cartpole", arm, seed)
    single = report_pages(uri, tmp_path, n_resamples=200)
    effects = _effects(single)
    assert set(effects.index.get_level_values("scope")) == {"cartpole"}  # no suite row
    for effect, value in KNOWN["cartpole"].items():
        assert effects.loc[("cartpole", effect), "estimate"] == pytest.approx(value, abs=1e-12)
    page = next(p for p in single["pages"] if "Factorial analysis: train.schedule x" in p)
    row = effects.loc[("cartpole", "train.starts")]
    assert "On cartpole: train.schedule coupled - separate: +0.15 [" in page
    assert f"all - last: +0.45 [{row['low']:.2f}, {row['high']:.2f}]" in page
