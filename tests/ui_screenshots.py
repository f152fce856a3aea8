"""What `make ui` shows first, checked in a headless Chromium (a script a developer runs).

    python tests/ui_screenshots.py [--out ui-screenshots] [--keep] [--suite]

Runs a tiny real ablation (CartPole, debug preset, 2 arms x 2 seeds, about a minute on a
CPU; with ``--suite`` CartPole and Acrobot, 2 arms x 1 seed each) in a temporary folder,
serves its store with ``mlflow ui`` on a free loopback port, and takes a screenshot (and the
rendered DOM) of the address `make ui` prints, the parent run's page and the home page. It
checks that the address opens the training runs table (not the GenAI overview) grouped by
arm (by task and arm with ``--suite``, and no group of one arm across tasks) with the
final-return and speed columns, and that the parent run's description holds the table of
arms with a link to every run. Exits 0 when every check passes, 1 when one fails, 77
(skipped) without Chromium. Look at the PNGs in ``--out``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mlflow.tracking import MlflowClient
from servers import free_port, start_http_server, stop_server

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
TASKS = {False: ("cartpole",), True: ("cartpole", "acrobot")}
ARMS = ("separate", "coupled")
ABLATION = [
    "--preset", "debug", "--steps", "300",
    "--set", "train.prefill=100", "--set", "train.train_ratio=8",
    "--set", "train.eval_every=100", "--set", "train.eval_episodes=1",
    "--set", "train.log_every=50", "--jobs", "2", "--cpus-per-run", "1",
    "--experiment", "ui-check", "--arms", ",".join(ARMS),
]  # fmt: skip
SKIPPED = 77


def run_ablation(folder: Path, suite: bool) -> str:
    """A tiny real ablation (with its report) in ``folder``; returns its tracking URI."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    tasks = ["--env", ",".join(TASKS[suite]), "--seeds", "1" if suite else "2"]
    command = [sys.executable, "-m", "ablations", *tasks, *ABLATION]
    subprocess.run(command, cwd=folder, env=env, check=True, timeout=900)
    return f"sqlite:///{folder}/mlflow.db"


def serve(folder: Path, uri: str, port: int) -> subprocess.Popen:
    """``mlflow ui`` on the store, as `make ui` starts it; returns once it answers."""
    mlflow = Path(sys.executable).parent / "mlflow"
    command = [str(mlflow), "ui", "--backend-store-uri", uri, "--host", "127.0.0.1"]
    return start_http_server(
        [*command, "--port", str(port)], port, folder / "mlflow-ui.log", folder
    )


def chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", f"--user-data-dir={profile}", "--window-size=1400,900",
        "--virtual-time-budget=15000", *args,
    ]  # fmt: skip
    # Seconds on an idle machine; one screenshot took over 180 s at a load average of 19 on
    # two cores.
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def capture(browser: str, profile: Path, url: str, png: Path) -> str:
    """Screenshot of ``url`` into ``png``; returns the page's rendered DOM."""
    chromium(browser, profile, f"--screenshot={png}", url)
    return chromium(browser, profile, "--dump-dom", url).stdout


def group_checks(dom: str, suite: bool) -> dict[str, bool]:
    """The runs table's group rows: MLflow labels a group of one tag ``Group: <value>``, of
    several ``Group: task: <task>, arm: <arm>``."""
    if not suite:
        return {"its runs are grouped by arm": all(f"Group: {arm}" in dom for arm in ARMS)}
    pairs = [(task, arm) for task in TASKS[True] for arm in ARMS]
    return {
        "its runs are grouped by task and arm": all(
            f"Group: task: {task}, arm: {arm}" in dom for task, arm in pairs
        ),
        "no group holds one arm across tasks": not any(f"Group: {arm}" in dom for arm in ARMS),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="ui-screenshots", help="folder for PNGs and DOMs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary store")
    parser.add_argument("--suite", action="store_true", help="an ablation over two tasks")
    args = parser.parse_args(argv)
    browser = next((shutil.which(name) for name in CHROMIUM if shutil.which(name)), None)
    if browser is None:
        print("skipped: no Chromium (apt-get install chromium)")
        return SKIPPED
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="ui-check-"))
    server = None
    try:
        uri = run_ablation(folder, args.suite)
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("ui-check")
        parent = client.search_runs([experiment.experiment_id], "tags.`ablation.role`='parent'")
        children = client.search_runs([experiment.experiment_id], "tags.`ablation.role`='child'")
        port = free_port()
        server = serve(folder, uri, port)
        base = f"http://127.0.0.1:{port}/"
        address = subprocess.run(
            [sys.executable, "-m", "ablations.ui", uri, str(port)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        pages = {
            "1-make-ui-address": address,
            "2-parent-run": f"{base}#/experiments/{experiment.experiment_id}"
            f"/runs/{parent[0].info.run_id}?workflowType=machine_learning",
            "3-home": base,
        }
        dom = {}
        with tempfile.TemporaryDirectory() as profile:
            for name, url in pages.items():
                dom[name] = capture(browser, Path(profile), url, out / f"{name}.png")
                (out / f"{name}.html").write_text(dom[name])
        first = dom["1-make-ui-address"]
        checks = {
            "make ui's address opens the runs table, not the GenAI overview": "Run Name" in first
            and "Detect Issues" not in first,
            **group_checks(first, args.suite),
            "with the final return and updates/s columns": "final/eval_return" in first
            and "final/updates_per_s" in first,
            "the experiment's description says where the answer is": "The answer:"
            in first.replace("<strong>", "").replace("</strong>", ""),
            "the parent run's description has the table of arms": "mean final return"
            in dom["2-parent-run"],
            "the table links every run": all(
                run.info.run_id in dom["2-parent-run"] for run in children
            ),
        }
        for check, ok in checks.items():
            print(f"{'ok  ' if ok else 'FAIL'} {check}")
        print(f"screenshots: {', '.join(str(out / f'{name}.png') for name in pages)}")
        return 0 if all(checks.values()) else 1
    finally:
        if server is not None:
            stop_server(server)
        if args.keep:
            print(f"store kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
