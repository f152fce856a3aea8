"""Appendix B names the run whose params it prints: a real store, a real PDF."""

from __future__ import annotations

import re
import time
from pathlib import Path

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from pypdf import PdfReader

from agent.config import flatten, make_config
from reports.build import build_report


def test_the_config_page_labels_the_params_with_their_own_run(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("labels", artifact_location=str(tmp_path / "art"))
    parent = client.create_run(experiment_id, run_name="labels", tags={"ablation.role": "parent"})
    now = int(time.time() * 1000)
    # Created in this order, the loader reads params from the last run (separate-seed1)
    # while the appendix lists coupled-seed0 first.
    for arm in ("coupled", "separate"):
        for seed in (0, 1):
            config = make_config("cartpole", "debug", {"train.schedule": arm, "train.seed": seed})
            tags = {"mlflow.parentRunId": parent.info.run_id, "ablation.role": "child"}
            tags |= {"arm": arm, "schedule": arm, "starts": "last", "seed": str(seed)}
            run = client.create_run(experiment_id, run_name=f"{arm}-seed{seed}", tags=tags)
            points = [Metric("eval/return", seed + step / 100, now, step) for step in (0, 100)]
            points += [Metric("time/total", step / 10, now, step) for step in (0, 100)]
            params = [Param(k, str(v)) for k, v in flatten(config).items()]
            client.log_batch(run.info.run_id, metrics=points, params=params)
            client.set_terminated(run.info.run_id, "FINISHED")

    pdf = build_report("labels", tracking_uri=uri, out_dir=tmp_path / "out", n_resamples=50)

    pages = [page.extract_text() for page in PdfReader(pdf).pages]
    config_page = re.sub(r"\s+", " ", next(p for p in pages if "Appendix B" in p))
    owner = re.search(r"params of run (\w+)-seed(\d)", config_page)
    assert owner is not None, config_page
    assert f"train.seed = {owner.group(2)}" in config_page
    assert f"train.schedule = {owner.group(1)}" in config_page
