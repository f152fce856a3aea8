"""Runs whose final-return window holds no eval point: the earlier point that stands in for
their final return (:func:`analysis.summary.per_run_scores`' ``final_from_step``) is said on
page 1, in the run's Appendix A row and in ``cautions.txt``, never silently."""

from __future__ import annotations

import numpy as np
import pandas as pd


def window_substitutes(scores: pd.DataFrame) -> pd.DataFrame:
    """The FINISHED runs of :func:`analysis.summary.per_run_scores` whose final-return window
    holds no eval point, so that an earlier point stands in (``final_from_step``); report
    order kept."""
    finished = scores[scores["status"] == "FINISHED"]
    return finished[np.isfinite(finished["final_from_step"].to_numpy(float))]


def _stand_in(row: pd.Series | dict) -> tuple[str, str]:
    """The step of a run's stand-in eval point and its share of training, as text."""
    step = float(row["final_from_step"])
    share = f"{100 * step / row['final_step']:.0f}%" if row["final_step"] > 0 else "n/a"
    return f"{step:,.0f}", share


def window_cell(row: pd.Series | dict) -> str:
    """The run's own words on a stand-in final return (Appendix A's row): e.g. ``'no eval
    in the last 10%: step 2,250 (75%) used'``; empty when its window holds a point."""
    if not np.isfinite(float(row["final_from_step"])):
        return ""
    step, share = _stand_in(row)
    return f"no eval in the last 10%: step {step} ({share}) used"


def window_note(scores: pd.DataFrame) -> str:
    """Page 1's sentence naming every FINISHED run without an eval point in its final-return
    window and the earlier point that stands in for it; empty when there is none."""
    rows = window_substitutes(scores)
    if rows.empty:
        return ""
    named = "; ".join(
        "{} (step {}, {} of training)".format(row["run_name"], *_stand_in(row))
        for _, row in rows.iterrows()
    )
    runs = f"{len(rows)} finished run{'' if len(rows) == 1 else 's'}"
    return (
        f"Final return: {runs} had no eval point in the last 10% of training; its last eval "
        f"point before that window stands in, not silently: {named}. Appendix A marks the row."
    )
