"""Publish a study: its results folder with the report and a README that states the answer.

    python -m ablations.publish --study cpu_classic [--experiment NAME] [--out DIR]
                              [--tracking-uri URI]

The experiment defaults to the study's name, the folder to ``results/<experiment>``.

``results/<name>/`` then holds what ``make export`` writes (``runs.csv``, ``curves.csv``,
``ablation.json``, ``decisions.csv``, ``cautions.txt``), ``report.pdf`` and ``README.md``. Both are built from
the exported files themselves, read back as ``make report FROM=`` reads them, so the folder
says nothing its CSV files do not. The folder is replaced whole or not at all. Bad input (no
store, unknown experiment, nothing finished, an ``--out`` that is not a results folder): one
line, exit code 2, nothing written.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ablations.study import Study, load_study
from agent.config import ConfigError
from analysis.export import default_out, export, folder_size
from analysis.results import read_results
from analysis.store import READ_ERRORS, missing_store
from reports.build import write_report
from reports.study_readme import readme_text

REPORT_FILE, README_FILE = "report.pdf", "README.md"


def publish(
    study: Study, experiment: str, out: str | Path, tracking_uri: str | None = None
) -> Path:
    """Write ``out`` from the ablation ``experiment`` that ``study`` ran (see the module
    docstring); returns it.

    Raises:
        AblationDataError: unknown experiment, no finished run, or ``out`` in the way.
    """
    out = Path(out)

    def finish(folder: Path) -> None:
        data, adaptive = read_results(folder)
        with tempfile.TemporaryDirectory() as scratch:
            pdf = write_report(data, adaptive, out_dir=scratch)
            shutil.copyfile(pdf, folder / REPORT_FILE)
        text = readme_text(data, adaptive, out.name, study.name, study.description)
        (folder / README_FILE).write_text(text)

    return export(experiment, out, tracking_uri, finish)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; exit code 2 with one line on stderr for bad input."""
    parser = argparse.ArgumentParser(
        prog="python -m ablations.publish", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--study", required=True, help="the study (studies/<name>.toml)")
    parser.add_argument("--experiment", default=None, help="default: the study's name")
    parser.add_argument("--out", default=None, help="folder to write; default results/<name>")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI")
    args = parser.parse_args(argv)
    try:
        study = load_study(args.study)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    experiment = args.experiment or study.name
    missing = missing_store(args.tracking_uri)
    if missing:
        print(f"error: no MLflow store at {missing}; run the study first", file=sys.stderr)
        return 2
    try:
        out = publish(study, experiment, args.out or default_out(experiment), args.tracking_uri)
    except READ_ERRORS as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    files = ", ".join(sorted(path.name for path in out.iterdir()))
    print(f"published {out}: {folder_size(out):,} bytes ({files})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
