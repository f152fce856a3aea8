"""Pages both reports (one task and a suite) share: the method page and the speed pages.

Their text and numbers come from :mod:`analysis.method` and :mod:`analysis.speed`; this module
only lays them out.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis import speed
from analysis.cautions import CAUTIONS_WHERE
from reports.layout import draw_table, format_ci, text_page, write_lines

METHOD_TITLE = "Method: what was compared and how"
SPEED_TITLE = "Speed: training time per iteration by phase (median [min, max] over runs)"
SPEED_ROWS_PER_PAGE = 8
WARNINGS_SHOWN = 5
METHOD_TOP, METHOD_BOTTOM = 0.90, 0.03
LINE_STEP = 0.021  # page fraction per text line at the method page's font size


def method_page(lines: list[str]) -> Figure:
    """:func:`analysis.method.method_lines` (or the suite's) on one page; a line ending in
    ':' is a heading. Lines are packed closer when the text would run off the page."""
    figure = text_page(METHOD_TITLE)
    wrapped = [textwrap.fill(line, width=150, subsequent_indent="      ") for line in lines]
    height = sum(LINE_STEP * (w.count("\n") + 1) for w in wrapped) - 0.008 * lines.count("")
    scale = min(1.0, (METHOD_TOP - METHOD_BOTTOM) / height) if height > 0 else 1.0
    y = METHOD_TOP
    for line, text in zip(lines, wrapped, strict=True):
        heading = line.endswith(":") and not line.startswith(" ")
        size = (8.5 if heading else 7.5) * max(scale, 0.8)
        figure.text(0.04, y, text, fontsize=size, weight="bold" if heading else "normal", va="top")
        y -= scale * (LINE_STEP * (text.count("\n") + 1) + (0.0 if line else -0.008))
    return figure


def speed_caution(warnings: list[str]) -> list[tuple[str, float, str]]:
    """Page 1 carries the first comparability warning and where the others are: the speed
    page shows the first ``WARNINGS_SHOWN``, the full list is in :data:`CAUTIONS_WHERE`."""
    if not warnings:
        return []
    more = ""
    if 1 < len(warnings) <= WARNINGS_SHOWN:
        more = f" ({len(warnings) - 1} more on the speed page.)"
    elif len(warnings) > WARNINGS_SHOWN:
        more = (
            f" ({len(warnings) - 1} more: the speed page shows {WARNINGS_SHOWN - 1} of them, "
            f"and all {len(warnings)} are in {CAUTIONS_WHERE}.)"
        )
    return [("Speed caution: " + warnings[0] + more, 9, "bold")]


def _spread_cell(row: dict, name: str, separator: str) -> str:
    median, low, high = (row[f"{name}_{s}"] for s in speed.SUMMARIES)
    if not np.isfinite(median):
        return "n/a"
    return f"{median:.3g}{separator}[{low:.3g}, {high:.3g}]"


def speed_rows(
    table: pd.DataFrame, reference: str, by_task: bool
) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the speed table: :func:`analysis.speed.speed_by_arm` or
    :func:`analysis.speed.speed_by_task` (``by_task``: a leading task column)."""
    summarised = [c.removesuffix("_median") for c in table.columns if c.endswith("_median")]
    names = [name for name in summarised if name != "speed"]
    header = [
        *(["task"] if by_task else []),
        "arm",
        "runs",
        "updates/s\nmedian [min, max]",
        f"speed ratio\nvs {reference}",
        *names,
    ]
    rows = []
    for row in table.to_dict("records"):
        if row["arm"] == reference:
            ratio = "reference"
        else:
            low, high = row.get("speed_ratio_low", np.nan), row.get("speed_ratio_high", np.nan)
            ratio = format_ci(row["speed_ratio"], low, high)
            ratio += f"\npaired, {row['speed_pairs']} seeds" if row.get("speed_pairs", 0) else ""
        cells = [*([row["task"]] if by_task else []), row["arm"], str(row["runs"])]
        cells += [_spread_cell(row, "speed", " "), ratio]
        cells += [_spread_cell(row, name, "\n") for name in names]
        rows.append(cells)
    return header, rows


def speed_pages(
    table: pd.DataFrame,
    reference: str,
    warnings: list[str],
    note: str,
    by_task: bool = False,
    pairing: Sequence[str] = (),
) -> list[Figure]:
    """The speed table, ``SPEED_ROWS_PER_PAGE`` rows a page; under the last page's table
    ``note``, the ``pairing`` sentences (:func:`analysis.paired.pairing_sentence`, where
    speed is paired) and the comparability ``warnings`` (the first ``WARNINGS_SHOWN``, then
    a count and where all are), or that the runs trained under comparable conditions."""
    header, rows = speed_rows(table, reference, by_task)
    pages = []
    for start in range(0, max(len(rows), 1), SPEED_ROWS_PER_PAGE):
        page = text_page(SPEED_TITLE)
        chunk = rows[start : start + SPEED_ROWS_PER_PAGE]
        height = 0.08 + 0.05 * len(chunk)
        draw_table(page.add_axes((0.03, 0.88 - height, 0.94, height)), header, chunk, 7)
        pages.append((page, 0.88 - height - 0.05))
    shown = [("Caution: " + w, 9, "bold") for w in warnings[:WARNINGS_SHOWN]]
    if len(warnings) > WARNINGS_SHOWN:
        more = len(warnings) - WARNINGS_SHOWN
        shown.append((f"... and {more} more: all {len(warnings)} in {CAUTIONS_WHERE}.", 9, "bold"))
    comparable = [] if warnings else [("Runs trained under comparable conditions.", 9, "normal")]
    last, y = pages[-1]
    lines = [(note, 8, "normal"), *((s, 8, "normal") for s in pairing if s), *shown]
    write_lines(last, [*lines, *comparable], y)
    return [page for page, _ in pages]
