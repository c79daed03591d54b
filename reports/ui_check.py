"""Check that a user who opens MLflow's UI as the search tells them sees the search's runs.

It serves the tracking store with ``mlflow server`` on loopback (or uses the tracking server
the URI names), opens the address the search prints (plumbing/ui.py) in headless Chromium, and
checks the rendered page: the "Training runs" table with the search's run in it. It saves a
screenshot of what a user would see.

    python reports/ui_check.py --tracking-uri sqlite:///mlflow.db [--experiment font] [--name NAME]

Needs Chromium (Debian: ``apt install chromium``). Exit 0 when the runs table shows the search,
1 when it does not, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from hpsearch.plumbing.cli import ArgumentParser, run_main
from hpsearch.plumbing.errors import UsageError
from hpsearch.plumbing.servers import redact, tracking_server
from hpsearch.plumbing.ui import runs_url
from hpsearch.reports.runs import latest_search, open_client

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
SERVER_START_S = 90.0  # mlflow server's first start migrates a fresh SQLite store: tens of seconds
RENDER_MS = 20_000  # virtual time the page gets to fetch and render its runs
WINDOW = "1400,900"


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@contextlib.contextmanager
def serving(tracking_uri: str | None) -> Iterator[str]:
    """The UI's address: the tracking server itself, or ``mlflow server`` started on loopback."""
    server = tracking_server(tracking_uri)
    if server:
        yield server
        return
    port = _free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--backend-store-uri", tracking_uri] if tracking_uri else []
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            address = f"http://127.0.0.1:{port}"
            _wait_until_up(address, process, log)
            yield address
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def render(browser: str, url: str, screenshot: Path | None) -> str:
    """The page's DOM after its scripts ran; with ``screenshot``, a PNG of the window too."""
    base = [browser, "--headless=new", "--disable-gpu", "--no-sandbox", f"--window-size={WINDOW}"]
    base += [f"--virtual-time-budget={RENDER_MS}", "--no-first-run", "--disable-extensions"]
    with tempfile.TemporaryDirectory(prefix="hpsearch-chromium-") as profile:
        base += [f"--user-data-dir={profile}"]  # a fresh browser: no toggle remembered
        dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [*base, f"--screenshot={screenshot.resolve()}", url], capture_output=True, timeout=120
            )
    return dom


def shows_runs(dom: str, search: str) -> list[str]:
    """What a runs page must show that ``dom`` lacks (empty: all there)."""
    # "matching runs" is the runs table's footer ("13 matching runs"); the sidebar of every
    # experiment page says "Training runs", so that alone proves nothing.
    wanted = {"the runs table": "matching runs", f"the search's run {search!r}": search}
    return [what for what, text in wanted.items() if text not in dom]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(__doc__)
    p.add_argument(
        "--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or MLflow's own)"
    )
    p.add_argument("--experiment", help="MLflow experiment (default: that of the most recent search)")
    p.add_argument(
        "--name",
        dest="search",
        metavar="NAME",
        help="the search's name (default: the experiment's most recent search)",
    )
    p.add_argument("--search", dest="search", help=argparse.SUPPRESS)  # the old spelling, kept
    p.add_argument(
        "--screenshot", type=Path, default=Path("ui.png"), help="where to save it (default ui.png)"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    browser = find_browser()
    if browser is None:
        raise UsageError(
            f"no Chromium found (looked for {', '.join(BROWSERS)}); on Debian: apt install chromium"
        )
    client = open_client(args.tracking_uri)
    experiment, search = latest_search(client, args.experiment, args.search)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    with serving(args.tracking_uri) as server:
        url = runs_url(server, experiment_id)
        dom = render(browser, url, args.screenshot)
    missing = shows_runs(dom, search)
    if missing:
        print(f"{redact(url)} does not show {' or '.join(missing)}; screenshot: {args.screenshot}")
        return 1
    print(f"{redact(url)} shows the runs table with {search}; screenshot: {args.screenshot}")
    return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(address: str, process: subprocess.Popen, log) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            last = (log.read().decode(errors="replace").strip().splitlines() or ["no output"])[-1]
            raise UsageError(f"mlflow server exited ({last})")
        try:
            with urllib.request.urlopen(address + "/health", timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise UsageError(f"mlflow server did not answer at {address} within {SERVER_START_S:.0f} s")


if __name__ == "__main__":
    run_main(main)
