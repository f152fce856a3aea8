"""Page layout shared by the report's pages: tables, wrapped text and number formats."""

from __future__ import annotations

import textwrap

import numpy as np
from matplotlib.figure import Figure
from matplotlib.table import Table

PAGE_SIZE = (11.69, 8.27)  # A4 landscape, inches
ROW_SCALE = 1.5
"""draw_table's row height over matplotlib's own."""


def table_row_height(page_height: float = PAGE_SIZE[1]) -> float:
    """Page fraction of one table row (one text line) as :func:`draw_table` draws it:
    matplotlib sizes rows from ``Table.FONTSIZE``, whatever font size is set, in inches
    (its axes-fraction height times the axes' height), and draw_table scales them by
    :data:`ROW_SCALE`; the header row is as many rows tall as its lines."""
    return Table.FONTSIZE / 72.0 * 1.2 * ROW_SCALE / page_height


def rows_that_fit(height: float, header_lines: int = 1) -> int:
    """How many one-line body rows of :func:`draw_table` fit in ``height`` (page fraction)
    under a header of ``header_lines`` lines; at least 1."""
    return max(int(height / table_row_height()) - header_lines, 1)


def format_p(p: float) -> str:
    if not np.isfinite(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def format_ci(
    value: float, low: float, high: float, digits: int = 3, missing: str | None = None
) -> str:
    """``value [low, high]``; the value alone where there is no interval, followed by
    ``[missing]`` when given (the page then says why)."""
    if not np.isfinite(value):
        return "n/a"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{value:.{digits}g}" + (f" [{missing}]" if missing else "")
    return f"{value:.{digits}g} [{low:.{digits}g}, {high:.{digits}g}]"


def significant(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits, trailing zeros kept: ``1.00`` for 1.0016
    (``:.3g`` would print ``1``, hiding that the value was measured to that precision)."""
    if not np.isfinite(value):
        return "n/a"
    if abs(value) >= 10**digits:  # whole units say it plainly (1344, not 1.34e+03)
        return f"{value:.0f}"
    text = f"{value:#.{digits}g}"
    return text.rstrip(".") if "e" not in text else text


def format_ratio_ci(value: float, low: float, high: float, missing: str | None = None) -> str:
    """A ratio with its interval, each to three significant digits: ``1.00 [0.981, 1.02]``;
    the value alone where there is no interval, followed by ``[missing]`` when given."""
    if not np.isfinite(value):
        return "n/a"
    if not (np.isfinite(low) and np.isfinite(high)):
        return significant(value) + (f" [{missing}]" if missing else "")
    return f"{significant(value)} [{significant(low)}, {significant(high)}]"


def format_mean_ci(mean: float, half: float) -> str:
    """``mean ± half``; where there is no interval (a single run) the page says so."""
    if not np.isfinite(mean):
        return "n/a"
    if not np.isfinite(half):
        return f"{mean:.1f} (1 run, no CI)"
    return f"{mean:.1f} ± {half:.1f}"


def draw_table(ax, header: list[str], rows: list[list[str]], font_size: float = 7.5) -> None:
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
    drawn.scale(1.0, ROW_SCALE)
    for (row_index, _), cell in drawn.get_celld().items():
        cell.set_linewidth(0.4)
        if row_index == 0:
            cell.set_text_props(fontweight="bold")
            cell.set_facecolor("#e8e8e8")
            cell.set_height(cell.get_height() * max(h.count("\n") + 1 for h in header))


def write_lines(figure: Figure, lines: list[tuple[str, float, str]], y: float) -> float:
    """Wrapped paragraphs from ``y`` down; returns the y below the last one."""
    for text, size, weight in lines:
        wrapped = textwrap.fill(text, width=int(1300 / size))
        figure.text(0.04, y, wrapped, fontsize=size, weight=weight, va="top")
        y -= 0.018 * size / 9 * (wrapped.count("\n") + 1) + 0.02
    return y


def text_page(title: str) -> Figure:
    figure = Figure(figsize=PAGE_SIZE)
    figure.text(0.04, 0.95, title, fontsize=14, weight="bold")
    return figure
