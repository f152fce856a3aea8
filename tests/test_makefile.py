"""The Makefile passes every value on as one shell word: real ``make`` runs of its targets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def make(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The repository's ``make ARGS`` run in ``cwd``, with this interpreter's environment
    standing in for ``.venv`` (the install stamp taken as up to date), output captured."""
    bin_dir = str(Path(sys.executable).parent)
    command = ["make", "-f", str(REPO_ROOT / "Makefile"), "-o", ".venv/.installed"]
    command += [f"BIN={bin_dir}", *args]
    # Not a sub-make of `make test`: its flags would add "Entering directory" lines.
    own = {"MLFLOW_TRACKING_URI", "MAKEFLAGS", "MAKELEVEL", "MFLAGS"}
    env = {k: v for k, v in os.environ.items() if k not in own}
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a timeout stops what make started, too
    )
    try:
        out, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def test_a_variable_cannot_inject_a_command_and_the_failure_shows(tmp_path: Path) -> None:
    result = make("ablation", "ENV=nope", "SEEDS=1", "EXPERIMENT=x; echo INJECTED", cwd=tmp_path)
    assert "INJECTED" not in result.stdout.replace("echo INJECTED", "")
    assert result.returncode != 0, result.stdout
    assert "unknown env 'nope'" in result.stderr


def test_set_passes_config_overrides_to_the_ablation(tmp_path: Path) -> None:
    result = make("ablation", "ENV=cartpole", "SEEDS=1", "SET=train.ratio=32", cwd=tmp_path)
    assert result.returncode != 0
    assert "train.ratio" in result.stderr, result.stderr
    assert not list(tmp_path.iterdir())  # stopped before creating a store


def test_quotes_in_a_value_reach_the_program_as_typed(tmp_path: Path) -> None:
    result = make("ablation", "SEEDS=1", 'ENV=it\'s "a" `b`', cwd=tmp_path)
    assert result.returncode != 0
    assert 'it\'s "a" `b`' in result.stderr, result.stderr


def test_bench_learn_passes_arms_and_seeds_only_when_given(tmp_path: Path) -> None:
    # The ablation's defaults (SEEDS=5, ARMS=separate,coupled) are not bench-learn's.
    given = make("-n", "bench-learn", "ARMS=separate_all", "SEEDS=1", cwd=tmp_path).stdout
    plain = make("-n", "bench-learn", cwd=tmp_path).stdout
    assert "--arms 'separate_all'" in given and "--seeds '1'" in given
    assert "--arms" not in plain and "--seeds" not in plain


def test_bench_with_a_shape_does_not_pass_a_preset_it_ignores(tmp_path: Path) -> None:
    shaped = make("-n", "bench", "SHAPE=peer-tiny", cwd=tmp_path).stdout
    plain = make("-n", "bench", "PRESET=debug", cwd=tmp_path).stdout
    assert "--shape 'peer-tiny'" in shaped and "--preset" not in shaped
    assert "--preset 'debug'" in plain


def test_export_and_report_from_pass_their_folders_as_typed(tmp_path: Path) -> None:
    export = make("-n", "export", "EXPERIMENT=a b", "OUT=results/it's", cwd=tmp_path).stdout
    assert (
        "-m analysis.export --experiment 'a b'" in export and "--out 'results/it'\\''s'" in export
    )
    plain = make("-n", "export", cwd=tmp_path).stdout
    assert "--experiment" not in plain and "--out" not in plain
    report = make("-n", "report", "FROM=results/x y", cwd=tmp_path).stdout
    assert "-m reports.build --from 'results/x y'" in report and "--experiment" not in report
    assert "--from" not in make("-n", "report", "EXPERIMENT=e", cwd=tmp_path).stdout


def test_export_and_report_from_say_what_is_wrong_in_one_line(tmp_path: Path) -> None:
    """Real runs: no store for export, no folder for the report; exit 2, nothing written."""
    exported = make("export", "EXPERIMENT=nope", "OUT=results/nope", cwd=tmp_path)
    assert exported.returncode != 0
    assert exported.stderr.strip().splitlines()[0].startswith("error: no MLflow store at")
    built = make("report", "FROM=results/nope", cwd=tmp_path)
    assert built.returncode != 0
    assert (
        built.stderr.strip().splitlines()[0]
        == "error: no results folder at results/nope (make export writes one)"
    )
    assert not list(tmp_path.iterdir())


def test_soak_passes_its_faults_and_seed(tmp_path: Path) -> None:
    given = make("-n", "soak", "SOAK_FAULTS=3", "SOAK_SEED=7", cwd=tmp_path).stdout
    plain = make("-n", "soak", cwd=tmp_path).stdout
    assert "-m benchmarks.soak --faults '3' --seed '7'" in given
    assert "--faults '30' --seed '0'" in plain


def test_publish_from_a_folder_passes_it_and_only_then(tmp_path: Path) -> None:
    given = make("-n", "publish", "STUDY=cpu_classic", "FROM=results/cpu classic", cwd=tmp_path)
    assert "--from 'results/cpu classic'" in given.stdout
    assert "--from" not in make("-n", "publish", "STUDY=cpu_classic", cwd=tmp_path).stdout
