"""Headless Chromium for the tests that open a page as a user would: where it is, and
what a test does without it (skip here, fail in CI, where .ci/run installs it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def chromium() -> str:
    """The browser's path; without one the test skips, or fails where CI=true (CI installs
    it, so a missing browser there is a broken CI, not a reason to pass)."""
    found = next((p for p in map(shutil.which, CANDIDATES) if p), None)
    if found is None:
        message = f"no headless Chromium ({', '.join(CANDIDATES)}) on PATH"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must run the browser checks (.ci/run installs it)")
        pytest.skip(message)
    return found


def _args(profile: str, budget_ms: int, size: str = "1400,1800") -> list[str]:
    """A tall window: pages that draw their charts only once scrolled into view draw more."""
    return [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
        f"--window-size={size}",
    ]  # fmt: skip


def dom(url: str, budget_ms: int = 15000) -> str:
    """The page's DOM after its scripts ran, as Chromium serializes it."""
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [*_args(profile, budget_ms), "--dump-dom", url],
            check=True, capture_output=True, text=True, timeout=180,
        ).stdout  # fmt: skip


def text(html: str) -> str:
    """What the page says: its DOM without scripts, styles and tags, spaces collapsed."""
    html = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", html, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def screenshot(url: str, path: Path, size: str = "1400,1000", budget_ms: int = 15000) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [*_args(profile, budget_ms, size), f"--screenshot={path}", url],
            check=True, capture_output=True, timeout=180,
        )  # fmt: skip
    assert path.stat().st_size > 10_000, f"{path}: an empty page"
