"""``make report FROM=`` on the folder the next study will make: cpu_classic's separate and
coupled runs (starts=last) merged with separate_all and coupled_all (starts=all) on cartpole
and pendulum (tests/merged_folder.py). Its report has the factorial page and the suite
diversity page, with numbers equal to computations from the folder's CSVs by the
definitions; cpu_classic's own report (one factor) has the diversity page and no factorial
page."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pypdf import PdfReader

from reports import build
from tests.merged_folder import DISPERSION, PUBLISHED, SHIFTS, TASKS, merged_folder


def _build(folder: Path, out: Path) -> dict:
    assert build.main(["--from", str(folder), "--out", str(out), "--seed", "0"]) == 0
    name = next(out.glob("*.pdf")).stem
    pages = [re.sub(r"\s+", " ", p.extract_text()) for p in PdfReader(out / f"{name}.pdf").pages]
    return {"pages": pages, "tables": out / name / "tables", "folder": folder}


@pytest.fixture(scope="module")
def merged(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("merged")
    return _build(merged_folder(root / "cpu_classic_merged"), root / "out")


def _cell_means(folder: Path) -> pd.Series:
    """Mean normalised score per task and arm, from runs.csv alone."""
    runs = pd.read_csv(folder / "runs.csv")
    return runs[runs["status"] == "FINISHED"].groupby(["task", "arm"])["normalized_score"].mean()


def test_the_factorial_page_has_the_effects_of_the_folders_runs(merged: dict) -> None:
    m = _cell_means(merged["folder"])
    effects = pd.read_csv(merged["tables"] / "factorial_effects.csv")
    effects = effects.set_index(["scope", "effect"])["estimate"]
    expected = {}
    for task in TASKS:
        s, c, sa, ca = (
            m[(task, arm)] for arm in ("separate", "coupled", "separate_all", "coupled_all")
        )
        expected[(task, "train.schedule")] = ((c - s) + (ca - sa)) / 2
        expected[(task, "train.starts")] = ((sa - s) + (ca - c)) / 2
        expected[(task, "train.schedule x train.starts")] = (ca - sa) - (c - s)
        # The copies were shifted by known amounts: the starts effect and the interaction
        # are those shifts whatever the runs scored.
        shift_s, shift_c = SHIFTS[(task, "separate_all")], SHIFTS[(task, "coupled_all")]
        assert expected[(task, "train.starts")] == pytest.approx((shift_s + shift_c) / 2)
        assert expected[(task, "train.schedule x train.starts")] == pytest.approx(shift_c - shift_s)
    for effect in ("train.schedule", "train.starts", "train.schedule x train.starts"):
        expected[("suite", effect)] = np.mean([expected[(t, effect)] for t in TASKS])
    for key, value in expected.items():
        assert effects[key] == pytest.approx(value, abs=1e-9), key
    page = next(p for p in merged["pages"] if "Factorial analysis: train.schedule x" in p)
    effects = pd.read_csv(merged["tables"] / "factorial_effects.csv").set_index(["scope", "effect"])
    row = effects.loc[("suite", "train.starts")]
    assert f"all - last: +0.23 [{row['low']:.2f}, {row['high']:.2f}]" in page  # (0.15 + 0.30) / 2
    assert row["p_method"] == "random" and "(random, 9,999)" in page  # C(20, 10)^2 per task


def test_the_suite_diversity_page_has_the_known_ratios(merged: dict) -> None:
    curves = pd.read_csv(merged["folder"] / "curves.csv")
    runs = pd.read_csv(merged["folder"] / "runs.csv")
    per_run = curves.groupby("run")["diversity/h_dispersion"].mean()
    runs["h"] = runs["run"].map(per_run)
    means = runs.groupby(["task", "arm"])["h"].mean()
    table = pd.read_csv(merged["tables"] / "diversity.csv").set_index(["task", "arm"])
    ratios = {}
    for task in TASKS:
        for arm in ("coupled", "separate_all", "coupled_all"):
            ratios[(task, arm)] = means[(task, arm)] / means[(task, "separate")]
            assert table.loc[(task, arm), "diversity_ratio"] == pytest.approx(ratios[(task, arm)])
        assert ratios[(task, "separate_all")] == pytest.approx(DISPERSION["separate_all"])
        coupled = DISPERSION["coupled_all"] * ratios[(task, "coupled")]
        assert ratios[(task, "coupled_all")] == pytest.approx(coupled)
    for arm in ("coupled", "separate_all", "coupled_all"):
        geometric = np.exp(np.mean([np.log(ratios[(task, arm)]) for task in TASKS]))
        row = table.loc[("all tasks", arm)]
        assert row["diversity_ratio"] == pytest.approx(geometric)
        assert row["diversity_ci_low"] <= geometric <= row["diversity_ci_high"]
    assert "1.50 [" in merged["pages"][0]  # page 1: separate_all's ratio, three digits
    assert any(
        "Diversity of the actor-critic's starts per task and arm" in p for p in merged["pages"]
    )


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _build(PUBLISHED, tmp_path_factory.mktemp("published"))


def test_the_published_study_gets_the_diversity_page_and_no_factorial_page(published: dict) -> None:
    assert not any("Factorial analysis" in page for page in published["pages"])
    assert not (published["tables"] / "factorial_effects.csv").exists()
    curves = pd.read_csv(PUBLISHED / "curves.csv")
    runs = pd.read_csv(PUBLISHED / "runs.csv")
    runs["h"] = runs["run"].map(curves.groupby("run")["diversity/h_dispersion"].mean())
    means = runs.groupby(["task", "arm"])["h"].mean()
    tasks = runs["task"].unique()
    ratio = np.exp(np.mean([np.log(means[(t, "coupled")] / means[(t, "separate")]) for t in tasks]))
    assert ratio == pytest.approx(1.0016470810456541, rel=1e-12)  # what page 1 printed as "1"
    aggregates = pd.read_csv(published["tables"] / "aggregates.csv").set_index("arm")
    low, high = aggregates.loc["coupled", ["diversity_ratio_low", "diversity_ratio_high"]]
    assert f"1.00 [{low:#.3g}, {high:#.3g}]" in published["pages"][0]
    page = next(p for p in published["pages"] if "Diversity of the actor-critic" in p)
    assert "all tasks coupled 30 1.00 [" in page
