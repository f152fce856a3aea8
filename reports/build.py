"""Build an ablation's PDF report from its MLflow runs, and log it back to the parent run.

    python -m reports.build --experiment cartpole-ablation [--tracking-uri URI] [--out reports/out]

Page 1 answers the question (one table, a verdict, the power note, missing runs); then the
figures; then an appendix with every run, the environment and the config. Besides
``<out>/<experiment>.pdf`` the figures (PNG) and tables (CSV) go to ``<out>/<experiment>/``,
and all of it is logged as artifacts of the ablation's parent run under ``report/``.
"""

from __future__ import annotations

import argparse
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
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from analysis import plots, summary
from analysis.load import AblationData, AblationDataError, latest_ablation, load_ablation
from analysis.stats import DEFAULT_RESAMPLES
from reports.adaptive_page import adaptive_pages

PAGE_SIZE = (11.69, 8.27)  # A4 landscape, inches
ENVIRONMENT_TAGS = ("hardware", "device", "torch_version", "git_commit", "env", "preset")
RUNS_PER_PAGE = 32
CONFIG_LINES_PER_COLUMN = 48


def build_report(
    experiment: str,
    tracking_uri: str | None = None,
    out_dir: str | Path = "reports/out",
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> Path:
    """Write ``<out_dir>/<experiment>.pdf`` and log it (with PNGs and CSVs) to the parent run.

    Args:
        experiment: the ablation's MLflow experiment name.
        tracking_uri: MLflow tracking URI; None uses MLflow's default.
        out_dir: output folder, created if missing.
        seed: seeds the bootstrap generator, so the same runs give the same report.
        n_resamples: bootstrap resamples per CI.

    Returns:
        Path of the PDF.

    Raises:
        AblationDataError: unknown experiment or no child runs; nothing is written then.
    """
    data = load_ablation(experiment, tracking_uri)  # fails before anything is written
    rng = np.random.default_rng(seed)
    scores = summary.per_run_scores(data.runs, data.metrics)
    table = summary.compare_arms(scores, rng, n_resamples=n_resamples)

    finished_metrics = data.finished_metrics
    figures = {
        "learning_curves_steps": plots.learning_curves(finished_metrics, x="step"),
        "learning_curves_wall_clock": plots.learning_curves(finished_metrics, x="wall_clock"),
        "final_return": plots.final_return_distribution(scores),
        "time_breakdown": plots.time_breakdown(finished_metrics),
        "diversity": plots.diversity_curves(finished_metrics),
        "effect_sizes": plots.effect_panel(table),
    }
    tables = {
        "answer": table,
        "runs": scores.drop(columns=["start_time", "end_time"]),
        "config": pd.DataFrame(sorted(data.params.items()), columns=["param", "value"]),
    }

    out_dir = Path(out_dir)
    files_dir = out_dir / _safe_name(experiment)
    (files_dir / "figures").mkdir(parents=True, exist_ok=True)
    (files_dir / "tables").mkdir(parents=True, exist_ok=True)
    for name, figure in figures.items():
        figure.savefig(files_dir / "figures" / f"{name}.png", dpi=150)
    for name, frame in tables.items():
        frame.to_csv(files_dir / "tables" / f"{name}.csv", index=False)

    pages = [_answer_page(data, table), *figures.values(), *_appendix_pages(data, scores)]
    pages[1:1] = adaptive_pages(data, tracking_uri)  # after the answer, when SEEDS=auto
    pdf_path = out_dir / f"{_safe_name(experiment)}.pdf"
    _write_pdf_atomically(pdf_path, pages, title=f"Ablation report: {experiment}")

    if data.parent_run_id is not None:
        _log_artifacts(tracking_uri, data.parent_run_id, pdf_path, files_dir)
    return pdf_path


# ----------------------------------------------------------------------------------------------
# Page 1: the answer
# ----------------------------------------------------------------------------------------------


def _format_p(p: float) -> str:
    if not np.isfinite(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _format_ci(value: float, low: float, high: float, digits: int = 3) -> str:
    if not np.isfinite(value):
        return "n/a"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{value:.{digits}g}"
    return f"{value:.{digits}g} [{low:.{digits}g}, {high:.{digits}g}]"


def _answer_rows(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the page-1 table (one row per arm, reference first)."""
    reference = summary.REFERENCE_ARM
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
            f"{row['return_mean']:.1f} ± {row['return_ci_half']:.1f}",
        ]
        if row["arm"] == reference:
            cells += ["reference"] + ["–"] * 6
        else:
            cells += [
                _format_ci(row["diff"], row["diff_ci_low"], row["diff_ci_high"]),
                f"{_format_p(row['final_return_p'])} ({_format_p(row['final_return_p_holm'])})",
                _format_p(row["mw_p"]),
                "n/a" if not np.isfinite(row["hedges_g"]) else f"{row['hedges_g']:.2f}",
                _format_ci(row["poi"], row["poi_ci_low"], row["poi_ci_high"], digits=2),
                _format_ci(row["speed_ratio"], row["speed_ci_low"], row["speed_ci_high"]),
                _format_ci(
                    row["diversity_ratio"], row["diversity_ci_low"], row["diversity_ci_high"]
                ),
            ]
        rows.append(cells)
    return header, rows


def _secondary_rows(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """IQM and the other members of the Holm family (AUC, speed, diversity Welch tests)."""
    header = [
        "arm",
        "IQM final return\n[95% CI]",
        "return AUC Welch p\n(Holm-adj.)",
        "updates/s Welch p\n(Holm-adj.)",
        "h dispersion Welch p\n(Holm-adj.)",
        "note",
    ]
    rows = []
    for row in table.to_dict("records"):
        cells = [row["arm"], _format_ci(row["iqm"], row["iqm_ci_low"], row["iqm_ci_high"])]
        for column in ("auc_return", "updates_per_s", "h_dispersion"):
            raw, adjusted = row.get(f"{column}_p", np.nan), row.get(f"{column}_p_holm", np.nan)
            is_reference = row["arm"] == summary.REFERENCE_ARM
            cells.append("–" if is_reference else f"{_format_p(raw)} ({_format_p(adjusted)})")
        note = row.get("note", "")
        cells.append(note if isinstance(note, str) else "")
        rows.append(cells)
    return header, rows


def _draw_table(ax, header: list[str], rows: list[list[str]], font_size: float = 7.5) -> None:
    """A plain table filling the axes width; columns sized by their longest line of text."""
    ax.axis("off")
    if not rows:
        return
    lengths = [
        max(len(line) for text in [name, *column] for line in str(text).split("\n")) + 2
        for name, *column in zip(header, *rows, strict=True)
    ]
    widths = [length / sum(lengths) for length in lengths]
    drawn = ax.table(
        cellText=rows, colLabels=header, colWidths=widths, loc="upper center", cellLoc="center"
    )
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(font_size)
    drawn.scale(1.0, 1.5)
    for (row_index, _), cell in drawn.get_celld().items():
        cell.set_linewidth(0.4)
        if row_index == 0:
            cell.set_text_props(fontweight="bold")
            cell.set_facecolor("#e8e8e8")
            cell.set_height(cell.get_height() * max(h.count("\n") + 1 for h in header))


def _answer_page(data: AblationData, table: pd.DataFrame) -> Figure:
    figure = Figure(figsize=PAGE_SIZE)
    figure.text(0.04, 0.95, f"Ablation report: {data.experiment}", fontsize=16, weight="bold")
    arms = ", ".join(summary.ordered_arms(data.runs["arm"]))
    figure.text(
        0.04,
        0.915,
        f"Arms: {arms}. Reference arm: {summary.REFERENCE_ARM}. Final return = mean eval return "
        "over the last 10% of training steps; FINISHED runs only.",
        fontsize=9,
    )
    # Tables grow downwards from the axes top; ~0.06 of the page per header, ~0.03 per row.
    height = 0.06 + 0.03 * len(table)
    top = 0.89
    _draw_table(figure.add_axes((0.03, top - height, 0.94, height)), *_answer_rows(table))
    top -= height + 0.04
    _draw_table(figure.add_axes((0.12, top - height, 0.76, height)), *_secondary_rows(table))

    n_per_arm = int(table["n"].min()) if not table.empty else 0
    lines = [
        ("Verdict: " + summary.verdict(table), 11, "bold"),
        (summary.power_note(n_per_arm), 9, "normal"),
        (summary.problems_note(data.runs) or "All runs finished.", 9, "normal"),
        (
            "Welch's t-test is the primary test (p in brackets: Holm-adjusted over all arms x "
            "{final return, return AUC, updates/s, h dispersion}); Mann-Whitney U is a "
            "robustness check; bootstrap (percentile) CIs are descriptive. Ratios are "
            f"mean(arm) / mean({summary.REFERENCE_ARM}) of per-run means over training.",
            8,
            "normal",
        ),
    ]
    y = top - height - 0.05
    for text, size, weight in lines:
        wrapped = textwrap.fill(text, width=int(1300 / size))
        figure.text(0.04, y, wrapped, fontsize=size, weight=weight, va="top")
        y -= 0.018 * size / 9 * (wrapped.count("\n") + 1) + 0.02
    return figure


# ----------------------------------------------------------------------------------------------
# Appendix: runs, environment, config
# ----------------------------------------------------------------------------------------------


def _format_seconds(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "n/a"
    if seconds >= 3600:
        return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m"
    if seconds >= 60:
        return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"
    return f"{seconds:.1f} s"


def _text_page(title: str) -> Figure:
    figure = Figure(figsize=PAGE_SIZE)
    figure.text(0.04, 0.95, title, fontsize=14, weight="bold")
    return figure


def _appendix_pages(data: AblationData, scores: pd.DataFrame) -> list[Figure]:
    pages = []
    header = ["run", "arm", "status", "seed", "steps", "final return", "wall-clock"]
    rows = [
        [
            row.run_name,
            row.arm,
            row.status,
            str(row.seed),
            "n/a" if pd.isna(row.final_step) else f"{int(row.final_step):,}",
            "n/a" if pd.isna(row.final_return) else f"{row.final_return:.1f}",
            _format_seconds(row.wall_clock),
        ]
        for arm in summary.ordered_arms(scores["arm"])
        for row in scores[scores["arm"] == arm].itertuples()
    ]
    for start in range(0, len(rows), RUNS_PER_PAGE):
        page = _text_page("Appendix A: every run")
        _draw_table(
            page.add_axes((0.04, 0.05, 0.92, 0.86)), header, rows[start : start + RUNS_PER_PAGE]
        )
        pages.append(page)

    environment = [
        f"{tag}: {', '.join(sorted(set(data.runs[tag].astype(str))))}" for tag in ENVIRONMENT_TAGS
    ]
    config = [f"{key} = {value}" for key, value in sorted(data.params.items())]
    source = data.finished_runs if not data.finished_runs.empty else data.runs
    intro = [
        "Environment (distinct values over all runs):",
        *environment,
        "",
        f"Config: params of run {source['run_name'].iloc[0]} (arm and seed differ per run):",
    ]
    lines = intro + (config or ["(no params logged)"])
    per_page = 2 * CONFIG_LINES_PER_COLUMN
    for start in range(0, len(lines), per_page):
        page = _text_page("Appendix B: environment and config")
        chunk = lines[start : start + per_page]
        for column, x in enumerate((0.04, 0.52)):
            block = chunk[column * CONFIG_LINES_PER_COLUMN : (column + 1) * CONFIG_LINES_PER_COLUMN]
            text = "\n".join(textwrap.shorten(line, 90, placeholder=" ...") for line in block)
            page.text(x, 0.9, text, fontsize=7.5, family="monospace", va="top")
        pages.append(page)
    return pages


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


def _log_artifacts(
    tracking_uri: str | None, parent_run_id: str, pdf_path: Path, files_dir: Path
) -> None:
    client = MlflowClient(tracking_uri=tracking_uri)
    client.log_artifact(parent_run_id, str(pdf_path), artifact_path="report")
    for sub in ("figures", "tables"):
        client.log_artifacts(parent_run_id, str(files_dir / sub), artifact_path=f"report/{sub}")


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; exit code 2 with one line on stderr for bad input."""
    parser = argparse.ArgumentParser(
        prog="python -m reports.build", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--experiment", default=None, help="ablation (MLflow experiment) name; default: the latest"
    )
    parser.add_argument(
        "--tracking-uri", default=None, help="MLflow tracking URI (default: MLflow's)"
    )
    parser.add_argument("--out", default="reports/out", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = parser.parse_args(argv)
    try:
        experiment = args.experiment or latest_ablation(args.tracking_uri)
        path = build_report(experiment, args.tracking_uri, args.out, seed=args.seed)
    except (AblationDataError, MlflowException) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
