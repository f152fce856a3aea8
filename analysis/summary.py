"""From tidy run frames to per-run scores and the per-arm comparison table (the report's answer).

Uses :mod:`analysis.stats` for every number; knows the metric names of the run contract.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis import paired, stats
from analysis.load import DEFAULT_REFERENCE

RETURN_METRIC = "eval/return"
TRAINING_SECONDS_METRIC = "time/total"
UPDATES_METRIC = "progress/wm_updates"
ITERATIONS_METRIC = "progress/iterations"
DIVERSITY_METRIC = "diversity/h_dispersion"
LOAD_METRIC = "system/load_avg_mean"
TRAINING_PHASES = ("collect", "wm", "starts", "refilter", "imagine", "ac", "other")
"""The phases of training time (``time/<phase>`` seconds per iteration); they add up to it."""
ALPHA = 0.05
SPEED_SPREAD_LIMIT = 1.5
"""A run whose speed is off its arm's median by more than this factor is flagged."""
LOAD_PER_CORE_LIMIT = 0.5
"""Runs whose mean load per core differs by more than this are flagged as not comparable."""

# Per-run score column -> the label used in the Holm family and the report.
TESTED_SCORES = {
    "final_return": "final return",
    "auc_return": "return AUC",
    "updates_per_s": "updates/s",
    "h_dispersion": "h dispersion",
}
SCORE_METRICS = {
    "final_return": (RETURN_METRIC,),
    "auc_return": (RETURN_METRIC,),
    "updates_per_s": (UPDATES_METRIC, TRAINING_SECONDS_METRIC),
    "h_dispersion": (DIVERSITY_METRIC,),
}
"""Per-run score column -> the logged metrics it is computed from (all of them needed)."""


def ordered_arms(
    arms: pd.Series | list[str], reference: str | None = None, order: Sequence[str] = ()
) -> list[str]:
    """The arms present in report order: the reference first, then as in ``order`` (the
    ablation's own order), then any others sorted."""
    present = set(arms)
    first = [arm for arm in dict.fromkeys([reference, *order]) if arm in present]
    return first + sorted(present - set(first))


def per_run_scores(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per run: the scalars the statistics compare.

    Args:
        runs: ``AblationData.runs`` (one row per run).
        metrics: ``AblationData.metrics`` (long frame).

    Returns:
        ``runs`` columns plus ``final_return`` (mean eval return over the last 10% of the
        run's steps), ``final_window_points`` (eval points in that window) and
        ``final_from_step`` (the step of the earlier eval point that stands in for a run
        with none in the window, NaN otherwise; :mod:`analysis.final_window` says so),
        ``auc_return`` (normalised area under the eval curve),
        ``train_seconds`` (training time: collect + updates, evaluation excluded),
        ``updates_per_s`` (WM updates / training seconds, both at the run's last log point:
        the one definition of speed, the worker's ``final/updates_per_s``), ``h_dispersion``
        (mean of its logged values) and ``load_per_core`` (mean 1-minute load average over
        the run / CPU count). NaN where a run never logged the metric.
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

    def last_of(run_id: str, metric: str) -> float:
        steps, values = curve(run_id, metric)
        return float(values[np.argmax(steps)]) if values.size else float("nan")

    run_ids = scores["run_id"]
    scores["final_return"] = [
        stats.final_performance(*curve(run_id, RETURN_METRIC), total_steps=final_step)
        for run_id, final_step in zip(run_ids, scores["final_step"], strict=True)
    ]
    scores["final_window_points"] = [
        stats.points_in_window(curve(run_id, RETURN_METRIC)[0], total_steps=final_step)
        for run_id, final_step in zip(run_ids, scores["final_step"], strict=True)
    ]
    # Where the window is empty, final_performance takes the last eval point: its step.
    last_eval = [_last_step(curve(run_id, RETURN_METRIC)[0]) for run_id in run_ids]
    empty = scores["final_window_points"].to_numpy() == 0
    scores["final_from_step"] = np.where(empty, last_eval, np.nan)
    scores["auc_return"] = [
        stats.normalised_auc(*curve(run_id, RETURN_METRIC)) for run_id in run_ids
    ]
    seconds = np.array([last_of(run_id, TRAINING_SECONDS_METRIC) for run_id in run_ids])
    updates = np.array([last_of(run_id, UPDATES_METRIC) for run_id in run_ids])
    scores["train_seconds"] = seconds
    with np.errstate(divide="ignore", invalid="ignore"):
        scores["updates_per_s"] = np.where(seconds > 0, updates / seconds, np.nan)
    scores["h_dispersion"] = [mean_of(run_id, DIVERSITY_METRIC) for run_id in run_ids]
    cpus = pd.to_numeric(scores.get("cpu_count", pd.Series(np.nan, index=scores.index)), "coerce")
    scores["load_per_core"] = [last_of(run_id, LOAD_METRIC) for run_id in run_ids] / cpus.to_numpy(
        float
    )
    return scores


def _last_step(steps: np.ndarray) -> float:
    return float(steps.max()) if steps.size else float("nan")


def phase_seconds(metrics: pd.DataFrame) -> pd.DataFrame:
    """Seconds per training iteration of each phase, per run, over the whole run.

    ``time/<phase>`` is logged as a per-iteration mean over each log interval; weighting each
    interval by its iterations (``progress/iterations``) gives the run's totals, so the
    phases of a run add up to its training time / iterations exactly. Runs logged without
    ``progress/iterations`` weigh every interval equally (a plain mean over log points).

    Returns:
        One row per run: ``run_id``, ``arm``, one column per phase in ``TRAINING_PHASES``
        that any run logged (0 where a run never ran it), ``total`` and ``iterations``.
    """
    names = [f"time/{phase}" for phase in TRAINING_PHASES]
    rows = []
    for (run_id, arm), run in metrics.groupby(["run_id", "arm"]):
        counts = run[run["metric"] == ITERATIONS_METRIC].set_index("step")["value"].sort_index()
        if counts.empty:  # runs logged before progress/iterations: every interval weighs one
            steps = run.loc[run["metric"].isin(names), "step"].drop_duplicates().sort_values()
            if steps.empty:
                continue
            counts = pd.Series(np.arange(1.0, steps.size + 1), index=steps.to_numpy())
        weights = counts.diff().fillna(counts.iloc[0])  # (n_log_points,) iterations per interval
        row: dict[str, object] = {"run_id": run_id, "arm": arm}
        for name, phase in zip(names, TRAINING_PHASES, strict=True):
            per_interval = run[run["metric"] == name].set_index("step")["value"]
            if not per_interval.empty:
                total = (per_interval * weights.reindex(per_interval.index).fillna(0.0)).sum()
                row[phase] = float(total / counts.iloc[-1])
        row["iterations"] = float(counts.iloc[-1])
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=["run_id", "arm", "total", "iterations"])
    phases = [phase for phase in TRAINING_PHASES if phase in frame]
    frame[phases] = frame[phases].fillna(0.0)
    frame["total"] = frame[phases].sum(axis=1)
    return frame[["run_id", "arm", *phases, "total", "iterations"]]


def phase_summary(phases: pd.DataFrame) -> pd.DataFrame:
    """Per arm and phase: median, min and max over runs of seconds per iteration.

    ``phases``: :func:`phase_seconds` output. Returns long rows ``arm, phase, n, median,
    low, high`` (``phase == "total"`` for the sum), arms in report order.
    """
    rows = []
    columns = [c for c in phases.columns if c not in ("run_id", "arm", "iterations")]
    for arm in ordered_arms(phases["arm"]):
        frame = phases[phases["arm"] == arm]
        for phase in columns:
            values = frame[phase].to_numpy(float)
            rows.append(
                {
                    "arm": arm,
                    "phase": phase,
                    "n": values.size,
                    "median": float(np.median(values)),
                    "low": float(values.min()),
                    "high": float(values.max()),
                }
            )
    return pd.DataFrame(rows, columns=["arm", "phase", "n", "median", "low", "high"])


def compare_arms(
    scores: pd.DataFrame,
    rng: np.random.Generator,
    reference: str = DEFAULT_REFERENCE,
    n_resamples: int = stats.DEFAULT_RESAMPLES,
    order: Sequence[str] = (),
) -> pd.DataFrame:
    """The answer table: each arm against the reference, FINISHED runs only.

    Args:
        scores: :func:`per_run_scores` output (all statuses; non-FINISHED rows are dropped).
        rng: drives every bootstrap CI and permutation test (same seed, same table).
        reference: the arm every other arm is compared with.
        order: the ablation's arms in its own order (the rows' order after the reference).

    Returns:
        One row per arm (reference first). ``return_mean`` with a Student-t 95% CI
        (``return_ci_half``, NaN below two runs); IQM; mean ``updates_per_s``; for each score
        in ``TESTED_SCORES`` the arm's runs that have it (``*_runs``: 0 where no run logged
        its metrics); versus the reference: difference
        of means, for each score in ``TESTED_SCORES`` the primary test's p (``*_p``: Welch,
        or Mann-Whitney where Welch is undefined, ``*_test`` says which, ``*_note`` why) and
        its Holm adjustment over that whole family (all arms x scores, ``*_p_holm``; the
        family's size in ``holm_m``), Mann-Whitney p (exact or permutation), Hedges' g,
        P(improvement), speed and diversity ratios, and a ``note`` for degenerate cases.
        Bootstrap CIs (difference, IQM, P(improvement), ratios) are NaN below
        ``stats.MIN_BOOTSTRAP_N`` runs per arm with a value for that score (``ci_note`` says
        so for final return). Runs share seeds but their learning is not paired: those
        tests treat the arms as independent samples. Speed is paired where the arms' runs
        of a seed trained side by side (:mod:`analysis.paired`): ``speed_ratio`` is then the
        geometric mean of the per-seed ratios with its t CI, and the updates/s test the
        Wilcoxon signed-rank test (``updates_per_s_test`` = :data:`PAIRED_TEST`);
        ``speed_pairs`` / ``speed_pairs_side_by_side`` / ``speed_faster`` count the pairs.
    """
    finished = scores[scores["status"] == "FINISHED"]
    by_arm = {arm: frame for arm, frame in finished.groupby("arm")}
    base = by_arm.get(reference, finished.iloc[0:0])

    def values(frame: pd.DataFrame, column: str) -> np.ndarray:
        return frame[column].to_numpy(float)

    def interval(function, *samples: np.ndarray) -> tuple[float, float]:
        # Counted per CI: a score some runs lack (h dispersion not logged) has fewer values
        # than final return, and its CI follows the rule on its own count.
        enough = min(np.isfinite(sample).sum() for sample in samples) >= stats.MIN_BOOTSTRAP_N
        return function(*samples, rng, n_resamples) if enough else (np.nan, np.nan)

    rows = []
    for arm in ordered_arms(finished["arm"], reference, order):
        frame = by_arm[arm]
        x = values(frame, "final_return")
        n = int(np.isfinite(x).sum())
        mean, low, _ = stats.mean_ci_t(x[:, None])  # (n_runs, 1): one "point"
        row: dict[str, object] = {
            "arm": arm,
            "n": n,
            "return_mean": float(mean[0]),
            # One run: the t band has no width, and no interval is better than a point.
            "return_ci_half": float(mean[0] - low[0]) if n >= 2 else np.nan,
            "iqm": stats.iqm(x),
            # The same mean the console summary prints (of final/updates_per_s).
            "updates_per_s": _finite_mean(values(frame, "updates_per_s")),
        }
        for column in TESTED_SCORES:
            row[f"{column}_runs"] = int(np.isfinite(values(frame, column)).sum())
        y = values(base, "final_return")
        n_ref = int(np.isfinite(y).sum())
        enough = min(n, n_ref if arm != reference else n) >= stats.MIN_BOOTSTRAP_N
        row["ci_note"] = "" if enough else f"not meaningful at n = {min(n, n_ref)}"
        row["iqm_ci_low"], row["iqm_ci_high"] = interval(stats.iqm_ci, x)
        if arm != reference:
            speed = paired.comparison(scores, arm, reference)
            row["diff"] = float(np.nanmean(x) - np.nanmean(y)) if n and n_ref else np.nan
            row["diff_ci_low"], row["diff_ci_high"] = interval(stats.diff_of_means_ci, x, y)
            apart = paired.trained_apart(scores, arm, reference)
            for column in TESTED_SCORES:
                if column == "updates_per_s" and speed.paired:
                    result = paired_test(speed)
                elif column == "updates_per_s" and apart:
                    note = paired.TRAINED_APART.format(reference=reference)
                    result = stats.TestResult(np.nan, "none", note)
                else:
                    result = stats.primary_test(values(frame, column), values(base, column))
                row[f"{column}_p"] = result.p
                row[f"{column}_test"] = result.test
                row[f"{column}_note"] = result.note
            row["mw_p"] = stats.mann_whitney_p(x, y, rng)
            row["mw_min_p"] = stats.smallest_mann_whitney_p(n, n_ref)
            row["hedges_g"] = stats.hedges_g(x, y)
            row["poi"] = stats.probability_of_improvement(x, y)
            row["poi_ci_low"], row["poi_ci_high"] = interval(
                stats.probability_of_improvement_ci, x, y
            )
            for name, column in (("speed", "updates_per_s"), ("diversity", "h_dispersion")):
                a, b = values(frame, column), values(base, column)
                row[f"{name}_ratio"] = stats.ratio_of_means(a, b)
                row[f"{name}_ci_low"], row[f"{name}_ci_high"] = interval(
                    stats.ratio_of_means_ci, a, b
                )
            if apart:  # drawn above all the same, so every other interval stays put
                row["speed_ratio"] = row["speed_ci_low"] = row["speed_ci_high"] = np.nan
            if speed.paired:
                row["speed_ratio"] = speed.ratio
                row["speed_ci_low"], row["speed_ci_high"] = speed.low, speed.high
            row["speed_pairs"], row["speed_pairs_side_by_side"] = speed.pairs, speed.side_by_side
            row["speed_faster"] = speed.faster
            row["note"] = row["final_return_note"]
        rows.append(row)
    table = pd.DataFrame(rows, columns=None if rows else ["arm", "n"])
    return _add_holm(table)


PAIRED_TEST = "Wilcoxon (paired)"
"""The ``*_test`` of updates/s where the arms' runs trained side by side
(:mod:`analysis.paired`)."""


def paired_test(speed: paired.PairedSpeed) -> stats.TestResult:
    """The Holm family's updates/s test of a paired comparison: Wilcoxon signed-rank."""
    if np.isfinite(speed.p):
        return stats.TestResult(speed.p, PAIRED_TEST, "")
    return stats.TestResult(speed.p, "none", "every pair trained at the same speed: no test")


def _finite_mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _add_holm(table: pd.DataFrame) -> pd.DataFrame:
    """Holm-adjust every primary p-value in the table as one family (arms x scores)."""
    p_columns = [f"{column}_p" for column in TESTED_SCORES if f"{column}_p" in table]
    if not p_columns:
        return table
    family = table[p_columns].to_numpy(float)
    adjusted = stats.holm(family.ravel()).reshape(family.shape)
    for index, column in enumerate(p_columns):
        table[f"{column}_holm"] = adjusted[:, index]
    table["holm_m"] = int(np.isfinite(family).sum())
    return table


def holm_family_sentence(m: int, over_tasks: bool) -> str:
    """The one wording of the Holm family, wherever the report names it (page 1, the
    per-task page, the method page): ``m`` tests (:func:`holm_family_size`), over every
    task x arm of a suite or every arm of one task."""
    units = "task x arm" if over_tasks else "arm"
    scores = ", ".join(TESTED_SCORES.values())
    return (
        f"Holm family: {m} tests, every {units} against the reference on each of "
        f"{{{scores}}}, adjusted together at alpha {ALPHA}."
    )


def holm_family_size(table: pd.DataFrame) -> int:
    """How many finite p-values the verdict's Holm family holds (0 when none)."""
    return int(table["holm_m"].iloc[0]) if "holm_m" in table and len(table) else 0


def verdict(table: pd.DataFrame, reference: str = DEFAULT_REFERENCE, alpha: float = ALPHA) -> str:
    """The answer in sentences: final return first, then return AUC, speed and diversity.

    A difference is called significant only where its Holm-adjusted p < alpha; where no
    test is defined the sentence says why instead.
    """
    others = table[table["arm"] != reference]
    if others.empty:
        return f"No comparison possible: no arm besides {reference} has finished runs."
    m = holm_family_size(table)
    sentences = []
    for column, label in TESTED_SCORES.items():
        if not _logged_by_any_run(table, column):
            sentences.append(f"{label[0].upper()}{label[1:]}: {_not_logged(column)} any run.")
        elif column == "final_return":
            sentences.append(_final_return_sentence(table, reference, alpha, m))
        else:
            sentences.append(_score_sentence(table, reference, column, label, alpha))
    return " ".join(sentences)


def _not_logged(column: str) -> str:
    """``'diversity/h_dispersion was not logged by'`` (the caller names whose runs)."""
    metrics = SCORE_METRICS[column]
    if len(metrics) == 1:
        return f"{metrics[0]} was not logged by"
    return f"{' and '.join(metrics)} were not both logged by"


def _logged_by_any_run(table: pd.DataFrame, column: str) -> bool:
    counts = table.get(f"{column}_runs")
    return counts is None or int(counts.sum()) > 0


def _untested_reason(row: dict, table: pd.DataFrame, reference: str, column: str) -> str:
    """Why ``row``'s arm has no p for ``column``: a metric its runs or the reference's never
    logged, else the test's own reason (too few runs, equal constants)."""
    runs = table.set_index("arm")[f"{column}_runs"] if f"{column}_runs" in table else None
    if runs is not None and runs.get(row["arm"], 0) == 0:
        return f"{_not_logged(column)} its runs"
    if runs is not None and reference in runs.index and runs[reference] == 0:
        return f"{_not_logged(column)} {reference}'s runs"
    return str(row.get(f"{column}_note", ""))


def _final_return_sentence(table: pd.DataFrame, reference: str, alpha: float, m: int) -> str:
    others = table[table["arm"] != reference]
    adjusted = others.get("final_return_p_holm")
    untested = others[adjusted.isna()] if adjusted is not None else others
    why = "; ".join(
        f"{row['arm']}: {_untested_reason(row, table, reference, 'final_return')}"
        for row in untested.to_dict("records")
    )
    if adjusted is None or adjusted.isna().all():
        return (
            f"No significant difference in final return versus {reference} can be claimed: "
            f"no test is defined ({why})."
        )
    significant = others[adjusted < alpha]
    if significant.empty:
        sentence = (
            f"No significant difference in final return between any arm and {reference} "
            f"(all Holm-adjusted p >= {alpha}, {m} tests in the family)"
        )
    else:
        parts = [
            f"{row.arm} {'above' if row.diff > 0 else 'below'} {reference} by "
            f"{abs(row.diff):.3g} ({_test_name(row.final_return_test)} Holm-adjusted p = "
            f"{row.final_return_p_holm:.3g})"
            for row in significant.itertuples()
        ]
        sentence = "Significant difference in final return: " + "; ".join(parts)
    return sentence + (f"; not tested: {why}." if why else ".")


def _test_name(test: str) -> str:
    return "Mann-Whitney, as Welch is undefined," if test == "Mann-Whitney" else test


def _score_sentence(
    table: pd.DataFrame, reference: str, column: str, label: str, alpha: float
) -> str:
    # Speed and diversity are reported as ratios, so say them as ratios.
    ratio_of = {"updates_per_s": "speed_ratio", "h_dispersion": "diversity_ratio"}
    parts = []
    for row in table[table["arm"] != reference].to_dict("records"):
        p = row.get(f"{column}_p_holm", np.nan)
        ratio = row.get(ratio_of.get(column, ""), np.nan)
        size = f"x{ratio:.2f} " if np.isfinite(ratio) else ""
        if not np.isfinite(p):
            reason = _untested_reason(row, table, reference, column)
            parts.append(f"{row['arm']} {size}untested ({reason})")
        elif p < alpha:
            parts.append(f"{row['arm']} {size}significant (p = {p:.2g})")
        else:
            parts.append(f"{row['arm']} {size}not significant (p = {p:.2g})")
    return f"{label[0].upper()}{label[1:]}: " + ", ".join(parts) + "."


def power_note(n_per_arm: int, family_size: int = 1, alpha: float = ALPHA) -> str:
    """The smallest effect this design can see, at the alpha its decisions actually use.

    Holm's first step tests the smallest p at ``alpha / family_size``; its last at
    ``alpha``. Cohen's d at 80% power for Welch's test (:func:`stats.min_detectable_effect`)
    at both, and Mann-Whitney's floor: the smallest p it can give at this n.
    """
    family_size = max(family_size, 1)
    d = stats.min_detectable_effect(n_per_arm, alpha=alpha / family_size)
    if not np.isfinite(d):
        return f"Power: with n = {n_per_arm} seeds per arm no test is possible."
    last = stats.min_detectable_effect(n_per_arm, alpha=alpha)
    floor = stats.smallest_mann_whitney_p(n_per_arm, n_per_arm)
    if floor >= alpha:
        reach = f"so it cannot reach even alpha = {alpha}"
    elif floor >= alpha / family_size:
        reach = f"so it cannot reach the first step's alpha/{family_size}"
    else:
        reach = "below the first step's alpha"
    return (
        f"Power: with n = {n_per_arm} seeds per arm (the smallest arm) and {family_size} tests "
        f"in the Holm family, the first Holm step tests at alpha/{family_size} = "
        f"{alpha / family_size:.3g}: there Welch's test detects only effects of Cohen's "
        f"d >= {d:.2f} with 80% power (d >= {last:.2f} at the last step's alpha {alpha}); "
        "smaller true differences will usually read as 'no significant difference'. "
        f"Mann-Whitney's smallest possible p at {n_per_arm} vs {n_per_arm} runs is "
        f"{floor:.3g}, {reach}."
    )


def speed_conditions(scores: pd.DataFrame) -> list[str]:
    """Warnings, one sentence each, when FINISHED runs did not train under comparable
    conditions, so that speed ratios may reflect the machine rather than the schedule.

    Flags: runs on different hardware or devices; mean load per core differing by more than
    ``LOAD_PER_CORE_LIMIT`` between runs; a run whose speed is off its arm's median by more
    than a factor ``SPEED_SPREAD_LIMIT``. Empty when nothing is flagged.
    """
    finished = scores[scores["status"] == "FINISHED"]
    warnings = []
    for tag in ("hardware", "device", "gpu"):
        if tag in finished:
            seen = sorted({str(value) for value in finished[tag] if str(value)})
            if len(seen) > 1:
                warnings.append(
                    f"Runs trained on different {tag} ({'; '.join(seen)}): speed compares "
                    "machines as well as schedules."
                )
    load = finished["load_per_core"].to_numpy(float) if "load_per_core" in finished else []
    if np.isfinite(load).sum() >= 2 and np.nanmax(load) - np.nanmin(load) > LOAD_PER_CORE_LIMIT:
        busiest = finished.iloc[int(np.nanargmax(load))]
        warnings.append(
            f"Machine load differed between runs: mean load per core {np.nanmin(load):.2f} to "
            f"{np.nanmax(load):.2f} (highest: {busiest['run_name']}); speed ratios are distorted."
        )
    elif not np.isfinite(load).any():
        warnings.append("No machine load was recorded for these runs: speed comparability unknown.")
    for arm, frame in finished.groupby("arm"):
        speed = frame["updates_per_s"].to_numpy(float)
        median = np.nanmedian(speed) if np.isfinite(speed).any() else np.nan
        if not np.isfinite(median) or median <= 0:
            continue
        off = frame[(speed > median * SPEED_SPREAD_LIMIT) | (speed < median / SPEED_SPREAD_LIMIT)]
        for row in off.itertuples():
            warnings.append(
                f"{row.run_name} trained at {row.updates_per_s:.3g} updates/s against its arm's "
                f"median {median:.3g}: an outlier in speed (machine load?), which distorts "
                f"{arm}'s speed."
            )
    return warnings


def missing_runs(
    runs: pd.DataFrame, planned: Sequence[tuple[str, str, int]] | None = None
) -> list[str]:
    """Names (``<arm>-seed<k>``, ``<task>/<arm>-seed<k>`` over several tasks) of the planned
    runs that have no run at all.

    Args:
        runs: ``AblationData.runs``.
        planned: ``(task, arm, seed)`` of every run planned (``AblationData.planned_runs``),
            in report order. None for an ablation that did not record its plan: it is then
            inferred per arm, as every task x that arm's seeds ``0..k`` (``k`` its largest
            seed on any task), since adaptive seeding gives each arm its own seeds and every
            task the same ones: an arm decided early never had the later seeds.
    """
    task_of = runs["task"] if "task" in runs else pd.Series([""] * len(runs), index=runs.index)
    present = set(zip(task_of, runs["arm"], runs["seed"], strict=True))
    if planned is None:
        last_seed = runs.groupby("arm")["seed"].max()
        planned = [
            (task, arm, seed)
            for task in dict.fromkeys(task_of)
            for arm in ordered_arms(runs["arm"])
            for seed in range(int(last_seed[arm]) + 1)
        ]
    prefix = len({task for task, _, _ in planned} | set(task_of)) > 1
    return [
        (f"{task}/" if prefix else "") + f"{arm}-seed{seed}"
        for task, arm, seed in planned
        if (task, arm, seed) not in present
    ]


def problems_note(runs: pd.DataFrame, planned: Sequence[tuple[str, str, int]] | None = None) -> str:
    """E.g. ``"2 of 8 runs did not finish ...: coupled-seed1 (FAILED), ..."``; empty when none.

    Also lists the planned runs that have no run at all (see :func:`missing_runs`).
    """
    problems = runs[runs["status"] != "FINISHED"]
    missing = missing_runs(runs, planned)
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
