"""Appendix B shows what every run shares and what differs, and by what: a real store, a real
PDF, checked against the configs the test itself gave the runs."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pandas as pd
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from pypdf import PdfReader

from agent.config import flatten, make_config
from analysis.config_scopes import config_scopes
from analysis.load import load_ablation
from reports.build import build_report


def test_the_config_pages_split_shared_values_from_those_that_differ(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("labels", artifact_location=str(tmp_path / "art"))
    parent = client.create_run(experiment_id, run_name="labels", tags={"ablation.role": "parent"})
    now = int(time.time() * 1000)
    configs = {}
    for arm in ("coupled", "separate"):
        for seed in (0, 1):
            overrides = {"train.schedule": arm, "train.seed": seed}
            if seed == 1 and arm == "coupled":
                overrides["train.eval_every"] = 250  # one run differs from its arm's other
            config = flatten(make_config("cartpole", "debug", overrides))
            configs[f"{arm}-seed{seed}"] = {k: str(v) for k, v in config.items()}
            tags = {"mlflow.parentRunId": parent.info.run_id, "ablation.role": "child"}
            tags |= {"arm": arm, "schedule": arm, "starts": "last", "seed": str(seed)}
            run = client.create_run(experiment_id, run_name=f"{arm}-seed{seed}", tags=tags)
            points = [Metric("eval/return", seed + step / 100, now, step) for step in (0, 100)]
            points += [Metric("time/total", step / 10, now, step) for step in (0, 100)]
            params = [Param(k, v) for k, v in configs[f"{arm}-seed{seed}"].items()]
            client.log_batch(run.info.run_id, metrics=points, params=params)
            client.set_terminated(run.info.run_id, "FINISHED")

    pdf = build_report("labels", tracking_uri=uri, out_dir=tmp_path / "out", n_resamples=50)

    text = re.sub(r"\s+", " ", " ".join(p.extract_text() for p in PdfReader(pdf).pages))
    # Brute force: a key is shared when all four configs agree on it.
    keys = sorted(set().union(*configs.values()))
    shared = [k for k in keys if len({c.get(k) for c in configs.values()}) == 1]
    differing = [k for k in keys if k not in shared]
    assert sorted(differing) == ["train.eval_every", "train.schedule", "train.seed"]
    assert f"Same in every run ({len(shared)} keys):" in text
    for key in shared:
        assert f"{key} = {configs['coupled-seed0'][key]}" in text, key
    # The by-arm table (a page's tables come before its text in the PDF's text).
    assert "Differs by arm:" in text
    assert "key coupled separate train.schedule coupled separate" in text
    assert "train.seed: the run's seed" in text
    assert "train.eval_every: 2 values, differing between runs of one task and arm" in text
    assert "params of run" not in text  # no run's config stands for every run's any more

    long = config_scopes(load_ablation("labels", uri)).long_table()
    tables = pd.read_csv(tmp_path / "out" / "labels" / "tables" / "config.csv", dtype=str)
    assert tables.fillna("").equals(long.astype(str).replace("nan", ""))
    assert set(long["param"]) == set(keys)
