"""Pages filled top-down with paragraphs and tables, a new page started wherever the next
block would run off the current one (a table continues on the next page, its header
repeated), so no text leaves its page however many tasks or arms there are."""

from __future__ import annotations

import textwrap

from matplotlib.figure import Figure

from reports.layout import draw_table, text_page, write_lines

TOP, BOTTOM = 0.91, 0.04
ROW_HEIGHT, HEADER_HEIGHT = 0.03, 0.05  # page fractions, as draw_table lays them out
GAP = 0.03


def lines_height(lines: list[tuple[str, float, str]]) -> float:
    """The page fraction :func:`reports.layout.write_lines` takes for ``lines``."""
    height = 0.0
    for text, size, _ in lines:
        wrapped = textwrap.fill(text, width=int(1300 / size))
        height += 0.018 * size / 9 * (wrapped.count("\n") + 1) + 0.02
    return height


class Flow:
    """Pages under one title; :meth:`lines` and :meth:`table` place blocks below the last."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.pages: list[Figure] = []
        self._new_page()

    def _new_page(self) -> None:
        self.pages.append(text_page(self.title))
        self.y = TOP

    def lines(self, lines: list[tuple[str, float, str]]) -> None:
        """Paragraphs ``(text, font size, weight)``, moved whole to a new page when they do
        not fit below the last block (each paragraph separately when they fit nowhere)."""
        if not lines:
            return
        if self.y - lines_height(lines) < BOTTOM and self.y < TOP:
            self._new_page()
        if self.y - lines_height(lines) < BOTTOM:  # longer than a page: one by one
            for line in lines:
                if self.y - lines_height([line]) < BOTTOM and self.y < TOP:
                    self._new_page()
                self.y = write_lines(self.pages[-1], [line], self.y)
            return
        self.y = write_lines(self.pages[-1], lines, self.y)

    def table(self, header: list[str], rows: list[list[str]], font_size: float = 7.5) -> None:
        """A table, continued on new pages (header repeated) while its rows do not fit."""
        header_height = HEADER_HEIGHT + 0.012 * max(h.count("\n") for h in header)
        while rows:
            fits = int((self.y - BOTTOM - header_height) / ROW_HEIGHT)
            if fits < 1 or (fits < len(rows) and fits < 3 and self.y < TOP):
                self._new_page()
                continue
            chunk, rows = rows[:fits], rows[fits:]
            height = header_height + ROW_HEIGHT * len(chunk)
            axes = self.pages[-1].add_axes((0.03, self.y - height, 0.94, height))
            draw_table(axes, header, chunk, font_size)
            self.y -= height + GAP
