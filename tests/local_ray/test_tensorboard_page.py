"""TensorBoard's own page on a raysim run, in headless Chromium, as README tells it:
`tensorboard --logdir runs/` shows every run side by side, the aggregate curves under
train/, test/, time/, throughput/ and metrics/, each simulated node under node-<rank>/,
and the config as text and hparams (their final figures under hparam/). The run is the
session's short run: no Ray run of its own."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from raysim.record.trackers.tensorboard import NODE_SCALARS
from raysim.rundir import TENSORBOARD_DIR
from tests import browser
from tests.servers import serving

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TENSORBOARD = str(Path(sys.executable).parent / "tensorboard")
GROUPS = {"train", "test", "time", "throughput", "metrics", "hparam", "node-0", "node-1"}


def tensorboard(logdir: Path):
    """`tensorboard --logdir LOGDIR` on 127.0.0.1 until it answers (tests/servers.py)."""
    return serving([TENSORBOARD, "--logdir", str(logdir)], "/data/runs", timeout_s=120)


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
        # the default tab, Time Series, once it shows both runs and a node's cards
        ready = browser.shows("short-copy/tensorboard", "node-1")
        dom = browser.dom_once(f"{url}/#timeseries", ready)
        if os.environ.get("RAYSIM_DOCS_SCREENSHOTS") == "1":  # retake docs/tensorboard.png
            browser.screenshot(f"{url}/#timeseries", ROOT / "docs" / "tensorboard.png")
    shown = browser.text(dom).split()
    assert {"short/tensorboard", "short-copy/tensorboard"} <= set(shown), "side by side"
    assert set(shown) >= GROUPS, "a group per tag prefix"
    cards = browser.text(dom)
    for node in ("node-0", "node-1"):  # samples/s, step time, peak RSS
        assert f"{node} {len(NODE_SCALARS)} cards" in cards, node
    assert {"timeseries", "scalars", "text", "hparams"} <= active_tabs(dom)
