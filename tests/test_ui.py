"""What MLflow's UI is given to show first: experiment tags, the view it saves, the parent's
table of arms and the address `make ui` prints, on a real store (the pages themselves, in
a browser: tests/ui_screenshots.py)."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow.tracking import MlflowClient

from ablations.plan.spec import AblationSpec
from ablations.tracking import ui
from ablations.tracking.store import AblationStore
from analysis.store import attach_report


def note_rows(note: str) -> dict[str, str]:
    """The parent description's table rows by their first cell."""
    return {line.split("|")[1].strip(): line for line in note.splitlines() if line[:2] == "| "}


def test_the_store_tells_the_ui_what_to_show(tmp_path: Path, capsys) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    spec = AblationSpec("cartpole", 2, ("separate", "coupled"), "debug", 300, name="look")
    store = AblationStore(uri, spec)
    ids = {run.name: store.child_for(run, "cpu")[0] for run in spec.runs()}
    client = MlflowClient(uri)
    client.log_metric(ids["coupled-seed1"], "final/eval_return", 42.0, step=300)
    client.set_terminated(ids["coupled-seed1"], "FINISHED")
    client.set_terminated(ids["separate-seed0"], "FAILED")
    store.log_parent_summary()

    tags = client.get_experiment(store.experiment_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"  # not the GenAI pages
    view = json.loads(tags["mlflow.sharedViewState.arms"])
    assert view["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": "ui.group"}]
    assert "metrics.`final/eval_return`" in view["selectedColumns"]
    # The runs sorted by start, oldest first: the parent, created first, heads the table.
    assert (view["orderByKey"], view["orderByAsc"]) == ("attributes.start_time", True)
    note = client.get_run(store.parent_id).data.tags["mlflow.note.content"]
    rows = note_rows(note)
    assert "| 1/2 | 42.00 |" in rows["coupled"]
    assert "| 0/2 | – |" in rows["separate (reference)"]
    assert "(failed)" in rows["separate (reference)"]
    assert all(run_id in note for run_id in ids.values())
    assert "attached here when the ablation ends" in note  # the parent is still RUNNING

    assert ui.main([uri, "5000"]) == 0
    address = capsys.readouterr().out.strip()
    assert address == (
        f"http://127.0.0.1:5000/#/experiments/{store.experiment_id}/runs"
        "?viewStateShareKey=arms&workflowType=machine_learning"
    )
    assert ui.main([f"sqlite:///{tmp_path}/none/mlflow.db", "5000"]) == 0
    assert capsys.readouterr().out.strip() == "http://127.0.0.1:5000/"
    assert not (tmp_path / "none").exists()


def test_the_charts_open_on_the_learning_curve_and_the_final_return(tmp_path: Path) -> None:
    """The view's charts, in its one section kept first: the learning curve as a line, the
    final return and speed as bars. The UI turns a chart it generated (``isGenerated``) of
    a metric whose last step is 1 or more into a line chart, which for a metric logged once
    is a lone dot; the runner logs ``final/*`` once, at the last step, and ``eval/return``
    at every evaluation."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    spec = AblationSpec("cartpole", 1, ("separate", "coupled"), "debug", 300, name="charts")
    store = AblationStore(uri, spec)
    view = json.loads(
        MlflowClient(uri).get_experiment(store.experiment_id).tags["mlflow.sharedViewState.arms"]
    )
    charts = [(c["type"], c["metricKey"]) for c in view["compareRunCharts"]]
    assert charts == [
        ("LINE", "eval/return"),
        ("BAR", "final/eval_return"),
        ("BAR", "final/updates_per_s"),
    ]
    assert not any(c["isGenerated"] or c["deleted"] for c in view["compareRunCharts"])
    (section,) = view["compareRunSections"]
    assert {c["metricSectionId"] for c in view["compareRunCharts"]} == {section["uuid"]}
    assert section["display"] and view["isAccordionReordered"]  # not re-sorted by name
    assert view["chartsSearchFilter"] == ""  # no search hiding the curve
    # The experiment's description links the charts page of the same view.
    note = MlflowClient(uri).get_experiment(store.experiment_id).tags["mlflow.note.content"]
    charts_page = f"#/experiments/{store.experiment_id}/runs?viewStateShareKey=arms"
    assert f"({charts_page}&workflowType=machine_learning&compareRunsMode=CHART)" in note


def test_the_parent_says_where_the_report_is_as_the_ablation_goes(tmp_path: Path) -> None:
    """While the runs train the report is to come; once the ablation has ended the note
    says so, without "when it ends", and once the report is attached it links it."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    spec = AblationSpec("cartpole", 1, ("separate", "coupled"), "debug", 300, name="notes")
    store = AblationStore(uri, spec)
    client = MlflowClient(uri)
    for run in spec.runs():
        run_id = store.child_for(run, "cpu")[0]
        client.log_metric(run_id, "final/eval_return", 10.0, step=300)
        client.set_terminated(run_id, "FINISHED")

    def note() -> str:
        return client.get_run(store.parent_id).data.tags["mlflow.note.content"]

    store.log_parent_summary()
    assert "attached here when the ablation ends" in note()
    assert store.settle_parent() == "FINISHED"
    store.log_parent_summary()
    ended = note()
    assert "when the ablation ends" not in ended and "once the ablation" not in ended
    assert "When the ablation ended, no PDF report was attached" in ended
    assert "make report EXPERIMENT=notes" in ended

    pdf, files = tmp_path / "notes.pdf", tmp_path / "files"
    pdf.write_bytes(b"%PDF-1.4 tiny")
    for sub in ("figures", "tables"):
        (files / sub).mkdir(parents=True)
        (files / sub / f"{sub}.txt").write_text(sub)
    attach_report(uri, store.parent_id, pdf, files)
    store.refresh_parent_note()
    attached = note()
    assert "no PDF report" not in attached and "when the ablation ends" not in attached
    link = f"#/experiments/{store.experiment_id}/runs/{store.parent_id}/artifacts"
    assert f"The PDF report (statistics, learning curves): [artifacts → `report/`]({link}" in (
        attached
    )
    assert note_rows(attached)["separate (reference)"].startswith("| separate (reference) | 1/1")


def ui_groups(view: dict, runs: list) -> list[tuple[tuple, list[str]]]:
    """The runs table's groups under a saved view, in the table's order, as MLflow 3.17's
    UI forms them: the runs sorted by the view's ``orderByKey`` (here the start time), each
    run's values of the view's ``groupByKeys`` tags (None where it has no such tag) make its
    group, groups in the order their first run comes; a run with none of them goes to the
    remaining group (*Additional runs*, folded), keyed ``()`` and always last. Run names
    per group, in the table's order."""
    keys = [key["groupByData"] for key in view["groupBy"]["groupByKeys"]]
    assert all(key["mode"] == "tag" for key in view["groupBy"]["groupByKeys"])
    assert view["orderByKey"] == "attributes.start_time"
    ordered = sorted(runs, key=lambda run: run.info.start_time, reverse=not view["orderByAsc"])
    groups: dict[tuple, list[str]] = {}
    remaining: list[str] = []
    for run in ordered:
        values = tuple(run.data.tags.get(key) or None for key in keys)
        if any(values):
            groups.setdefault(values, []).append(run.info.run_name)
        else:
            remaining.append(run.info.run_name)
    return list(groups.items()) + ([((), remaining)] if remaining else [])


def test_the_table_heads_with_the_answer_and_marks_the_reference(tmp_path: Path, capsys) -> None:
    """The parent run heads the table in a group of its own (not folded into *Additional
    runs*); each arm is a group with every seed of it, one per task and arm over several
    tasks (a group per arm would average one arm's returns across tasks), and the
    reference arm's is marked."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    spec = AblationSpec("cartpole", 1, ("separate", "coupled"), "debug", 300, name="suite")
    suite = AblationSpec(
        "cartpole", 2, ("separate", "coupled"), "debug", 300, name="suite2",
        tasks=("cartpole", "acrobot"), reference="coupled",
    )  # fmt: skip
    client = MlflowClient(uri)
    views, stores = {}, {}
    for ablation in (spec, suite):
        store = stores[ablation.name] = AblationStore(uri, ablation)
        for run in ablation.runs():  # the runner's child runs, with the runner's tags
            store.child_for(run, "cpu")
        tags = client.get_experiment(store.experiment_id).tags
        views[ablation.name] = json.loads(tags["mlflow.sharedViewState.arms"])
        note = tags["mlflow.note.content"]
    assert "tags.`task`" not in views["suite"]["selectedColumns"]
    assert {"tags.`task`", "tags.`arm`"} <= set(views["suite2"]["selectedColumns"])
    assert "the runs grouped by task and arm" in note and "tags → `task`, `arm`" in note
    assert "The reference arm, coupled, is marked *(reference)*" in note

    runs = client.search_runs([stores["suite2"].experiment_id])
    # Groups come in the order their first run was created, the runner's order.
    created = list(dict.fromkeys((run.env, run.arm) for run in suite.runs()))
    assert ui_groups(views["suite2"], runs) == [
        (("the answer (parent run)",), ["suite2"]),
        *(
            (
                (f"{task}/{arm}" + " (reference)" * (arm == "coupled"),),
                [f"{task}/{arm}-seed{seed}" for seed in (0, 1)],
            )
            for task, arm in created
        ),
    ]
    one_task = client.search_runs([stores["suite"].experiment_id])
    assert ui_groups(views["suite"], one_task) == [
        (("the answer (parent run)",), ["suite"]),
        (("separate (reference)",), ["separate-seed0"]),
        (("coupled",), ["coupled-seed0"]),
    ]
    # make ui opens the latest ablation, the suite, in that view.
    assert ui.main([uri, "5000"]) == 0
    address = capsys.readouterr().out.strip()
    assert address.startswith(
        f"http://127.0.0.1:5000/#/experiments/{stores['suite2'].experiment_id}/"
    )
    assert "viewStateShareKey=arms" in address


def test_a_resumed_ablation_relabels_runs_made_before_the_view(tmp_path: Path) -> None:
    """Children of an older command (no group tag; or another reference arm) get their
    group when the ablation is opened again, so the new view does not fold them away."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    spec = AblationSpec("cartpole", 1, ("separate", "coupled"), "debug", 300, name="old")
    store = AblationStore(uri, spec)
    ids = {run.arm: store.child_for(run, "cpu")[0] for run in spec.runs()}
    client = MlflowClient(uri)
    client.delete_tag(ids["separate"], "ui.group")
    client.delete_tag(store.parent_id, "ui.group")
    AblationStore(uri, AblationSpec(**{**vars(spec), "reference": "coupled"}))
    labels = {arm: client.get_run(run_id).data.tags["ui.group"] for arm, run_id in ids.items()}
    assert labels == {"separate": "separate", "coupled": "coupled (reference)"}
    assert client.get_run(store.parent_id).data.tags["ui.group"] == "the answer (parent run)"
