"""Where a SQLite store's file is, and whether it exists, from its tracking URI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from analysis.store import missing_store, sqlite_file


def test_a_sqlite_uri_names_its_file_absolutely_and_other_stores_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert sqlite_file("sqlite:///mlflow.db") == str(tmp_path / "mlflow.db")
    assert sqlite_file(f"sqlite:///{tmp_path}/a/b.db") == str(tmp_path / "a" / "b.db")
    assert sqlite_file("http://127.0.0.1:5000") is None
    assert sqlite_file("file:///tmp/mlruns") is None


def test_a_missing_store_is_named_and_an_existing_or_remote_one_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "mlflow.db"
    assert missing_store(f"sqlite:///{database}") == str(database)
    assert not database.exists()  # asking does not create it
    database.touch()
    assert missing_store(f"sqlite:///{database}") is None
    assert missing_store("http://127.0.0.1:5000") is None
    # Without a URI, MLflow's own (here from the environment) is the one asked about.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/other.db")
    assert missing_store(None) == os.path.join(tmp_path, "other.db")
