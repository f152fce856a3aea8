"""Reading MLflow 3.17's rendered pages (the DOM a headless Chromium dumps) for what
tests/ui_screenshots.py checks: the runs table's groups, the charts in order, the
assistant panel, and the words of docs/mlflow-ui.md each check stands for."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "docs" / "mlflow-ui.md"
"""The page of the manual whose claims on the UI the checks stand for."""
ASSISTANT_CLOSE = "mlflow.assistant.chat_panel.close"
"""The ``data-component-id`` of the assistant panel's × (in the DOM while it is open)."""
PARENT_GROUP = "Group: the answer (parent run)"


def readme_says(words: str) -> bool:
    """Whether docs/mlflow-ui.md says ``words`` (line breaks and indents read as one space)."""
    return " ".join(words.split()) in " ".join(README.read_text().split())


def assistant_open(dom: str) -> bool:
    return f'data-component-id="{ASSISTANT_CLOSE}"' in dom


def group_labels(dom: str) -> list[str]:
    """The runs table's group rows in order (``Group: <value>`` or ``Additional runs``),
    from the first rendering of each (the table lists its rows twice: pinned columns)."""
    labels = re.findall(r">(Group: [^<]+|Additional runs)<", dom)
    return list(dict.fromkeys(label.strip() for label in labels))


def chart_cards(dom: str) -> list[tuple[str, str]]:
    """Each rendered chart card's title and its DOM up to the next card's, in page order
    (the UI renders only the cards near the screen)."""
    starts = [(m.start(), m.group(1)) for m in re.finditer(r'<h4 [^>]*title="([^"]*)"', dom)]
    ends = [start for start, _ in starts[1:]] + [len(dom)]
    return [(title, dom[start:end]) for (start, title), end in zip(starts, ends, strict=True)]


def chart_kind(card: str) -> str:
    """``line`` or ``bar``: the plotly traces a chart card drew (``?`` for neither)."""
    if 'class="trace bars"' in card or "trace bars" in card:
        return "bar"
    return "line" if "trace scatter" in card else "?"


def section_names(dom: str) -> list[str]:
    """The chart sections' names in page order."""
    headers = re.findall(
        r'data-testid="experiment-view-compare-runs-section-header"[^>]*>(.{0,600})', dom
    )
    names = []
    for header in headers:
        text = " ".join(re.sub(r"<[^>]+>", " ", header).split())
        names.append(re.sub(r"\s*\(\d+\).*$", "", text))
    return names


def table_checks(dom: str, parent: str, arm_groups: list[str], reference: str) -> dict[str, bool]:
    """The runs table under the saved view: the parent's group first and unfolded (the
    row of the run named ``parent`` before any arm's group, nothing in *Additional runs*),
    then ``arm_groups`` (each ``Group: <label>``), the reference's group alone marked."""
    labels = group_labels(dom)
    group = dom.find(PARENT_GROUP)
    first_arm = min((dom.find(g) for g in arm_groups if g in dom), default=-1)
    return {
        "the parent run comes first, in its own group, unfolded": bool(labels)
        and labels[0] == PARENT_GROUP
        and "Additional runs" not in labels
        and -1 < group < dom.find(f">{parent}<", group) < first_arm,
        "one group per arm": set(arm_groups) <= set(labels),
        "the reference arm's group alone is marked (reference)": [
            label for label in labels if label.endswith("(reference)")
        ]
        == [g for g in arm_groups if g.endswith(f"{reference} (reference)")],
    }


def charts_checks(dom: str, section: str, arm_groups: list[str]) -> dict[str, bool]:
    """The charts page under the saved view: its section first, the learning curve
    ``eval/return`` a line per arm group first, then bars of the final return and speed."""
    cards = chart_cards(dom)
    titles = [title for title, _ in cards]
    curve = cards[0][1] if cards else ""
    return {
        "the charts open on the view's section": section_names(dom)[:1] == [section],
        "its first chart is the learning curve eval/return, a line chart": titles[:1]
        == ["eval/return"]
        and chart_kind(curve) == "line",
        "with a line per arm": all(g.removeprefix("Group: ") in curve for g in arm_groups),
        "then bars of final/eval_return and final/updates_per_s": [
            (title, chart_kind(card)) for title, card in cards[1:3]
        ]
        == [("final/eval_return", "bar"), ("final/updates_per_s", "bar")],
    }
