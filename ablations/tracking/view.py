"""What MLflow's UI shows of an ablation: its saved view, the descriptions of the experiment
and of the parent run, and the address that opens them.

The view (read from the installed MLflow 3.17's UI, ``mlflow/server/js``): an experiment
tag ``mlflow.sharedViewState.<key>`` holds JSON of the runs page's state, opened by the URL
parameter ``viewStateShareKey=<key>``. The UI takes from it the search facets
(``orderByKey``, ``orderByAsc``, ...) and the page's state (``selectedColumns``,
``columnOrder``, ``columnWidths``, ``groupBy``, ``runsHiddenMode``, ``compareRunCharts``,
``compareRunSections``, ``isAccordionReordered``, ...); ``runsPinned`` and ``runsHidden``
it leaves out, so a view cannot pin a run. ``compareRunsMode=CHART`` in the URL opens the
same view on its charts. Charts the view lists come first, in its order, in sections kept
in its order (``isAccordionReordered``); the UI adds a chart for every other metric after
them. A run whose group-by tag is unset falls into the UI's folded *Additional runs*
group, so the parent run carries the tag too, with a group of its own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mlflow.tracking import MlflowClient

from ablations.plan.spec import AblationSpec
from analysis.load import recent_ablations
from analysis.store import missing_store

NOTE = "mlflow.note.content"
"""The tag MLflow's UI shows, as markdown, as an experiment's or a run's description."""
GROUP_TAG = "ui.group"
"""The run tag the view groups by: :func:`group_label` on a child, :data:`PARENT_GROUP` on
the parent (the arm's contract for analysis stays the ``arm`` and ``task`` tags)."""
REFERENCE_MARK = " (reference)"
PARENT_GROUP = "the answer (parent run)"
"""The parent's group: the view sorts runs by start, so the parent, started first, heads
the table in a group of its own instead of the folded *Additional runs*."""
TABLE_COLUMNS = "`final/eval_return`, `final/updates_per_s`"
ARMS_VIEW_KEY = "arms"
ARMS_VIEW_TAG = f"mlflow.sharedViewState.{ARMS_VIEW_KEY}"
"""The experiment tag holding the view (:func:`arms_view`), opened by :func:`ui_path`."""
ML_WORKFLOW = "workflowType=machine_learning"
"""The UI's model-training pages (MLflow 3 shows runs as GenAI evaluations without it)."""
LEARNING_CURVE = "eval/return"
FINAL_RETURN = "final/eval_return"
SPEED = "final/updates_per_s"
CHART_SECTION = "Learning curve and final return"
RUN_NAME_COLUMN = "attributes.`Run Name`"
# Pixels: the run-name column wide enough for "Group: cartpole/separate (reference)", the
# date and duration columns narrowed so that the metric columns stay on screen.
COLUMN_WIDTHS = {RUN_NAME_COLUMN: 300, "runDateAndNestInfo": 135, "duration": 90}


def group_label(spec: AblationSpec, task: str, arm: str) -> str:
    """A child's group in the view: its arm (``<task>/<arm>`` over several tasks, a group
    mixing tasks would average unlike returns), marked `` (reference)`` on the arm every
    other is compared with."""
    name = f"{task}/{arm}" if spec.multi_task else arm
    return name + (REFERENCE_MARK if arm == spec.reference else "")


def arms_view(spec: AblationSpec) -> str:
    """The saved view (JSON of the UI's state). Table: the runs grouped by
    :data:`GROUP_TAG` (the parent's group first), with each group's mean final return and
    updates/s and each run's seed. Charts: first the learning curve ``eval/return`` against
    env steps (each group's mean with its band over seeds), then bars of each group's mean
    ``final/eval_return`` and ``final/updates_per_s`` (one point per run: a line chart of
    it would show a lone dot)."""
    tags = ["task", "arm"] if spec.multi_task else ["arm"]
    columns = [
        f"metrics.`{FINAL_RETURN}`",
        f"metrics.`{SPEED}`",
        "tags.`seed`",
        *(f"tags.`{tag}`" for tag in tags),
    ]
    order = [RUN_NAME_COLUMN, "runDateAndNestInfo", "duration", *columns]
    return json.dumps(
        {
            "selectedColumns": columns,
            "columnOrder": order,  # the UI applies widths only to the columns it orders
            "columnWidths": COLUMN_WIDTHS,
            "groupBy": {
                "aggregateFunction": "average",
                "groupByKeys": [{"mode": "tag", "groupByData": GROUP_TAG}],
            },
            "runsHiddenMode": "SHOW_ALL",
            "orderByKey": "attributes.start_time",
            "orderByAsc": True,
            "compareRunSections": [
                {
                    "uuid": "ablation-answer",
                    "name": CHART_SECTION,
                    "display": True,
                    "isReordered": True,
                    "deleted": False,
                    "isGenerated": False,
                }
            ],
            "compareRunCharts": [
                _chart("LINE", LEARNING_CURVE),
                _chart("BAR", FINAL_RETURN),
                _chart("BAR", SPEED),
            ],
            "isAccordionReordered": True,  # the UI would otherwise sort sections by name
            "chartsSearchFilter": "",
        }
    )


def _chart(kind: str, metric: str) -> dict[str, Any]:
    """One chart card of the view's section, as the UI's chart classes serialise it; not
    ``isGenerated``, which the UI would turn into a line chart of a metric logged at a step
    above 0, such as ``final/eval_return``."""
    card: dict[str, Any] = {
        "uuid": f"ablation-{metric.replace('/', '-')}",
        "type": kind,
        "metricKey": metric,
        "selectedMetricKeys": [metric],
        "displayName": metric,
        "metricSectionId": "ablation-answer",
        "isGenerated": False,
        "deleted": False,
        "runsCountToCompare": 10,
    }
    if kind == "LINE":
        card |= {
            "xAxisKey": "step",
            "selectedXAxisMetricKey": "",
            "xAxisScaleType": "linear",
            "scaleType": "linear",
            "lineSmoothness": 0,
            "range": {},
            "yAxisKey": "metric",
            "yAxisExpressions": [],
            "ignoreOutliers": False,
            "useGlobalXaxisKey": True,
            "useGlobalLineSmoothing": True,
        }
    return card


def ui_path(experiment_id: str, charts: bool = False) -> str:
    """The UI's page (after ``http://host:port/``) of the experiment's runs in the saved
    view (:func:`arms_view`): the runs table on the model-training pages (not GenAI's), or
    with ``charts`` its charts, opening on the learning curve."""
    query = f"viewStateShareKey={ARMS_VIEW_KEY}&{ML_WORKFLOW}"
    return f"#/experiments/{experiment_id}/runs?{query}" + ("&compareRunsMode=CHART" * charts)


def latest_ui_path(uri: str) -> str | None:
    """:func:`ui_path` of the most recently started ablation at ``uri``; None when the
    store has none (or does not exist yet: it is not created here)."""
    if missing_store(uri):
        return None
    latest = recent_ablations(MlflowClient(uri), most=1)
    return ui_path(latest[0]) if latest else None


def run_link(experiment_id: str, run_id: str, text: str) -> str:
    return f"[{text}](#/experiments/{experiment_id}/runs/{run_id}?{ML_WORKFLOW})"


def experiment_note(spec: AblationSpec, experiment_id: str, parent_id: str) -> str:
    """The experiment's description in MLflow's UI: what the ablation is, where its answer
    is, the reference arm, and the clicks that turn a plain runs table into the view."""
    parent = run_link(experiment_id, parent_id, spec.name)
    grouped, by = ("task and arm", "`task`, `arm`") if spec.multi_task else ("arm", "`arm`")
    return "\n".join(
        [
            f"**{spec.description()}.**",
            "",
            f"**The answer:** the run {parent}, first in the runs table: its description "
            "holds the table of arms (mean final return, updates/s, every run) and says "
            "where the PDF report is (artifacts, `report/`, attached when the ablation ends).",
            "",
            f"**Compare arms:** [the runs grouped by {grouped}]({ui_path(experiment_id)}), "
            "with each group's mean final return and updates/s, and [the learning curve "
            f"and final returns]({ui_path(experiment_id, charts=True)}) (`eval/return` "
            "against env steps, then each group's mean `final/eval_return`). The reference "
            f"arm, {spec.reference}, is marked *{REFERENCE_MARK.strip()}*. By hand: *Group "
            f"by* → tags → {by}; *Columns* → metrics {TABLE_COLUMNS}, tags {by}, `seed`.",
        ]
    )


ENDED = ("FINISHED", "FAILED")
"""Parent statuses of an ablation that has ended (KILLED: stopped; a rerun resumes it)."""


def parent_note(
    spec: AblationSpec,
    experiment_id: str,
    parent: Any,
    children: Mapping[str, Any],
    means: Mapping[str, Mapping[str, float]],
    report: bool,
) -> str:
    """The parent run's description: a markdown table of arms (finished runs, mean final
    eval return, mean updates/s; the reference marked) with a link to each run, and where
    the report is, as things stand: ``parent`` is the parent run (its status says whether
    the ablation has ended), ``report`` whether a report is attached to it."""
    lines = [
        f"{spec.description()}.",
        "",
        "| arm | finished | mean final return | mean updates/s | runs |",
        "|---|---|---|---|---|",
    ]
    by_arm: dict[str, list[Any]] = {}
    for run in children.values():
        by_arm.setdefault(summary_key(run.data.tags, spec.multi_task), []).append(run)
    order = [
        f"{task}/{arm}" if spec.multi_task else arm for task in spec.tasks for arm in spec.arms
    ]
    for arm in sorted(
        by_arm, key=lambda a: (a not in order, order.index(a) if a in order else 0, a)
    ):
        runs = sorted(by_arm[arm], key=lambda run: int(run.data.tags.get("seed", "0") or 0))
        done = sum(run.info.status == "FINISHED" for run in runs)
        row = means.get(arm, {})
        cells = [
            run_link(experiment_id, run.info.run_id, f"seed {run.data.tags.get('seed', '?')}")
            + ("" if run.info.status == "FINISHED" else f" ({run.info.status.lower()})")
            for run in runs
        ]
        final = f"{row['final_return']:.2f}" if "final_return" in row else "–"
        speed = f"{row['updates_per_s']:.2f}" if "updates_per_s" in row else "–"
        name = arm + (REFERENCE_MARK if runs[0].data.tags.get("arm") == spec.reference else "")
        lines.append(f"| {name} | {done}/{len(runs)} | {final} | {speed} | {', '.join(cells)} |")
    return "\n".join([*lines, "", report_line(spec, experiment_id, parent, report)])


def report_line(spec: AblationSpec, experiment_id: str, parent: Any, report: bool) -> str:
    """Where the PDF report is, true at the time of writing and after: attached, to come
    when the ablation ends, or not attached when it ended."""
    url = f"#/experiments/{experiment_id}/runs/{parent.info.run_id}/artifacts?{ML_WORKFLOW}"
    artifacts = f"[artifacts → `report/`]({url})"
    if report:
        return f"The PDF report (statistics, learning curves): {artifacts}."
    if parent.info.status in ENDED:
        return (
            "When the ablation ended, no PDF report was attached (it ran with `--no-report`, "
            f"or the report could not be built): `make report EXPERIMENT={spec.name}` "
            f"builds one and attaches it under {artifacts}."
        )
    return (
        "The PDF report (statistics, learning curves) is attached here when the ablation "
        f"ends: {artifacts}."
    )


def summary_key(tags: Mapping[str, str], multi_task: bool) -> str:
    """A child's row in the parent's summary: its arm, or ``<task>/<arm>`` over several tasks."""
    arm = tags.get("arm", "?")
    return f"{tags.get('task') or tags.get('env', '?')}/{arm}" if multi_task else arm
