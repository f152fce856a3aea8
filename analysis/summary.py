"""From tidy run frames to per-run scores and the per-arm comparison table (the report's answer).

Uses :mod:`analysis.stats` for every number; knows the metric names of the run contract.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import stats

REFERENCE_ARM = "separate"
ARM_ORDER = ("separate", "coupled", "separate_all", "coupled_all")
RETURN_METRIC = "eval/return"
SPEED_METRIC = "speed/updates_per_s"
DIVERSITY_METRIC = "diversity/h_dispersion"
ALPHA = 0.05

# Per-run score column -> the label used in the Holm family and the report.
TESTED_SCORES = {
    "final_return": "final return",
    "auc_return": "return AUC",
    "updates_per_s": "updates/s",
    "h_dispersion": "h dispersion",
}


def ordered_arms(arms: pd.Series | list[str]) -> list[str]:
    """Arms in the fixed report order (reference first), unknown arms appended sorted."""
    present = set(arms)
    known = [arm for arm in ARM_ORDER if arm in present]
    return known + sorted(present - set(ARM_ORDER))


def per_run_scores(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per run: the scalars the statistics compare.

    Args:
        runs: ``AblationData.runs`` (one row per run).
        metrics: ``AblationData.metrics`` (long frame).

    Returns:
        ``runs`` columns plus ``final_return`` (mean eval return over the last 10% of the
        run's steps), ``auc_return`` (normalised area under the eval curve), ``updates_per_s``
        and ``h_dispersion`` (each the mean of its logged values over training). NaN where a
        run never logged the metric.
    """
    scores = runs.copy()
    grouped = {key: frame for key, frame in metrics.groupby(["run_id", "metric"])}

    def curve(run_id: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
        frame = grouped.get((run_id, metric))
        if frame is None:
            return np.empty(0), np.empty(0)
        return frame["step"].to_numpy(float), frame["value"].to_numpy(float)

    def mean_of(run_id: str, metric: str) -> float:
        values = curve(run_id, metric)[1]
        return float(values.mean()) if values.size else float("nan")

    scores["final_return"] = [
        stats.final_performance(*curve(run_id, RETURN_METRIC), total_steps=final_step)
        for run_id, final_step in zip(scores["run_id"], scores["final_step"], strict=True)
    ]
    scores["auc_return"] = [
        stats.normalised_auc(*curve(run_id, RETURN_METRIC)) for run_id in scores["run_id"]
    ]
    scores["updates_per_s"] = [mean_of(run_id, SPEED_METRIC) for run_id in scores["run_id"]]
    scores["h_dispersion"] = [mean_of(run_id, DIVERSITY_METRIC) for run_id in scores["run_id"]]
    return scores


def compare_arms(
    scores: pd.DataFrame,
    rng: np.random.Generator,
    reference: str = REFERENCE_ARM,
    n_resamples: int = stats.DEFAULT_RESAMPLES,
) -> pd.DataFrame:
    """The answer table: each arm against the reference, FINISHED runs only.

    Args:
        scores: :func:`per_run_scores` output (all statuses; non-FINISHED rows are dropped).
        rng: drives every bootstrap CI (same seed, same table).
        reference: the arm every other arm is compared with.

    Returns:
        One row per arm (reference first). ``return_mean`` with a Student-t 95% CI
        (``return_ci_half``); IQM with a bootstrap CI; versus the reference: difference of
        means with a bootstrap CI, Welch p for each score in ``TESTED_SCORES`` and its Holm
        adjustment over that whole family (all arms x scores, ``*_p_holm``), Mann-Whitney p,
        Hedges' g, P(improvement) with a bootstrap CI, speed and diversity ratios with
        bootstrap CIs, and a ``note`` for degenerate cases. Reference-row comparisons are NaN.
    """
    finished = scores[scores["status"] == "FINISHED"]
    by_arm = {arm: frame for arm, frame in finished.groupby("arm")}
    base = by_arm.get(reference, finished.iloc[0:0])

    def values(frame: pd.DataFrame, column: str) -> np.ndarray:
        return frame[column].to_numpy(float)

    rows = []
    for arm in ordered_arms(finished["arm"]):
        frame = by_arm[arm]
        x = values(frame, "final_return")
        mean, low, _ = stats.mean_ci_t(x[:, None])  # (n_runs, 1): one "point"
        row: dict[str, object] = {
            "arm": arm,
            "n": int(np.isfinite(x).sum()),
            "return_mean": float(mean[0]),
            "return_ci_half": float(mean[0] - low[0]),
            "iqm": stats.iqm(x),
        }
        row["iqm_ci_low"], row["iqm_ci_high"] = stats.iqm_ci(x, rng, n_resamples)
        if arm != reference:
            y = values(base, "final_return")
            row["diff"] = float(np.nanmean(x) - np.nanmean(y)) if y.size else np.nan
            row["diff_ci_low"], row["diff_ci_high"] = stats.diff_of_means_ci(x, y, rng, n_resamples)
            for column in TESTED_SCORES:
                row[f"{column}_p"] = stats.welch_p(values(frame, column), values(base, column))
            row["mw_p"] = stats.mann_whitney_p(x, y)
            row["hedges_g"] = stats.hedges_g(x, y)
            row["poi"] = stats.probability_of_improvement(x, y)
            row["poi_ci_low"], row["poi_ci_high"] = stats.probability_of_improvement_ci(
                x, y, rng, n_resamples
            )
            for name, column in (("speed", "updates_per_s"), ("diversity", "h_dispersion")):
                a, b = values(frame, column), values(base, column)
                row[f"{name}_ratio"] = stats.ratio_of_means(a, b)
                row[f"{name}_ci_low"], row[f"{name}_ci_high"] = stats.ratio_of_means_ci(
                    a, b, rng, n_resamples
                )
            row["note"] = stats.degenerate_reason(x, y) or ""
        rows.append(row)
    table = pd.DataFrame(rows, columns=None if rows else ["arm", "n"])
    return _add_holm(table)


def _add_holm(table: pd.DataFrame) -> pd.DataFrame:
    """Holm-adjust every Welch p-value in the table as one family (arms x scores)."""
    p_columns = [f"{column}_p" for column in TESTED_SCORES if f"{column}_p" in table]
    if not p_columns:
        return table
    family = table[p_columns].to_numpy(float)
    adjusted = stats.holm(family.ravel()).reshape(family.shape)
    for index, column in enumerate(p_columns):
        table[f"{column}_holm"] = adjusted[:, index]
    return table


def verdict(table: pd.DataFrame, reference: str = REFERENCE_ARM, alpha: float = ALPHA) -> str:
    """One sentence: final return first, then any other score with Holm-adjusted Welch p < alpha.

    Says "No significant difference" for final return unless its Holm-adjusted p < alpha.
    """
    others = table[table["arm"] != reference]
    if others.empty:
        return f"No comparison possible: no arm besides {reference} has finished runs."
    adjusted = others.get("final_return_p_holm")
    if adjusted is None or adjusted.isna().all():
        return (
            f"No significant difference in final return versus {reference} can be claimed: "
            "too few finished runs for a test (p-values are NaN)."
        )
    significant = others[adjusted < alpha]
    if significant.empty:
        sentence = (
            f"No significant difference in final return between any arm and {reference} "
            f"(all Holm-adjusted Welch p >= {alpha})"
        )
    else:
        parts = [
            f"{row.arm} {'above' if row.diff > 0 else 'below'} {reference} by "
            f"{abs(row.diff):.3g} (Holm-adjusted p = {row.final_return_p_holm:.3g})"
            for row in significant.itertuples()
        ]
        sentence = "Significant difference in final return: " + "; ".join(parts)
    extra = _other_significant(others, alpha)
    return sentence + (f"; other significant differences: {extra}." if extra else ".")


def _other_significant(others: pd.DataFrame, alpha: float) -> str:
    # Speed and diversity are reported as ratios, so say them as ratios.
    ratio_of = {"updates_per_s": "speed_ratio", "h_dispersion": "diversity_ratio"}
    parts = []
    for row in others.to_dict("records"):
        for column, label in TESTED_SCORES.items():
            p = row.get(f"{column}_p_holm", np.nan)
            if column == "final_return" or not (np.isfinite(p) and p < alpha):
                continue
            if column in ratio_of:
                parts.append(f"{row['arm']} {label} x{row[ratio_of[column]]:.2f} (p = {p:.2g})")
            else:
                parts.append(f"{row['arm']} {label} (p = {p:.2g})")
    return ", ".join(parts)


def power_note(n_per_arm: int) -> str:
    """The smallest effect this design can see, as a sentence."""
    d = stats.min_detectable_effect(n_per_arm)
    if not np.isfinite(d):
        return f"Power: with n = {n_per_arm} seeds per arm no test is possible."
    return (
        f"Power: with n = {n_per_arm} seeds per arm, only effects of Cohen's d >= {d:.2f} "
        "are detected with 80% power (alpha 0.05, two-sided); smaller true differences "
        "will usually read as 'no significant difference'."
    )


def missing_runs(runs: pd.DataFrame) -> list[str]:
    """Names (``<arm>-seed<k>``) of arm x seed pairs with no run at all, given the seeds seen.

    The ablation grid is inferred as every arm present x every seed present in any arm.
    """
    present = set(zip(runs["arm"], runs["seed"], strict=True))
    return [
        f"{arm}-seed{seed}"
        for arm in ordered_arms(runs["arm"])
        for seed in sorted(set(runs["seed"]))
        if (arm, seed) not in present
    ]


def problems_note(runs: pd.DataFrame) -> str:
    """E.g. ``"2 of 8 runs did not finish ...: coupled-seed1 (FAILED), ..."``; empty when none.

    Also lists arm x seed pairs that have no run at all (see :func:`missing_runs`).
    """
    problems = runs[runs["status"] != "FINISHED"]
    missing = missing_runs(runs)
    sentences = []
    if not problems.empty:
        listed = ", ".join(f"{r.run_name} ({r.status})" for r in problems.itertuples())
        sentences.append(
            f"{len(problems)} of {len(runs)} runs did not finish and are excluded from the "
            f"statistics: {listed}."
        )
    if missing:
        sentences.append(f"{len(missing)} expected runs are missing: {', '.join(missing)}.")
    return " ".join(sentences)
