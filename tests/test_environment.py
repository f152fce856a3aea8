import os

import pytest

from ablations.environment import environment_variables


def test_environment_variables_restore_set_and_unset_values(monkeypatch):
    monkeypatch.setenv("ABL_TEST_SET", "before")
    monkeypatch.delenv("ABL_TEST_UNSET", raising=False)
    # restored on an error too
    with (
        pytest.raises(RuntimeError),
        environment_variables(ABL_TEST_SET="inside", ABL_TEST_UNSET="new"),
    ):
        assert os.environ["ABL_TEST_SET"] == "inside"
        assert os.environ["ABL_TEST_UNSET"] == "new"
        raise RuntimeError
    assert os.environ["ABL_TEST_SET"] == "before"
    assert "ABL_TEST_UNSET" not in os.environ
