"""Reading Ray's dashboard as its user does: its REST API with the cluster's token, and
its pages in Chromium through docs/dashboard_screenshots.py's token proxy."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
import urllib.request
from pathlib import Path

from tests import browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"  # Debian's; .ci/run installs it, and CI fails without it


def docs_script():
    """docs/dashboard_screenshots.py, whose token proxy and browser calls the check reuses."""
    path = ROOT / "docs" / "dashboard_screenshots.py"
    spec = importlib.util.spec_from_file_location("dashboard_screenshots", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def get(url: str, token: str | None):
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def seen_in_a_browser() -> bool:
    """Whether the page checks run: with Chromium here, and always in CI (where
    tests/browser.py fails rather than skips without it)."""
    return shutil.which(CHROMIUM) is not None or os.environ.get("CI") == "true"


def cluster_page_text(screens, proxy_url: str, showing: str, reads: int = 4) -> str:
    """The Cluster page, read again as a user reloads it until it shows `showing`: on a
    loaded machine the node table can draw before its cells arrive (Logical Resources, a
    node's labels), or before the run's placement group is gone."""
    for _ in range(reads):
        text = browser.text(screens.page_text(f"{proxy_url}/#/cluster", browser.chromium()))
        if showing in text:
            break
        time.sleep(2)
    return text
