"""Export an ablation from MLflow to a results folder that rebuilds its report without the
store (:mod:`analysis.results`): ``make export EXPERIMENT=<name> OUT=results/<name>``.

    python -m analysis.export [--experiment NAME] [--out DIR] [--tracking-uri URI]

Defaults: the most recent ablation in the store, into ``results/<experiment>``. Prints the
folder, its runs and its size in bytes. An unknown experiment, an ablation with no finished run, a
missing store or an ``--out`` that exists and is not an earlier export: one line, exit code 2,
and nothing written.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from agent.cli import ArgumentParser, first_line
from analysis.decisions import load_adaptive
from analysis.load import latest_ablation, load_ablation, require_finished
from analysis.results import RUNS_FILE, check_destination, write_results
from analysis.store import READ_ERRORS, missing_store

DEFAULT_ROOT = Path("results")


def export(
    experiment: str,
    out: str | Path,
    tracking_uri: str | None = None,
    finish: Callable[[Path], None] | None = None,
) -> Path:
    """Write the results folder ``out`` of the ablation ``experiment``; returns ``out``.
    ``finish`` may add files to it before it takes its place (see
    :func:`analysis.results.write_results`).

    Raises:
        AblationDataError: unknown experiment, no finished run, or ``out`` in the way
            (:class:`analysis.results.ResultsFolderError`); nothing is written then.
    """
    check_destination(Path(out))  # before the store is read: a refusal costs nothing
    data = load_ablation(experiment, tracking_uri)
    require_finished(data)
    return write_results(data, load_adaptive(tracking_uri, data.parent_run_id), out, finish)


def folder_size(folder: Path) -> int:
    """Bytes of the files in ``folder`` (not recursive: a results folder is flat)."""
    return sum(path.stat().st_size for path in folder.iterdir() if path.is_file())


def default_out(experiment: str) -> Path:
    """``results/<experiment>``, the name made safe for a folder."""
    return DEFAULT_ROOT / re.sub(r"[^A-Za-z0-9._-]+", "_", experiment)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; exit code 2 with one line on stderr for bad input."""
    parser = ArgumentParser(prog="python -m analysis.export", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--experiment", default=None, help="ablation (MLflow experiment) name; default: the latest"
    )
    parser.add_argument("--out", default=None, help="folder to write; default results/<name>")
    parser.add_argument(
        "--tracking-uri", default=None, help="MLflow tracking URI (default: MLflow's)"
    )
    args = parser.parse_args(argv)
    missing = missing_store(args.tracking_uri)
    if missing:
        print(f"error: no MLflow store at {missing}; run an ablation first", file=sys.stderr)
        return 2
    try:
        experiment = args.experiment or latest_ablation(args.tracking_uri)
        out = export(experiment, args.out or default_out(experiment), args.tracking_uri)
    except READ_ERRORS as error:
        print(f"error: {first_line(error)}", file=sys.stderr)
        return 2
    runs = len(pd.read_csv(out / RUNS_FILE, dtype=str))
    print(f"{out}: {runs} runs, {folder_size(out):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
