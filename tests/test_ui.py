"""What MLflow's UI is given to show first: experiment tags, the parent's table of arms and
the address `make ui` prints, on a real store (the pages themselves: tests/ui_screenshots.py)."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow.tracking import MlflowClient

from ablations import ui
from ablations.spec import AblationSpec
from ablations.tracking import AblationStore


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
    assert view["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": "arm"}]
    assert "metrics.`final/eval_return`" in view["selectedColumns"]
    note = client.get_run(store.parent_id).data.tags["mlflow.note.content"]
    rows = {line.split("|")[1].strip(): line for line in note.splitlines() if line[:2] == "| "}
    assert "| 1/2 | 42.00 |" in rows["coupled"]
    assert "| 0/2 | – |" in rows["separate"] and "(failed)" in rows["separate"]
    assert all(run_id in note for run_id in ids.values())

    assert ui.main([uri, "5000"]) == 0
    address = capsys.readouterr().out.strip()
    assert address == (
        f"http://127.0.0.1:5000/#/experiments/{store.experiment_id}/runs"
        "?viewStateShareKey=arms&workflowType=machine_learning"
    )
    assert ui.main([f"sqlite:///{tmp_path}/none/mlflow.db", "5000"]) == 0
    assert capsys.readouterr().out.strip() == "http://127.0.0.1:5000/"
    assert not (tmp_path / "none").exists()


def ui_groups(view: dict, runs: list) -> dict[tuple, list[str]]:
    """The runs table's groups under a shared view, as MLflow 3.17's UI forms them: each run's
    values of the view's ``groupByKeys`` tags (None where it has no such tag) make its group;
    a run with none of them goes to the remaining group, keyed ``()``. Run names per group."""
    keys = [key["groupByData"] for key in view["groupBy"]["groupByKeys"]]
    assert all(key["mode"] == "tag" for key in view["groupBy"]["groupByKeys"])
    groups: dict[tuple, list[str]] = {}
    for run in runs:
        values = tuple(run.data.tags.get(key) or None for key in keys)
        group = values if any(values) else ()
        groups.setdefault(group, []).append(run.info.run_name)
    return {group: sorted(names) for group, names in groups.items()}


def test_a_suite_ablation_is_grouped_by_task_and_arm(tmp_path: Path, capsys) -> None:
    """Over several tasks a group per arm would average one arm's returns across tasks: the
    view the ablation saves puts each task x arm in its own group, with every seed of it."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    spec = AblationSpec("cartpole", 1, ("separate", "coupled"), "debug", 300, name="suite")
    suite = AblationSpec(
        "cartpole", 2, ("separate", "coupled"), "debug", 300, name="suite2",
        tasks=("cartpole", "acrobot"),
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
    assert [key["groupByData"] for key in views["suite"]["groupBy"]["groupByKeys"]] == ["arm"]
    assert "tags.`task`" not in views["suite"]["selectedColumns"]
    keys = views["suite2"]["groupBy"]["groupByKeys"]
    assert keys == [{"mode": "tag", "groupByData": g} for g in ("task", "arm")]
    assert {"tags.`task`", "tags.`arm`"} <= set(views["suite2"]["selectedColumns"])
    assert "the runs grouped by task and arm" in note and "tags → `task`, `arm`" in note

    runs = client.search_runs([stores["suite2"].experiment_id])
    assert ui_groups(views["suite2"], runs) == {
        **{
            (task, arm): [f"{task}/{arm}-seed{seed}" for seed in (0, 1)]
            for task in ("cartpole", "acrobot")
            for arm in ("separate", "coupled")
        },
        (): ["suite2"],  # the parent run, outside every group
    }
    one_task = client.search_runs([stores["suite"].experiment_id])
    assert ui_groups(views["suite"], one_task) == {
        ("separate",): ["separate-seed0"],
        ("coupled",): ["coupled-seed0"],
        (): ["suite"],
    }
    # make ui opens the latest ablation, the suite, in that view.
    assert ui.main([uri, "5000"]) == 0
    address = capsys.readouterr().out.strip()
    assert address.startswith(
        f"http://127.0.0.1:5000/#/experiments/{stores['suite2'].experiment_id}/"
    )
    assert "viewStateShareKey=arms" in address
