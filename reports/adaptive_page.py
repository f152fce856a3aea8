"""The report's adaptive seeding page: the procedure, each comparison's decision, the interim
it was taken at and the seeds used, then every interim's statistics."""

from __future__ import annotations

from matplotlib.figure import Figure

from analysis.decisions import AdaptiveRecord
from analysis.sequential import assignments, exact_interims
from reports.layout import PAGE_SIZE, write_lines

DECISION_WORDS = {
    "better": "better than {ref}",
    "worse": "worse than {ref}",
    "no difference": "no difference detectable at this budget",
    "continue": "undecided (interims still to run)",
}


def adaptive_pages(record: AdaptiveRecord | None) -> list[Figure]:
    """One page for an adaptive ablation (``--seeds auto``; ``record`` from
    :func:`analysis.decisions.load_adaptive` or a results folder); none for a fixed-seed one
    (``record`` None)."""
    return [] if record is None else [_page(record)]


def front_summary(record: AdaptiveRecord | None) -> str:
    """Page 1's sentence on adaptive seeding: the status, each arm's decision and the seeds
    it took; empty for a fixed-seed ablation. E.g. ``Adaptive seeding (decided at interim 2
    of 2, alpha 0.05, on final/eval_return): coupled: no difference from separate detectable
    at this budget (4 of 4 seeds). Reference separate: 4 seeds.``"""
    if record is None:
        return ""
    ref = record.rule["reference"]
    most = int(record.rule["interims"]) * int(record.rule["interim"])
    outcome = record.outcome()
    if outcome.empty:
        decided = "no interim finished yet"
    else:
        decided = "; ".join(
            f"{row.arm}: {_decision_words(row.decision, ref)} ({row.seeds} of {most} seeds)"
            for row in outcome.itertuples()
        )
    used = int(record.interims["seeds"].max()) if len(record.interims) else 0
    return (
        f"Adaptive seeding ({record.status}, alpha {record.rule['alpha']}, on "
        f"{record.rule['metric']}): {decided}. Reference {ref}: {used} seeds. The adaptive "
        "seeding page gives the procedure and every interim."
    )


def _decision_words(decision: str, ref: str) -> str:
    if decision == "no difference":
        return f"no difference from {ref} detectable at this budget"
    return DECISION_WORDS.get(decision, decision).format(ref=ref)


def procedure(record: AdaptiveRecord) -> str:
    """The decision rule in words, from the params recorded before the first run."""
    rule = record.rule
    return (
        f"Seeds were run in interims of {rule['interim']} per arm, at most {rule['max_seeds']} "
        f"per arm ({rule['interims']} interims). After each interim a group-sequential "
        f"permutation test (AdaStop, Mathieu et al., TMLR 2024) compared every arm with "
        f"{rule['reference']} on {rule['metric']}: the statistic is the sum over interims of "
        "the difference of the interim means, its null distribution comes from permuting each "
        "interim's runs between the two arms, and the boundaries spend the family-wise error "
        f"rate alpha = {rule['alpha']} over all comparisons linearly over the interims "
        f"({rule['spending']}; permutation generator seed {rule['permutation_seed']}). An arm "
        "stops getting seeds once its comparison is decided; comparisons still open after the "
        "last interim have no difference detectable at this budget. The rule was fixed before "
        "the first run (params of the parent run)."
    )


def enumeration(record: AdaptiveRecord) -> str:
    """Which interims' null distributions were enumerated exactly and which came from random
    permutation sequences, from the recorded rule (:func:`analysis.sequential.exact_interims`;
    an ablation recorded without ``adaptive.enumeration`` was tested by the older rule)."""
    rule = record.rule
    n, interims, most = int(rule["interim"]), int(rule["interims"]), int(rule["permutations"])
    per_interim = "enumeration" in rule
    arms = len(set(record.interims["arm"])) if len(record.interims) else 1
    text = "Permutations: " + _plan_words(n, interims, most, 2, per_interim)
    if arms > 1:
        text += f"; for the tests of all {arms} arms at once (closed testing), " + _plan_words(
            n, interims, most, arms + 1, per_interim
        )
    return text + "."


def _plan_words(n: int, interims: int, most: int, groups: int, per_interim: bool) -> str:
    counts = [assignments(groups, n) ** (k + 1) for k in range(interims)]  # sequences by k
    plan = exact_interims(n, interims, most, groups, per_interim)
    if not per_interim:
        if plan[0]:
            return f"every interim enumerated exactly (all {counts[-1]:,} sequences)"
        return (
            f"{most:,} random permutation sequences at every interim (the rule this ablation was "
            f"recorded under enumerated only when all {counts[-1]:,} sequences of its "
            f"{interims} interims fit in {most:,})"
        )
    exact = [k + 1 for k in range(interims) if plan[k]]
    drawn = [k + 1 for k in range(interims) if not plan[k]]
    parts = []
    if exact:
        what = "splits" if exact[-1] == 1 else "sequences of splits"
        parts.append(
            f"interim {_span(exact)} enumerated exactly (all {counts[exact[-1] - 1]:,} {what})"
        )
    if drawn:
        parts.append(
            f"interim {_span(drawn)} from {most:,} random permutation sequences (its "
            f"{counts[drawn[0] - 1]:,} sequences exceed {most:,})"
        )
    return "; ".join(parts)


def _span(numbers: list[int]) -> str:
    return str(numbers[0]) if len(numbers) == 1 else f"{numbers[0]}-{numbers[-1]}"


def _page(record: AdaptiveRecord) -> Figure:
    figure = Figure(figsize=PAGE_SIZE)
    figure.text(0.04, 0.95, "Adaptive seeding", fontsize=16, weight="bold")
    ref = record.rule["reference"]
    most = int(record.rule["interims"]) * int(record.rule["interim"])  # MAX_SEEDS, whole interims
    used = int(record.interims["seeds"].max()) if len(record.interims) else 0
    status = (
        f"Status: {record.status}. Reference {ref}: {used} of {most} seeds. Differences: arm "
        f"minus reference, in {record.rule['metric']}."
    )
    lines = [(status, 10, "normal"), (procedure(record), 8.5, "normal")]
    bottom = write_lines(figure, [*lines, (enumeration(record), 8.5, "bold")], 0.925)
    outcome = record.outcome()
    rows = [
        [
            row.arm,
            DECISION_WORDS.get(row.decision, row.decision).format(ref=ref),
            f"{row.interim} of {record.rule['interims']}",
            f"{row.seeds} of {most}",
        ]
        for row in outcome.itertuples()
    ]
    top = bottom - 0.01
    if rows:
        height = 0.05 + 0.035 * len(rows)
        _table(figure, top, height, ["arm", f"decision vs {ref}", "at interim", "seeds used"], rows)
        top -= height + 0.05
    steps = [
        [
            str(r.interim),
            r.arm,
            str(r.seeds),
            f"{r.mean_difference:+.3g}",
            f"{r.boundary_on_mean_difference:.3g}",
            r.decision,
        ]
        for r in record.interims.itertuples()
    ]
    if steps:
        figure.text(0.04, top + 0.01, "Every interim", fontsize=10, weight="bold")
        header = [
            "interim",
            "arm",
            "seeds per arm",
            "mean difference",
            "boundary on |diff.|",
            "decision",
        ]
        _table(figure, top - 0.01, min(0.05 + 0.03 * len(steps), top - 0.05), header, steps)
    return figure


def _table(figure: Figure, top: float, height: float, header: list[str], rows: list) -> None:
    ax = figure.add_axes((0.04, top - height, 0.92, height))
    ax.axis("off")
    drawn = ax.table(cellText=rows, colLabels=header, loc="upper center", cellLoc="center")
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(8)
    for (row, _), cell in drawn.get_celld().items():
        cell.set_linewidth(0.4)
        if row == 0:
            cell.set_text_props(fontweight="bold")
            cell.set_facecolor("#e8e8e8")
