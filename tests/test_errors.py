"""User mistakes end in one whole sentence that names the fix: real CLIs, real stores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from analysis.load import AblationDataError, load_ablation

STORE_FIX = "sqlite:///<folder>/mlflow.db or http://<host>:<port> (see --help)"


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("/nonexistent-dir/sub/mlruns", "names a folder"),
        ("http://127.0.0.1:9", "connection refused"),
    ],
)
def test_an_unusable_tracking_uri_is_one_whole_line_naming_the_fix(
    tmp_path: Path, uri: str, reason: str
) -> None:
    command = [sys.executable, "-m", "ablations", "--env", "cartpole", "--seeds", "1"]
    command += ["--preset", "debug", "--no-report"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert reason in lines[0] and uri in lines[0]
    assert lines[0].endswith(STORE_FIX), lines[0]  # whole: not cut before the fix
    assert not list(tmp_path.iterdir())


def test_an_experiment_name_typo_suggests_the_nearest_names(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    for name in ("cartpole-small", "cartpole-debug", "atari_pong-S"):
        client.create_experiment(name, artifact_location=str(tmp_path / name))
    with pytest.raises(AblationDataError) as typo:
        load_ablation("cartpole-smal", uri)
    assert "; did you mean 'cartpole-small' or" in str(typo.value)  # the nearest first
    with pytest.raises(AblationDataError) as unrelated:
        load_ablation("zzz", uri)
    assert "its experiments: atari_pong-S, cartpole-debug, cartpole-small" in str(unrelated.value)
