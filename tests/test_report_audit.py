"""The report of the published study (results/cpu_classic) against what an audit recomputed
from its CSVs: every run listed, no text off its page, speed paired where the arms' runs
trained side by side, one Holm wording, the config by task, and folders that must be refused
or must say what they substitute."""

from __future__ import annotations

import math
import re
import shutil
import tomllib
from collections import Counter
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.table import Table
from pypdf import PdfReader
from scipy import stats as scipy_stats

from analysis import summary
from analysis.results import read_results
from reports import build, pages
from reports.layout import draw_table

REPO_ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = REPO_ROOT / "results" / "cpu_classic"
RESAMPLES = 200


def pdf_text(path: Path) -> list[str]:
    """Each page's text, whitespace collapsed."""
    return [re.sub(r"\s+", " ", page.extract_text()) for page in PdfReader(path).pages]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("audit")
    pdf = build.report_from_folder(PUBLISHED, out, n_resamples=RESAMPLES)
    return {"pages": pdf_text(pdf), "runs": pd.read_csv(PUBLISHED / "runs.csv")}


def outside_the_page(figure) -> list[str]:
    """What is drawn beyond the figure's edges: its tight bounding box (axes with the tick
    labels they draw, titles, legends), and every text of the figure and of its tables'
    cells (a cell's text may overflow its cell)."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    page = figure.bbox
    boxes = [("content", figure.get_tightbbox(renderer).transformed(figure.dpi_scale_trans))]
    texts = [t for t in figure.texts if t.get_text()]
    for table in figure.findobj(Table):
        for cell in table.get_celld().values():
            boxes.append((f"cell {cell.get_text().get_text()!r}", cell.get_window_extent(renderer)))
            texts.append(cell.get_text())
    boxes += [(f"text {t.get_text()[:60]!r}", t.get_window_extent(renderer)) for t in texts]
    return [
        name
        for name, box in boxes
        if box.x0 < page.x0 - 1
        or box.y0 < page.y0 - 1
        or box.x1 > page.x1 + 1
        or box.y1 > page.y1 + 1
    ]


def test_appendix_a_lists_every_run_once(report: dict) -> None:
    appendix = [page for page in report["pages"] if "Appendix A: every run" in page]
    listed = Counter(name for page in appendix for name in re.findall(r"\S+-seed\d+", page))
    assert listed == Counter(report["runs"]["run_name"])
    assert len(listed) == 60
    assert (
        f"Appendix A: every run (60 runs; page {len(appendix)} of {len(appendix)})"
        in (appendix[-1])
    )


def test_no_text_leaves_its_page() -> None:
    matplotlib.use("Agg")
    data, adaptive = read_results(PUBLISHED)
    figures, _, _ = build.report_pages(data, adaptive, n_resamples=RESAMPLES)
    assert len(figures) >= 10
    off = {index: outside_the_page(figure) for index, figure in enumerate(figures, start=1)}
    assert {index: names for index, names in off.items() if names} == {}
    # The check sees what it is for: a line as long as page 2's status line was.
    page = pages.text_page("x")
    page.text(0.04, 0.9, "word " * 120, fontsize=10)
    assert "text 'word word word word word word word word word word word word '" in (
        outside_the_page(page)
    )
    # ... and a table with more rows than its page holds, as Appendix A's was.
    page = pages.text_page("x")
    draw_table(page.add_axes((0.04, 0.05, 0.92, 0.86)), ["run"], [[f"r{k}"] for k in range(40)])
    assert "cell 'r39'" in outside_the_page(page) and "cell 'r20'" not in outside_the_page(page)


def _side_by_side(runs: pd.DataFrame) -> pd.DataFrame:
    """The (task, seed) pairs of runs.csv whose training windows ([max(start, end - training
    seconds), end]) overlap for at least half the shorter, with their ratio coupled/separate."""
    times = runs.assign(
        end=pd.to_datetime(runs["end_time"]).astype("int64") / 1e9,
        start=pd.to_datetime(runs["start_time"]).astype("int64") / 1e9,
    )
    times["from"] = np.maximum(times["start"], times["end"] - times["wall_clock"])
    both = times[times["arm"] == "coupled"].merge(
        times[times["arm"] == "separate"], on=["task", "seed"], suffixes=("", "_ref")
    )
    overlap = np.minimum(both["end"], both["end_ref"]) - np.maximum(both["from"], both["from_ref"])
    shorter = np.minimum(both["end"] - both["from"], both["end_ref"] - both["from_ref"])
    both["ratio"] = both["updates_per_s"] / both["updates_per_s_ref"]
    return both[overlap >= 0.5 * shorter]


def _exact_wilcoxon(n_pairs: int, smaller_rank_sum: int) -> float:
    """Two-sided exact signed-rank p by counting, over all 2^n sign assignments, the rank
    sums at most the observed smaller one (a subset-sum count; no ties)."""
    counts = [1] + [0] * (n_pairs * (n_pairs + 1) // 2)
    for rank in range(1, n_pairs + 1):
        for total in range(len(counts) - 1, rank - 1, -1):
            counts[total] += counts[total - rank]
    return min(1.0, 2 * sum(counts[: smaller_rank_sum + 1]) / 2**n_pairs)


def test_speed_is_paired_as_the_runs_trained(report: dict) -> None:
    pairs = _side_by_side(report["runs"])
    assert len(pairs) == 30  # every seed's two arms trained side by side
    logs = np.log(pairs["ratio"].to_numpy())
    interval = scipy_stats.ttest_1samp(logs, 0.0).confidence_interval(0.95)
    ranks = scipy_stats.rankdata(np.abs(logs))
    p = _exact_wilcoxon(len(logs), int(min(ranks[logs > 0].sum(), ranks[logs < 0].sum())))
    faster = int((logs > 0).sum())
    sentence = (
        f"geometric mean coupled/separate {math.exp(logs.mean()):.3g}, 95% CI "
        f"[{math.exp(interval.low):.3g}, {math.exp(interval.high):.3g}] (Student t on the log "
        f"ratios), Wilcoxon signed-rank p = {p:.2g} (two-sided, log ratios); coupled faster in "
        f"{faster} of 30 pairs."
    )
    first, speed_page = (
        report["pages"][0],
        next(p for p in report["pages"] if "Speed: training" in p),
    )
    assert "Speed, paired: in 30 of 30 (task, seed) pairs" in first
    assert sentence in first and sentence in speed_page
    # Page 1's table cell, and per task on the speed page: the task's 10 pairs.
    assert f"{math.exp(logs.mean()):.3g} [{math.exp(interval.low):.3g}, " in first
    for task, rows in pairs.groupby("task"):
        task_logs = np.log(rows["ratio"].to_numpy())
        ci = scipy_stats.ttest_1samp(task_logs, 0.0).confidence_interval(0.95)
        cell = (
            f"{task} coupled 10 "
            f"{np.median(rows['updates_per_s']):.3g} [{rows['updates_per_s'].min():.3g}, "
            f"{rows['updates_per_s'].max():.3g}] {math.exp(task_logs.mean()):.3g} "
            f"[{math.exp(ci.low):.3g}, {math.exp(ci.high):.3g}] paired, 10 seeds"
        )
        assert cell in speed_page, cell
    # Load that differed between pairs cancels within them: no caution calls speed distorted.
    assert "distorted" not in " ".join(report["pages"]) and "Speed caution" not in first
    assert "Runs trained under comparable conditions." in speed_page


def test_the_holm_family_is_worded_once(report: dict) -> None:
    sentence = summary.holm_family_sentence(12, over_tasks=True)
    assert sentence == (
        "Holm family: 12 tests, every task x arm against the reference on each of {final "
        "return, return AUC, updates/s, h dispersion}, adjusted together at alpha 0.05."
    )
    first, per_task = report["pages"][0], report["pages"][2]
    method = next(page for page in report["pages"] if page.startswith("Method"))
    assert per_task.startswith("task arm n final return")
    for page in (first, per_task, method):
        assert sentence in page
    assert not any("Holm over" in page or "finite p-values" in page for page in report["pages"])


def test_appendix_b_shows_each_tasks_own_settings(report: dict) -> None:
    study = tomllib.loads((REPO_ROOT / "studies" / "cpu_classic.toml").read_text())
    config = next(page for page in report["pages"] if "Differs by task:" in page)
    tasks = list(study["tasks"])
    assert f"key {' '.join(tasks)}" in config
    for key in (
        "steps",
        "train.train_ratio",
        "ac.discount",
        "ac.replay_critic",
        "env.action_repeat",
    ):
        name = "train.steps" if key == "steps" else key
        row = re.search(rf"{re.escape(name)} (\S+) (\S+) (\S+)", config)
        assert row is not None, name
        for task, cell in zip(tasks, row.groups(), strict=True):
            if key in study["tasks"][task]:
                assert float(cell) == float(study["tasks"][task][key]), (name, task)
    assert "train.schedule separate coupled" in config and "train.seed: the run's seed" in config


def test_the_adaptive_page_says_how_the_permutations_were_drawn(report: dict) -> None:
    page = report["pages"][1]
    assert page.startswith("arm decision vs separate") or "Adaptive seeding" in page
    assert (
        "Permutations: 10,000 random permutation sequences at every interim (the rule this "
        "ablation was recorded under enumerated only when all 63,504 sequences of its 2 "
        "interims fit in 10,000)." in page
    )
    assert math.comb(10, 5) ** 2 == 63_504


def test_a_run_without_an_eval_point_in_its_final_window_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "cpu_classic"
    shutil.copytree(PUBLISHED, folder)
    runs = pd.read_csv(folder / "runs.csv", dtype=str, keep_default_na=False)
    curves = pd.read_csv(folder / "curves.csv", dtype=str, keep_default_na=False)
    target = runs[runs["run_name"] == "pendulum/coupled-seed3"].iloc[0]
    last = int(target["final_step"])
    mine = (curves["run"] == target["run"]) & (curves["eval/return"] != "")
    steps = curves.loc[mine, "step"].astype(int)
    curves.loc[
        mine & (steps >= 0.9 * last).reindex(curves.index, fill_value=False), "eval/return"
    ] = ""
    curves.to_csv(folder / "curves.csv", index=False)
    kept = curves[(curves["run"] == target["run"]) & (curves["eval/return"] != "")]
    stand_in = kept.loc[kept["step"].astype(int).idxmax()]
    step, value = int(stand_in["step"]), float(stand_in["eval/return"])
    assert step < 0.9 * last
    # What an export of such a run writes: its final return is that earlier point.
    runs.loc[runs["run"] == target["run"], "final_return"] = stand_in["eval/return"]
    runs.to_csv(folder / "runs.csv", index=False)

    text = pdf_text(build.report_from_folder(folder, tmp_path / "out", n_resamples=RESAMPLES))
    share = f"{100 * step / last:.0f}%"
    assert f"pendulum/coupled-seed3 (step {step:,}, {share} of training)" in text[0]
    assert "had no eval point in the last 10% of training" in text[0]
    row = f"pendulum/coupled-seed3 coupled FINISHED 3 5,000 {value:.1f}"
    appendix = " ".join(page for page in text if "Appendix A" in page)
    cell = f"no eval in the last 10%: step {step:,} ({share}) used"
    assert f"{row} " in appendix and cell in appendix
    method = next(page for page in text if page.startswith("Method"))
    assert "pendulum: 0-2." in method  # the window count says 0, not a silent 1


def test_a_final_return_that_disagrees_with_the_curves_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "cpu_classic"
    shutil.copytree(PUBLISHED, folder)
    runs = pd.read_csv(folder / "runs.csv", dtype=str, keep_default_na=False)
    runs.loc[runs["run_name"] == "cartpole/separate-seed4", "final_return"] = "300"
    runs.to_csv(folder / "runs.csv", index=False)
    out = tmp_path / "out"
    assert build.main(["--from", str(folder), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("error: ") and "Traceback" not in error
    assert "cartpole/separate-seed4" in error and "final_return 300" in error
    assert not out.exists()


def test_the_caution_counts_add_up() -> None:
    warnings = [f"caution {k}." for k in range(12)]
    (first,) = pages.speed_caution(warnings)
    assert first[0] == (
        f"Speed caution: caution 0. (11 more: the speed page shows {pages.WARNINGS_SHOWN - 1} of "
        f"them, and all 12 are in {pages.CAUTIONS_WHERE}.)"
    )
    table = pd.DataFrame({"arm": ["a"], "runs": [1], "speed_median": [1.0], "speed_low": [1.0]})
    table = table.assign(speed_high=1.0, speed_ratio=np.nan)
    (page,) = pages.speed_pages(table, "a", warnings, "note")
    shown = [t.get_text() for t in page.texts if t.get_text().startswith("Caution: ")]
    more = [t.get_text() for t in page.texts if t.get_text().startswith("... and ")]
    assert len(shown) == pages.WARNINGS_SHOWN
    (line,) = more
    count = int(re.match(r"\.\.\. and (\d+) more", line).group(1))
    assert 1 + (pages.WARNINGS_SHOWN - 1) + count == 12  # page 1's, the speed page's, the rest
