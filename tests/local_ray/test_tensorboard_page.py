"""TensorBoard's own page on a raysim run, in headless Chromium, as README tells it:
`tensorboard --logdir runs/` shows every run side by side, the aggregate curves under
train/, test/, time/, throughput/ and metrics/, each simulated node under node-<rank>/,
and the config as text and hparams (their final figures under hparam/). The run is the
session's short run: no Ray run of its own."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from raysim.cluster import free_port
from raysim.record.trackers.tensorboard import NODE_SCALARS
from raysim.rundir import TENSORBOARD_DIR
from tests import browser

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TENSORBOARD = str(Path(sys.executable).parent / "tensorboard")
GROUPS = {"train", "test", "time", "throughput", "metrics", "hparam", "node-0", "node-1"}


@contextmanager
def tensorboard(logdir: Path) -> Iterator[str]:
    """`tensorboard --logdir LOGDIR` on 127.0.0.1, in a session of its own, until it answers;
    ended with its process group when the test is done."""
    port = free_port()
    argv = [TENSORBOARD, "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(argv, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            try:
                urllib.request.urlopen(f"{url}/data/runs", timeout=5).read()
                break
            except OSError:
                assert time.monotonic() < deadline, f"tensorboard never answered on {url}"
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def active_tabs(dom: str) -> set[str]:
    """The plugins TensorBoard shows a tab for: those with data (the others are disabled)."""
    tabs = re.findall(
        r'aria-disabled="(true|false)"(?:(?!aria-disabled=).)*?data-plugin-id="([\w-]+)"', dom, re.S
    )
    return {plugin for disabled, plugin in tabs if disabled == "false"}


def test_tensorboard_shows_runs_side_by_side_with_their_groups_text_and_hparams(
    short_run, tmp_path
):
    logdir = tmp_path / "runs"  # the run, and a copy of its event files as a second run
    for name in ("short", "short-copy"):
        shutil.copytree(short_run.run_dir / TENSORBOARD_DIR, logdir / name / TENSORBOARD_DIR)
    with tensorboard(logdir) as url:
        dom = browser.dom(f"{url}/#timeseries")  # the default tab: Time Series
        if os.environ.get("RAYSIM_DOCS_SCREENSHOTS") == "1":  # retake docs/tensorboard.png
            browser.screenshot(f"{url}/#timeseries", ROOT / "docs" / "tensorboard.png")
    shown = browser.text(dom).split()
    assert {"short/tensorboard", "short-copy/tensorboard"} <= set(shown), "side by side"
    assert set(shown) >= GROUPS, "a group per tag prefix"
    cards = browser.text(dom)
    for node in ("node-0", "node-1"):  # samples/s, step time, peak RSS
        assert f"{node} {len(NODE_SCALARS)} cards" in cards, node
    assert {"timeseries", "scalars", "text", "hparams"} <= active_tabs(dom)
