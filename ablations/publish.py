"""Publish a study: its results folder with the report and a README that states the answer.

    python -m ablations.publish --study cpu_classic [--experiment NAME] [--out DIR]
                              [--tracking-uri URI]

The experiment defaults to the study's name, the folder to ``results/<experiment>``.

``results/<name>/`` then holds what ``make export`` writes (``runs.csv``, ``curves.csv``,
``ablation.json``, ``decisions.csv``, ``cautions.txt``), ``report.pdf`` and ``README.md``.
Both are built from the exported files themselves, read back as ``make report FROM=`` reads
them, so the folder says nothing its CSV files do not. The folder is replaced whole or not
at all. Bad input (no store, unknown experiment, nothing finished, an ``--out`` that is not
a results folder): one line, exit code 2, nothing written.

A merged study (``merge = [...]`` in its file, :mod:`analysis.merge`) is published from its
parts' published folders (``results/<part>/``) instead of a store: their runs at the tasks
they share, once git shows the agent's code the same at every commit the runs record.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from ablations.plan.study import (
    MergedStudy,
    Study,
    is_merged_study,
    load_merged_study,
    load_study,
)
from agent.cli import ArgumentParser, first_line
from agent.config import ConfigError
from analysis.export import default_out, export, folder_size
from analysis.merge import MergeError, Part, check_same_agent, merge
from analysis.results import read_results, write_results
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

    return export(experiment, out, tracking_uri, _finisher(out, study.name, study.description))


def republish(study: Study, folder: str | Path, out: str | Path) -> Path:
    """Write ``out`` (``folder`` itself, replaced whole, when equal) from the published
    ``folder``'s files: the same runs, curves and decisions, with the report, README and
    cautions rebuilt by this code.

    Raises:
        AblationDataError: ``folder`` unreadable, or ``out`` in the way.
    """
    data, adaptive = read_results(folder)
    out = Path(out)
    return write_results(data, adaptive, out, _finisher(out, study.name, study.description))


def publish_merged(study: MergedStudy, out: str | Path, root: str | Path = "results") -> Path:
    """Write ``out`` from the published folders ``<root>/<part>`` of ``study``'s parts.

    Raises:
        AblationDataError: a part not published or unreadable, code or configs that differ
            (:mod:`analysis.merge`), or ``out`` in the way.
    """
    parts = []
    for name in study.parts:
        folder = Path(root) / name
        if not folder.is_dir():
            raise MergeError(f"{folder} is not published: make study STUDY={name} first")
        data, adaptive = read_results(folder)
        parts.append(Part(name, data, adaptive))
    check_same_agent([str(c) for p in parts for c in p.data.runs["git_commit"] if str(c)])
    merged = merge(parts, study.name, study.reference)
    out = Path(out)
    return write_results(merged, None, out, _finisher(out, study.name, study.description))


def _finisher(out: Path, study: str, description: str) -> Callable[[Path], None]:
    """What completes a published folder once its CSV files are written: the PDF and the
    README, both built from those files read back."""

    def finish(folder: Path) -> None:
        data, adaptive = read_results(folder)
        with tempfile.TemporaryDirectory() as scratch:
            pdf = write_report(data, adaptive, out_dir=scratch)
            shutil.copyfile(pdf, folder / REPORT_FILE)
        text = readme_text(data, adaptive, out.name, study, description)
        (folder / README_FILE).write_text(text)

    return finish


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; exit code 2 with one line on stderr for bad input."""
    parser = ArgumentParser(prog="python -m ablations.publish", description=__doc__.split("\n")[0])
    parser.add_argument("--study", required=True, help="the study (studies/<name>.toml)")
    parser.add_argument("--experiment", default=None, help="default: the study's name")
    parser.add_argument("--out", default=None, help="folder to write; default results/<name>")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI")
    parser.add_argument(
        "--from",
        dest="source",
        default=None,
        help="a published folder to publish again (its report and README rebuilt by this "
        "code from its files), instead of a store",
    )
    args = parser.parse_args(argv)
    try:
        if is_merged_study(args.study):
            return _publish_merged(load_merged_study(args.study), args.out)
        study = load_study(args.study)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.source is not None:
        try:
            out = republish(study, args.source, args.out or args.source)
        except READ_ERRORS as error:
            print(f"error: {first_line(error)}", file=sys.stderr)
            return 2
        return _published(out)
    experiment = args.experiment or study.name
    missing = missing_store(args.tracking_uri)
    if missing:
        print(f"error: no MLflow store at {missing}; run the study first", file=sys.stderr)
        return 2
    try:
        out = publish(study, experiment, args.out or default_out(experiment), args.tracking_uri)
    except READ_ERRORS as error:
        print(f"error: {first_line(error)}", file=sys.stderr)
        return 2
    return _published(out)


def _publish_merged(study: MergedStudy, out: str | None) -> int:
    try:
        folder = publish_merged(study, out or default_out(study.name))
    except READ_ERRORS as error:
        print(f"error: {first_line(error)}", file=sys.stderr)
        return 2
    return _published(folder)


def _published(out: Path) -> int:
    files = ", ".join(sorted(path.name for path in out.iterdir()))
    print(f"published {out}: {folder_size(out):,} bytes ({files})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
