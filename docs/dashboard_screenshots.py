"""The Ray dashboard as a user sees it during a raysim run: screenshots in headless Chromium.

Ray 2.60 keeps token authentication on, so the browser goes through a small proxy on
127.0.0.1 that adds `Authorization: Bearer <token>` to every request (the token Ray reads:
$RAY_AUTH_TOKEN, else the file $RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token). With
`--run`, the command runs in the background and the pages (the run's job page, with its
task timeline, too) are taken while Ray Train's state API lists the run as RUNNING, so an
embedded dashboard (`raysim run --dashboard`, gone with the run) works as well.

    raysim up --dashboard-port 0          # prints the dashboard URL
    python docs/dashboard_screenshots.py http://127.0.0.1:PORT --out docs --run \\
        "raysim run --address auto --num-nodes 2 --num-epochs 6 --image-size 16 \\
         --max-steps-per-epoch 40 --run-name dashboard-demo"
    raysim down

Chromium: /usr/bin/chromium (Debian's), or --chromium PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PAGES = {  # while the run goes: route, window size (wide enough for the columns that matter)
    "overview": ("#/overview", "1400,900"),  # Resource Status: raysim_device in use
    "jobs": ("#/jobs", "1400,600"),
    "cluster": ("#/cluster", "2400,700"),  # Logical Resources, the last column but one
    "actors": ("#/actors", "1400,1500"),  # all of them: 10 a page
    "metrics": ("#/metrics", "1400,400"),
}
JOB_PAGE_SIZE = "1400,1900"  # down to the Task Timeline's download button
TRAIN_RUNS = "/api/train/v2/runs/v1"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"}


def ray_token() -> str:
    """The token Ray's own clients send, found where Ray looks for it."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token"
    return Path(path).expanduser().read_text().strip()


class TokenProxy:
    """HTTP on a free loopback port, forwarded to `target` with the bearer token added."""

    def __init__(self, target: str, token: str):
        target = target.rstrip("/")

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                request = urllib.request.Request(target + self.path, data=body, method=self.command)
                for key, value in self.headers.items():
                    if key.lower() not in HOP_BY_HOP | {"host", "authorization"}:
                        request.add_header(key, value)
                request.add_header("Authorization", f"Bearer {token}")
                try:
                    response = urllib.request.urlopen(request, timeout=60)
                except urllib.error.HTTPError as err:
                    response = err
                except OSError as err:
                    self.send_error(502, f"dashboard unreachable: {err}")
                    return
                with response:
                    payload = response.read()
                    self.send_response(response.status)
                    for key, value in response.headers.items():
                        if key.lower() not in HOP_BY_HOP:
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

            def log_message(self, *args) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> TokenProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def chromium_args(chromium: str, profile: str) -> list[str]:
    return [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=8000",
    ]  # fmt: skip


def screenshot(
    url: str, path: Path, size: str = "1400,900", chromium: str = "/usr/bin/chromium"
) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [*chromium_args(chromium, profile), f"--screenshot={path}",
             f"--window-size={size}", url],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip


def page_text(url: str, chromium: str = "/usr/bin/chromium") -> str:
    """The page's DOM after its scripts ran, as Chromium serializes it."""
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [*chromium_args(chromium, profile), "--dump-dom", url],
            check=True, capture_output=True, text=True, timeout=120,
        ).stdout  # fmt: skip


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def wait_for_run(proxy_url: str, runner: subprocess.Popen | None, timeout_s: float = 600) -> None:
    """Until Ray Train's state API lists a RUNNING run (or the command ended)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and (runner is None or runner.poll() is None):
        try:
            runs = get_json(proxy_url + TRAIN_RUNS)["train_runs"]
        except (OSError, KeyError, ValueError):
            runs = []
        if any(run.get("status") == "RUNNING" for run in runs):
            return
        time.sleep(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dashboard", help="the dashboard's URL, e.g. http://127.0.0.1:8265")
    parser.add_argument("--out", default="docs", help="folder for dashboard_<page>.png")
    parser.add_argument("--run", help="a command to run meanwhile (shell words)")
    parser.add_argument("--settle-s", type=float, default=15, help="wait after RUNNING")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with TokenProxy(args.dashboard, ray_token()) as proxy:
        runner = subprocess.Popen(shlex.split(args.run)) if args.run else None
        wait_for_run(proxy.url, runner)
        if runner is not None and runner.poll() is not None:
            print(f"the run ended before it ran (exit {runner.returncode})", file=sys.stderr)
            return 1
        time.sleep(args.settle_s)  # the workers' actors listed, an epoch or two done
        for name, (route, size) in PAGES.items():
            screenshot(f"{proxy.url}/{route}", out / f"dashboard_{name}.png", size, args.chromium)
            print(f"written: {out / f'dashboard_{name}.png'}")
        jobs = get_json(proxy.url + "/api/jobs/")
        drivers = [j for j in jobs if j.get("type") == "DRIVER" and j.get("status") == "RUNNING"]
        if drivers:  # the run's job: its details, tasks and the task timeline's download
            page = f"{proxy.url}/#/jobs/{drivers[-1]['job_id']}"
            screenshot(page, out / "dashboard_job.png", JOB_PAGE_SIZE, args.chromium)
            print(f"written: {out / 'dashboard_job.png'}")
        if runner is not None and runner.wait() != 0:
            print(f"the run failed (exit {runner.returncode})", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
