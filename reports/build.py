"""Build an ablation's PDF report from its MLflow runs, and log it back to the parent run; or
from a results folder that ``make export`` wrote, without any MLflow store.

    python -m reports.build --experiment cartpole-ablation [--tracking-uri URI] [--out reports/out]
    python -m reports.build --from results/cartpole-ablation [--out reports/out]

Page 1 answers the question (one table, a verdict, the power note, missing runs); then the
method page (arms, definitions, tests, pairing, confounds, setup) and the speed page (training
time per phase, median and spread, and whether runs' conditions were comparable), both from
:mod:`reports.pages` as in a suite's report; then the figures;
then an appendix with every run, the environment and the config. Besides
``<out>/<experiment>.pdf`` the figures (PNG) and tables (CSV) go to ``<out>/<experiment>/``,
and, from MLflow, all of it is logged as artifacts of the ablation's parent run under
``report/``. Both sources give the same ``AblationData`` and so the same report.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from agent.cli import ArgumentParser, first_line
from analysis import final_window, method, paired, plots, speed, stats, summary
from analysis.cautions import speed_cautions
from analysis.config_scopes import config_scopes
from analysis.decisions import AdaptiveRecord, load_adaptive
from analysis.load import AblationData, latest_ablation, load_ablation, require_finished
from analysis.results import read_results
from analysis.stats import DEFAULT_RESAMPLES
from analysis.store import READ_ERRORS, attach_report, missing_store
from reports import pages, suite
from reports.adaptive_page import adaptive_pages, front_summary
from reports.appendix import appendix_pages
from reports.factorial_page import factorial_report
from reports.layout import PAGE_SIZE, format_ratio_ci
from reports.layout import draw_table as _draw_table
from reports.layout import format_ci as _format_ci
from reports.layout import format_mean_ci as _format_mean_ci
from reports.layout import format_p as _format_p
from reports.layout import write_lines as _write_lines

SPEED_NOTE = (
    "Seconds per training iteration; training time = collect + updates (evaluation and "
    "logging excluded); 'other' is training time outside the phase timers, so each run's "
    "phases add up to its training time. Speed = WM updates / training seconds per run, the "
    "same number the console summary averages per arm. The speed ratio (as on page 1): "
    "where the arms' runs of a seed trained side by side, the geometric mean of the "
    "per-seed ratios with its 95% CI ('paired'); else mean(arm) / mean(reference) of these "
    "runs."
)


def build_report(
    experiment: str,
    tracking_uri: str | None = None,
    out_dir: str | Path = "reports/out",
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> Path:
    """The report of an ablation in MLflow: :func:`write_report`, then the PDF (with PNGs and
    CSVs) logged to the ablation's parent run.

    Args:
        experiment: the ablation's MLflow experiment name.
        tracking_uri: MLflow tracking URI; None uses MLflow's default.
        out_dir, seed, n_resamples: as :func:`write_report`.

    Raises:
        AblationDataError: unknown experiment, no child runs or none finished; nothing is
            written then.
    """
    data = load_ablation(experiment, tracking_uri)  # fails before anything is written
    require_finished(data)
    pdf_path = write_report(
        data, load_adaptive(tracking_uri, data.parent_run_id), out_dir, seed, n_resamples
    )
    if data.parent_run_id is not None:
        attach_report(tracking_uri, data.parent_run_id, pdf_path, report_files(out_dir, experiment))
    return pdf_path


def report_from_folder(
    folder: str | Path,
    out_dir: str | Path = "reports/out",
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> Path:
    """The report of an ablation exported by ``make export`` (:mod:`analysis.results`), from
    that folder alone (no MLflow store): :func:`write_report` of what it holds.

    Raises:
        AblationDataError: the folder is missing or malformed, or no run finished; nothing
            is written then.
    """
    data, adaptive = read_results(folder)
    return write_report(data, adaptive, out_dir, seed, n_resamples)


def write_report(
    data: AblationData,
    adaptive: AdaptiveRecord | None,
    out_dir: str | Path = "reports/out",
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> Path:
    """Write ``<out_dir>/<experiment>.pdf``, and its figures (PNG) and tables (CSV) under
    ``<out_dir>/<experiment>/``, from a loaded ablation, whichever its source.

    Args:
        data: the ablation (:func:`analysis.load.load_ablation` or
            :func:`analysis.results.read_results`).
        adaptive: its adaptive seeding record; None for a fixed-seed ablation.
        out_dir: output folder, created if missing.
        seed: seeds the bootstrap generator, so the same runs give the same report.
        n_resamples: bootstrap resamples per CI.

    Returns:
        Path of the PDF.

    Raises:
        AblationDataError: no run finished; nothing is written then.
    """
    pages, figures, tables = report_pages(data, adaptive, seed, n_resamples)
    files_dir = report_files(out_dir, data.experiment)
    (files_dir / "figures").mkdir(parents=True, exist_ok=True)
    (files_dir / "tables").mkdir(parents=True, exist_ok=True)
    for name, figure in figures.items():
        figure.savefig(files_dir / "figures" / f"{name}.png", dpi=150)
    for name, frame in tables.items():
        frame.to_csv(files_dir / "tables" / f"{name}.csv", index=False)
    pdf_path = Path(out_dir) / f"{_safe_name(data.experiment)}.pdf"
    _write_pdf_atomically(pdf_path, pages, title=f"Ablation report: {data.experiment}")
    return pdf_path


def report_pages(
    data: AblationData,
    adaptive: AdaptiveRecord | None,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> tuple[list[Figure], dict[str, Figure], dict[str, pd.DataFrame]]:
    """Every page of the report in order, and its figures and tables by name (what
    :func:`write_report` writes as PNG and CSV); arguments as there.

    Raises:
        AblationDataError: no run finished.
    """
    require_finished(data)
    rng = np.random.default_rng(seed)
    scores = summary.per_run_scores(data.runs, data.metrics)
    if data.multi_task:
        front, figures, tables = suite.suite_report(data, scores, rng, n_resamples, adaptive, seed)
    else:
        front, figures, tables = _single_task_report(data, scores, rng, n_resamples, adaptive)
    factorial_pages, factorial_tables = factorial_report(data, scores, seed, n_resamples)
    front += factorial_pages  # the arms' crossed factors, when they cross two or more
    tables |= factorial_tables
    if adaptive is not None:
        tables["adaptive_interims"] = adaptive.interims
    pages = [*front, *figures.values(), *appendix_pages(data, scores)]
    pages[1:1] = adaptive_pages(adaptive)  # after the answer, when SEEDS=auto
    return pages, figures, tables


def report_files(out_dir: str | Path, experiment: str) -> Path:
    """The folder of the report's figures and tables: ``<out_dir>/<experiment>/``."""
    return Path(out_dir) / _safe_name(experiment)


def _single_task_report(
    data: AblationData,
    scores: pd.DataFrame,
    rng: np.random.Generator,
    n_resamples: int,
    record: AdaptiveRecord | None = None,
) -> tuple[list[Figure], dict[str, Figure], dict[str, pd.DataFrame]]:
    """Front pages, figures and tables of a one-task ablation."""
    table = summary.compare_arms(scores, rng, data.reference, n_resamples, data.arm_order)

    finished_metrics = data.finished_metrics
    phases = summary.phase_seconds(finished_metrics)  # (n_runs, phases): seconds per iteration
    arms = list(table["arm"]) if "arm" in table else []
    speeds = speed.speed_by_arm(scores, phases, arms, data.reference)
    cautions = speed_cautions(data, scores)
    pairing = [
        paired.pairing_sentence(paired.comparison(scores, arm, data.reference), arm, data.reference)
        for arm in arms
        if arm != data.reference
    ]
    figures = {
        "learning_curves_steps": plots.learning_curves(finished_metrics, x="step"),
        "learning_curves_wall_clock": plots.learning_curves(finished_metrics, x="wall_clock"),
        "final_return": plots.final_return_distribution(scores),
        "time_breakdown": plots.time_breakdown(finished_metrics),
        "diversity": plots.diversity_curves(finished_metrics),
        "effect_sizes": plots.effect_panel(table, data.reference),
    }
    tables = {
        "answer": table,
        "runs": scores.drop(columns=["start_time", "end_time"]),
        "config": config_scopes(data).long_table(),
        "phases": summary.phase_summary(phases),
        "speed": speeds,
        "speed_cautions": pd.DataFrame({"caution": cautions}),
    }

    front = [
        _answer_page(data, table, scores, cautions, front_summary(record), pairing),
        pages.method_page(method.method_lines(data, table, phases)),
        *pages.speed_pages(speeds, data.reference, cautions, SPEED_NOTE, pairing=pairing),
    ]
    return front, figures, tables


# ----------------------------------------------------------------------------------------------
# Page 1: the answer
# ----------------------------------------------------------------------------------------------


TEST_MARKS = {"Mann-Whitney": " MW*", summary.PAIRED_TEST: " W*"}
"""A p cell's mark where another test than Welch's gave it (page 1's footnote says which)."""


def _primary_p(row: dict, column: str) -> str:
    """``p (Holm-adjusted)``, marked ``MW*`` where Mann-Whitney stood in for Welch and ``W*``
    for the paired speed's Wilcoxon signed-rank test."""
    cell = f"{_format_p(row[f'{column}_p'])} ({_format_p(row[f'{column}_p_holm'])})"
    return cell + TEST_MARKS.get(row.get(f"{column}_test"), "")


def _answer_rows(table: pd.DataFrame, reference: str) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the page-1 table (one row per arm, reference first)."""
    header = [
        "arm",
        "n seeds",
        "final return\n(mean ± 95% CI)",
        f"Δ vs {reference}\n[95% CI]",
        "Welch p\n(Holm-adj.)",
        "Mann-Whitney p",
        "Hedges' g",
        "P(improvement)\n[95% CI]",
        "speed ratio\n(updates/s) [95% CI]",
        "diversity ratio\n(h disp.) [95% CI]",
    ]
    rows = []
    for row in table.to_dict("records"):
        cells = [
            row["arm"],
            str(row["n"]),
            _format_mean_ci(row["return_mean"], row["return_ci_half"]),
        ]
        if row["arm"] == reference:
            cells += ["reference"] + ["–"] * 6
        else:
            cells += [
                _format_ci(row["diff"], row["diff_ci_low"], row["diff_ci_high"]),
                _primary_p(row, "final_return"),
                _format_p(row["mw_p"]),
                "n/a" if not np.isfinite(row["hedges_g"]) else f"{row['hedges_g']:.2f}",
                _format_ci(row["poi"], row["poi_ci_low"], row["poi_ci_high"], digits=2),
                _format_ci(row["speed_ratio"], row["speed_ci_low"], row["speed_ci_high"]),
                format_ratio_ci(
                    row["diversity_ratio"], row["diversity_ci_low"], row["diversity_ci_high"]
                ),
            ]
        rows.append(cells)
    return header, rows


def _secondary_rows(table: pd.DataFrame, reference: str) -> tuple[list[str], list[list[str]]]:
    """IQM, speed, and the other members of the Holm family (AUC, speed, diversity tests)."""
    header = [
        "arm",
        "IQM final return\n[95% CI]",
        "updates/s\n(mean of runs)",
        "return AUC p\n(Holm-adj.)",
        "updates/s p\n(Holm-adj.)",
        "h dispersion p\n(Holm-adj.)",
        "note",
    ]
    rows = []
    for row in table.to_dict("records"):
        cells = [
            row["arm"],
            _format_ci(row["iqm"], row["iqm_ci_low"], row["iqm_ci_high"]),
            "n/a" if not np.isfinite(row["updates_per_s"]) else f"{row['updates_per_s']:.3g}",
        ]
        for column in ("auc_return", "updates_per_s", "h_dispersion"):
            is_reference = row["arm"] == reference
            cells.append("–" if is_reference else _primary_p(row, column))
        note = row.get("note", "")
        cells.append(textwrap.shorten(note, 70) if isinstance(note, str) else "")
        rows.append(cells)
    return header, rows


def _span(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}-{high}"


def _answer_page(
    data: AblationData,
    table: pd.DataFrame,
    scores: pd.DataFrame,
    cautions: list[str],
    adaptive: str = "",
    pairing: Sequence[str] = (),
) -> Figure:
    figure = Figure(figsize=PAGE_SIZE)
    figure.text(0.04, 0.95, f"Ablation report: {data.experiment}", fontsize=16, weight="bold")
    reference = data.reference
    arms = ", ".join(summary.ordered_arms(data.runs["arm"], reference, data.arm_order))
    fewest, most = method.eval_points_in_window(data)
    intro = (
        f"Arms: {arms}. Reference arm: {reference}. Final return = mean eval return "
        f"over the last 10% of training steps ({_span(fewest, most)} eval "
        f"point{'' if most == 1 else 's'} per run); "
        "FINISHED runs only. Method, definitions and confounds: the Method page."
    )
    figure.text(0.04, 0.93, textwrap.fill(intro, width=150), fontsize=9, va="top")
    # Tables grow downwards from the axes top; ~0.06 of the page per header, ~0.03 per row.
    height = 0.06 + 0.03 * len(table)
    top = 0.87
    _draw_table(
        figure.add_axes((0.03, top - height, 0.94, height)), *_answer_rows(table, reference)
    )
    top -= height + 0.04
    _draw_table(
        figure.add_axes((0.06, top - height, 0.88, height)), *_secondary_rows(table, reference)
    )

    n_per_arm = int(table["n"].min()) if not table.empty else 0
    m = summary.holm_family_size(table)
    small = [note for note in table.get("ci_note", pd.Series(dtype=str)) if note]
    window = final_window.window_note(scores)
    speed_words = (
        "speed is compared in pairs where the arms' runs of a seed trained side by side "
        "(below; the updates/s p is then Wilcoxon's signed-rank, W*), else unpaired as the "
        f"other scores, its ratio then mean(arm) / mean({reference}) of per-run values"
    )
    lines = [
        ("Verdict: " + summary.verdict(table, reference), 10, "bold"),
        *([(adaptive, 9, "bold")] if adaptive else []),
        *([(window, 9, "bold")] if window else []),
        (summary.power_note(n_per_arm, m), 9, "normal"),
        (summary.problems_note(data.runs, data.planned_runs) or "All runs finished.", 9, "normal"),
        *((sentence, 8, "normal") for sentence in pairing if sentence),
        *pages.speed_caution(cautions),
        (
            "Welch's t-test is the primary test (p in brackets: Holm-adjusted; MW* = Welch "
            "undefined, exact Mann-Whitney p used); Mann-Whitney U (exact, or permutation with "
            "ties) is a robustness check; bootstrap (percentile) CIs are descriptive"
            + (
                f" and not shown below {stats.MIN_BOOTSTRAP_N} runs per arm ({small[0]})"
                if small
                else ""
            )
            + ". Arms share seeds; their learning is not paired, so the tests of return and "
            "diversity treat them as independent. Speed = WM updates / training seconds "
            f"(evaluation excluded); {speed_words}. " + summary.holm_family_sentence(m, False),
            8,
            "normal",
        ),
    ]
    _write_lines(figure, lines, top - height - 0.05)
    return figure


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------


def _safe_name(experiment: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", experiment)


def _write_pdf_atomically(path: Path, pages: Sequence[Figure], title: str) -> None:
    """Write to a temp file in the same folder, then rename: readers never see half a PDF."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    os.close(handle)
    try:
        # TrueType fonts keep the PDF's text extractable and searchable (Type 3 often is not).
        with (
            matplotlib.rc_context({"pdf.fonttype": 42}),
            PdfPages(temp_name, metadata={"Title": title}) as pdf,
        ):
            for page in pages:
                pdf.savefig(page)
        os.chmod(temp_name, 0o644)  # mkstemp makes 0600; the report is meant to be shared
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; exit code 2 with one line on stderr for bad input."""
    parser = ArgumentParser(prog="python -m reports.build", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--experiment", default=None, help="ablation (MLflow experiment) name; default: the latest"
    )
    parser.add_argument(
        "--tracking-uri", default=None, help="MLflow tracking URI (default: MLflow's)"
    )
    parser.add_argument(
        "--from",
        dest="folder",
        default=None,
        help="a results folder written by make export: build from it alone, no MLflow store",
    )
    parser.add_argument("--out", default="reports/out", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = parser.parse_args(argv)
    try:
        if args.folder is not None:
            if args.experiment is not None or args.tracking_uri is not None:
                return _fail("FROM builds from the folder alone: give it without EXPERIMENT")
            path = report_from_folder(args.folder, args.out, seed=args.seed)
        else:
            missing = missing_store(args.tracking_uri)
            if missing:
                return _fail(f"no MLflow store at {missing}; run an ablation first")
            experiment = args.experiment or latest_ablation(args.tracking_uri)
            path = build_report(experiment, args.tracking_uri, args.out, seed=args.seed)
    except READ_ERRORS as error:
        return _fail(first_line(error))
    print(path)
    return 0


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
