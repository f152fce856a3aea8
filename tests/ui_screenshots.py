"""What `make ui` shows first, checked in a headless Chromium against what docs/mlflow-ui.md says
(a script a developer runs).

    python tests/ui_screenshots.py [--out ui-screenshots] [--keep] [--suite]

Runs a tiny real ablation (CartPole, debug preset, 2 arms x 2 seeds, a few minutes on a
busy CPU; with ``--suite`` CartPole and Acrobot, 2 arms x 1 seed each) in a temporary
folder, serves its store with ``mlflow ui`` on a free loopback port, and checks each claim
of docs/mlflow-ui.md ("Reading the results in MLflow's UI"), naming the words it checks (a
claim the page no longer makes fails too):

- the assistant panel, on a fresh browser profile: it opens by itself on the first visit,
  is open again after a browser restart, stays closed once closed with its × (a click,
  over the DevTools protocol: tests/cdp.py), and opens again at another address;
- the address `make ui` prints: the training runs table (not the GenAI overview), the
  parent run first in its own group, a group per arm (per task and arm with ``--suite``)
  with the final-return and speed columns, the reference arm's marked;
- the charts page the experiment's description links: the view's section first, opening
  on the learning curve ``eval/return`` (a line per arm), then bars of the final return
  and speed;
- the parent run's page: the table of arms linking every run, and the report's place.

Screenshots (PNG) and rendered DOMs go to ``--out``. Exits 0 when every check passes, 1
when one fails, 77 (skipped) without Chromium.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from cdp import Chromium, DevToolsError
from mlflow.tracking import MlflowClient
from servers import free_port, start_http_server, stop_server
from ui_pages import (
    ASSISTANT_CLOSE,
    assistant_open,
    charts_checks,
    readme_says,
    table_checks,
)

from ablations.tracking.view import CHART_SECTION

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
TASKS = {False: ("cartpole",), True: ("cartpole", "acrobot")}
ARMS = ("separate", "coupled")
REFERENCE = "separate"
EXPERIMENT = "ui-check"
ABLATION = [
    "--preset", "debug", "--steps", "300",
    "--set", "train.prefill=100", "--set", "train.train_ratio=8",
    "--set", "train.eval_every=100", "--set", "train.eval_episodes=1",
    "--set", "train.log_every=50", "--jobs", "2", "--cpus-per-run", "1",
    "--experiment", EXPERIMENT, "--arms", ",".join(ARMS),
]  # fmt: skip
SKIPPED = 77
WAIT_S = 300.0
"""How long a page may take to show what is waited for (minutes on a loaded machine)."""


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


def assistant_checks(browser: str, profile: Path, address: str, out: Path) -> dict[str, bool]:
    """The README's claims on the assistant panel, on the fresh ``profile`` (left with the
    panel closed): each browser start is a restart on the same profile."""
    panel = f"document.querySelector('[data-component-id=\"{ASSISTANT_CLOSE}\"]')"
    table = "document.body.innerText.includes('Group: ')"
    first = Chromium(browser, profile)
    try:
        first.open(address)
        opened = first.wait_for(f"!!{panel} && {table}", WAIT_S)
        png = first.send("Page.captureScreenshot", timeout=WAIT_S)["data"]
        (out / "0-first-visit.png").write_bytes(base64.b64decode(png))
    finally:
        first.close()
    again = Chromium(browser, profile)
    try:
        again.open(address)
        reopened = again.wait_for(f"!!{panel}", WAIT_S)
        if reopened:
            again.evaluate(f"{panel}.click()")
        closed = reopened and again.wait_for(f"!{panel}", WAIT_S)
    finally:
        again.close()
    stays = capture(browser, profile, address, out / "0-after-closing-the-assistant.png")
    local = re.sub(r"//127\.0\.0\.1:", "//localhost:", address)
    elsewhere = chromium(browser, profile, "--dump-dom", local).stdout
    words = {
        "first": "MLflow opens it by itself the first time a browser profile visits a local "
        "address (host and port)",
        "restart": "keeps it open on later visits, after a browser restart too, until you "
        "close it with its ×; closed, it stays closed",
        "elsewhere": "so another address (another `PORT=`, or `localhost` for `127.0.0.1`) "
        "opens it once more",
    }
    return {
        f'README "{words["first"]}"': readme_says(words["first"]) and opened,
        f'README "{words["restart"]}"': readme_says(words["restart"])
        and reopened
        and closed
        and "Run Name" in stays
        and not assistant_open(stays),
        f'README "{words["elsewhere"]}"': readme_says(words["elsewhere"])
        and assistant_open(elsewhere),
    }


def charts_address(base: str, note: str) -> str:
    """The charts page the experiment's description links (its one CHART link)."""
    (link,) = re.findall(r"\((#/experiments/[^)]*compareRunsMode=CHART)\)", note)
    return base + link


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
        experiment = client.get_experiment_by_name(EXPERIMENT)
        parent = client.search_runs([experiment.experiment_id], "tags.`ablation.role`='parent'")
        children = client.search_runs([experiment.experiment_id], "tags.`ablation.role`='child'")
        port = free_port()
        server = serve(folder, uri, port)
        base = f"http://127.0.0.1:{port}/"
        address = subprocess.run(
            [sys.executable, "-m", "ablations.tracking.ui", uri, str(port)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        pages = {
            "1-make-ui-address": address,
            "2-charts": charts_address(base, experiment.tags["mlflow.note.content"]),
            "3-parent-run": f"{base}#/experiments/{experiment.experiment_id}"
            f"/runs/{parent[0].info.run_id}?workflowType=machine_learning",
            "4-home": base,
        }
        with tempfile.TemporaryDirectory() as profile:
            checks = assistant_checks(browser, Path(profile), address, out)
            dom = {}
            for name, url in pages.items():  # the panel closed: the pages as read after
                dom[name] = capture(browser, Path(profile), url, out / f"{name}.png")
                (out / f"{name}.html").write_text(dom[name])
        checks |= page_checks(dom, args.suite, parent[0].info.run_name, children)
        for check, ok in checks.items():
            print(f"{'ok  ' if ok else 'FAIL'} {check}")
        print(f"screenshots: {', '.join(str(p) for p in sorted(out.glob('*.png')))}")
        return 0 if all(checks.values()) else 1
    except DevToolsError as error:
        print(f"FAIL the browser: {error}")
        return 1
    finally:
        if server is not None:
            stop_server(server)
        if args.keep:
            print(f"store kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def page_checks(dom: dict[str, str], suite: bool, parent: str, children: list) -> dict[str, bool]:
    """The README's claims on the pages (``dom`` by page name), each check prefixed with
    the README's words it stands for."""
    first, charts, parent_page = dom["1-make-ui-address"], dom["2-charts"], dom["3-parent-run"]
    mark = " (reference)"
    arm_groups = [
        f"Group: {task}/{arm}{mark * (arm == REFERENCE)}"
        if suite
        else f"Group: {arm}{mark * (arm == REFERENCE)}"
        for task in TASKS[suite]
        for arm in ARMS
    ]
    table = table_checks(first, parent, arm_groups, REFERENCE)
    graphs = charts_checks(charts, CHART_SECTION, arm_groups)
    text = parent_page.replace("<code>", "`").replace("</code>", "`")
    plain = " ".join(re.sub(r"<[^>]+>", "", text).split())  # the description as read
    claims = {
        "runs table (*Model training*)": {
            "make ui's address opens the runs table, not the GenAI overview": "Run Name" in first
            and "Detect Issues" not in first,
        },
        "The parent run comes first, in its own group *the answer (parent run)*": {
            key: table[key] for key in ("the parent run comes first, in its own group, unfolded",)
        },
        "one group per arm (per task and arm in an ablation over several tasks)": {
            "one group per arm" + " (per task and arm)" * suite: table["one group per arm"],
        },
        "the reference arm's marked *(reference)*": {
            key: table[key] for key in ("the reference arm's group alone is marked (reference)",)
        },
        "each group's row with its mean `final/eval_return` and `final/updates_per_s`": {
            "with the final return and updates/s columns": "final/eval_return" in first
            and "final/updates_per_s" in first,
        },
        "opens the charts on the learning curve, `eval/return` against env steps, one colour "
        "per arm": {
            key: graphs[key]
            for key in (
                "the charts open on the view's section",
                "its first chart is the learning curve eval/return, a line chart",
                "with a line per arm",
            )
        },
        "beside bars of each arm's mean `final/eval_return` and `final/updates_per_s`": {
            key: graphs[key] for key in ("then bars of final/eval_return and final/updates_per_s",)
        },
        "Its description is a table of arms (finished runs, mean final return, mean "
        "updates/s) linking every run": {
            "the parent run's description has the table of arms": "mean final return"
            in parent_page,
            "the table links every run": all(run.info.run_id in parent_page for run in children),
        },
        "says where the PDF report is: its *Artifacts*, `report/`": {
            "the ablation has ended: the description links the attached report": (
                "The PDF report (statistics, learning curves): artifacts → `report/`" in plain
            )
            and "when the ablation ends" not in plain,
        },
    }
    return {
        f'README "{words}": {check}': readme_says(words) and ok
        for words, results in claims.items()
        for check, ok in results.items()
    }


if __name__ == "__main__":
    sys.exit(main())
