"""Headless Chromium for the tests that open a page as a user would: where it is, and
what a test does without it (skip here, fail in CI, where .ci/run installs it)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
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


def _args(profile: str, budget_ms: int | None, size: str = "1400,1800") -> list[str]:
    """A tall window: pages that draw their charts only once scrolled into view draw more.
    budget_ms: virtual time the page's scripts get before a dump or shot (None: real time)."""
    budget = [] if budget_ms is None else [f"--virtual-time-budget={budget_ms}"]
    return [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", f"--window-size={size}", *budget,
    ]  # fmt: skip


def dom(url: str, budget_ms: int = 15000) -> str:
    """The page's DOM after its scripts ran, as Chromium serializes it."""
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [*_args(profile, budget_ms), "--dump-dom", url],
            check=True, capture_output=True, text=True, timeout=180,
        ).stdout  # fmt: skip


def dom_once(url: str, ready_js: str, timeout_s: float = 120) -> str:
    """The page's DOM once `ready_js` (a JavaScript expression) is true in it, waited for
    in real time. For pages whose content comes after their own fetches: a virtual-time
    budget (dom) does not always wait those out on a loaded machine."""
    with tempfile.TemporaryDirectory() as profile:
        argv = [*_args(profile, None), "--remote-debugging-port=0", "about:blank"]
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        browser = subprocess.Popen(argv, start_new_session=True, **quiet)
        try:
            page = _page_socket(Path(profile) / "DevToolsActivePort", browser)
            return asyncio.run(_dom_when_ready(page, url, ready_js, timeout_s))
        finally:
            os.killpg(browser.pid, signal.SIGKILL)
            browser.wait()


def shows(*words: str) -> str:
    """A ready_js for dom_once: the page's text shows every one of `words`."""
    return f"{json.dumps(words)}.every(w => document.body.innerText.includes(w))"


def _page_socket(port_file: Path, browser: subprocess.Popen) -> str:
    """The DevTools WebSocket of the browser's one page (Chromium writes its port to
    DevToolsActivePort in the profile once it listens)."""
    deadline = time.monotonic() + 60
    while not port_file.is_file() or not port_file.read_text().strip():
        assert browser.poll() is None, "Chromium exited before it listened for DevTools"
        assert time.monotonic() < deadline, "Chromium never opened its DevTools port"
        time.sleep(0.2)
    port = port_file.read_text().split()[0]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as answer:
        targets = json.loads(answer.read())
    return next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")


async def _dom_when_ready(socket: str, url: str, ready_js: str, timeout_s: float) -> str:
    async with aiohttp.ClientSession() as session, session.ws_connect(socket, max_msg_size=0) as ws:
        calls = itertools.count(1)

        async def call(method: str, **params) -> dict:
            number = next(calls)
            await ws.send_json({"id": number, "method": method, "params": params})
            while True:
                message = await ws.receive_json(timeout=60)
                if message.get("id") == number:
                    assert "error" not in message, f"{method}: {message['error']}"
                    return message["result"]

        async def evaluate(expression: str):
            found = await call("Runtime.evaluate", expression=expression, returnByValue=True)
            return found["result"].get("value")

        await call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout_s
        while not await evaluate(f"Boolean({ready_js})"):
            assert time.monotonic() < deadline, f"{url}: `{ready_js}` not true in {timeout_s} s"
            await asyncio.sleep(0.5)
        return await evaluate("document.documentElement.outerHTML")


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
