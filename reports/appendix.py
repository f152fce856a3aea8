"""The report's appendix: A, every run (the table continues over as many pages as it
needs); B, the environment and the config, split into what every run shares and what
differs by task, by arm or by run (:mod:`analysis.config_scopes`)."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis import final_window, summary
from analysis.config_scopes import ConfigScopes, config_scopes
from analysis.load import AblationData
from reports.layout import draw_table, rows_that_fit, table_row_height, text_page

ENVIRONMENT_TAGS = ("hardware", "device", "torch_version", "git_commit", "env", "preset")
RUN_TABLE_TOP, RUN_TABLE_BOTTOM = 0.91, 0.04
CONFIG_LINES_PER_COLUMN = 48
CONFIG_TOP, CONFIG_BOTTOM = 0.9, 0.04
TEXT_LINE = 0.0155  # page fraction per 7.5 pt line (1.2 line spacing on 8.27 in)


def appendix_pages(data: AblationData, scores: pd.DataFrame) -> list[Figure]:
    """Appendix A and B. ``scores``: :func:`analysis.summary.per_run_scores` of every run."""
    return [*run_pages(data, scores), *config_pages(data)]


def format_seconds(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "n/a"
    if seconds >= 3600:
        return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m"
    if seconds >= 60:
        return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"
    return f"{seconds:.1f} s"


def run_rows(data: AblationData, scores: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and one row per run, arms in report order; ``note`` says where a final return
    is an earlier eval point's (:func:`analysis.summary.window_cell`)."""
    header = ["run", "arm", "status", "seed", "steps", "final return", "wall-clock", "note"]
    rows = [
        [
            row["run_name"],
            row["arm"],
            row["status"],
            str(row["seed"]),
            "n/a" if pd.isna(row["final_step"]) else f"{int(row['final_step']):,}",
            "n/a" if pd.isna(row["final_return"]) else f"{row['final_return']:.1f}",
            format_seconds(row["wall_clock"]),
            final_window.window_cell(row) if row["status"] == "FINISHED" else "",
        ]
        for arm in summary.ordered_arms(scores["arm"], data.reference, data.arm_order)
        for _, row in scores[scores["arm"] == arm].iterrows()
    ]
    return header, rows


def run_pages(data: AblationData, scores: pd.DataFrame) -> list[Figure]:
    """Appendix A: every run, as many rows a page as fit (:func:`reports.layout.rows_that_fit`)."""
    header, rows = run_rows(data, scores)
    per_page = rows_that_fit(RUN_TABLE_TOP - RUN_TABLE_BOTTOM)
    count = max(-(-len(rows) // per_page), 1)
    pages = []
    for index in range(count):
        chunk = rows[index * per_page : (index + 1) * per_page]
        title = f"Appendix A: every run ({len(rows)} runs; page {index + 1} of {count})"
        page = text_page(title)
        height = RUN_TABLE_TOP - RUN_TABLE_BOTTOM
        draw_table(page.add_axes((0.03, RUN_TABLE_BOTTOM, 0.94, height)), header, chunk)
        pages.append(page)
    return pages


def _environment_lines(data: AblationData) -> list[str]:
    return [
        f"{tag}: {', '.join(sorted(set(data.runs[tag].astype(str))))}"
        for tag in ENVIRONMENT_TAGS
        if tag in data.runs
    ]


def config_pages(data: AblationData) -> list[Figure]:
    """Appendix B: the environment; the config keys that differ, as one table per scope
    (key x task, key x arm, ...) and the per-run ones; then every key all runs share."""
    scopes = config_scopes(data)
    blocks: list[tuple[str, object]] = [
        ("text", ["Environment (distinct values over all runs):", *_environment_lines(data), ""])
    ]
    if scopes.runs:
        blocks.append(("text", [_config_intro(scopes), ""]))
        for scope, frame in scopes.by.items():
            blocks.append(("text", [f"Differs by {scope}:"]))
            blocks.append(("table", frame))
        if scopes.per_run:
            lines = [f"{key}: {text}" for key, text in sorted(scopes.per_run.items())]
            blocks.append(("text", ["Differs by run:", *lines, ""]))
        common_title = f"Same in every run ({len(scopes.common)} keys):"
    else:
        common_title = "Config: params of one run (the runs' own configs were not recorded):"
    pages = _flow(blocks)
    common = [f"{key} = {value}" for key, value in sorted(scopes.common.items())]
    pages += _columns([common_title, *(common or ["(none)"])])
    return pages


def _config_intro(scopes: ConfigScopes) -> str:
    differing = sum(len(frame) for frame in scopes.by.values()) + len(scopes.per_run)
    return (
        f"Config of the {scopes.runs} runs: {differing} keys differ between them (below, by "
        f"what they differ with); the other {len(scopes.common)} are the same in every run "
        "(next page)."
    )


def _flow(blocks: list[tuple[str, object]]) -> list[Figure]:
    """Text lines and tables down the page from ``CONFIG_TOP``, a new page where the next
    block (or a table's next rows) would pass ``CONFIG_BOTTOM``."""
    title = "Appendix B: environment and config"
    pages = [text_page(title)]
    y = CONFIG_TOP
    for kind, content in blocks:
        if kind == "text":
            lines = [textwrap.shorten(line, 170, placeholder=" ...") for line in content]
            if y - TEXT_LINE * len(lines) < CONFIG_BOTTOM:
                pages.append(text_page(title + " (continued)"))
                y = CONFIG_TOP
            pages[-1].text(0.04, y, "\n".join(lines), fontsize=7.5, family="monospace", va="top")
            y -= TEXT_LINE * len(lines)
            continue
        frame: pd.DataFrame = content  # type: ignore[assignment]
        header = ["key", *map(str, frame.columns)]
        rows = [[str(key), *map(str, frame.loc[key])] for key in frame.index]
        while rows:
            fit = rows_that_fit(y - CONFIG_BOTTOM)
            if y - CONFIG_BOTTOM < 2 * table_row_height():
                pages.append(text_page(title + " (continued)"))
                y = CONFIG_TOP
                continue
            chunk, rows = rows[:fit], rows[fit:]
            height = table_row_height() * (len(chunk) + 1)
            width = min(0.92, 0.2 + 0.16 * len(frame.columns))
            draw_table(pages[-1].add_axes((0.04, y - height, width, height)), header, chunk)
            y -= height + 0.02
    return pages


def _columns(lines: list[str]) -> list[Figure]:
    """Lines in two columns of ``CONFIG_LINES_PER_COLUMN``, as many pages as needed."""
    pages = []
    per_page = 2 * CONFIG_LINES_PER_COLUMN
    for start in range(0, len(lines), per_page):
        page = text_page("Appendix B: environment and config (continued)")
        chunk = lines[start : start + per_page]
        for column, x in enumerate((0.04, 0.52)):
            block = chunk[column * CONFIG_LINES_PER_COLUMN : (column + 1) * CONFIG_LINES_PER_COLUMN]
            text = "\n".join(textwrap.shorten(line, 90, placeholder=" ...") for line in block)
            page.text(x, CONFIG_TOP, text, fontsize=7.5, family="monospace", va="top")
        pages.append(page)
    return pages
