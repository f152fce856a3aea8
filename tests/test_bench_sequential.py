"""``make bench-stats``'s table: its rows, labels and the ablations per no-difference row."""

from __future__ import annotations

import math

import pytest

from benchmarks.sequential_stats import NULL_ROWS, main, null_reps


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.1, 0.2])
def test_no_difference_rows_get_a_standard_error_of_at_most_0005(alpha: float) -> None:
    reps = null_reps(alpha)
    assert math.sqrt(alpha * (1 - alpha) / reps) <= 0.005
    assert reps <= alpha * (1 - alpha) / 0.005**2 + 1  # and no more than that


def test_the_table_labels_its_false_positive_rows_and_gives_each_its_standard_error(
    capsys: pytest.CaptureFixture,
) -> None:
    args = ["--interim", "3", "--max-seeds", "6", "--reps", "4", "--null-reps", "25"]
    assert main([*args, "--permutations", "100"]) == 0
    out = capsys.readouterr().out.splitlines()
    title = out.index(next(line for line in out if line.startswith("false-positive rate")))
    assert "(no difference)" in out[title] and "25 ablations per row" in out[title]
    rows = out[title + 2 : title + 2 + len(NULL_ROWS)]
    for (arms, shape), row in zip(NULL_ROWS, rows, strict=True):
        fields = row.split()
        interim, interims = shape or (3, 2)
        assert fields[:4] == [str(arms), str(interim), "x", str(interims)]
        rate, error = float(fields[4]), float(fields[5].strip("()"))
        assert rate * 25 == pytest.approx(round(rate * 25))  # a count over 25 ablations
        assert error == pytest.approx(math.sqrt(max(rate * (1 - rate), 1e-12) / 25), abs=1e-4)
    assert out[-1].startswith(("every false-positive rate", "above alpha"))
