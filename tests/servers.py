"""A web server a test starts on 127.0.0.1 (TensorBoard, MLflow's UI): run until it
answers, ended with its own process group (by pid) when the test is done."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from raysim.cluster import free_port


@contextmanager
def serving(
    argv: list[str], probe: str, timeout_s: float, env: dict | None = None
) -> Iterator[str]:
    """argv + `--host 127.0.0.1 --port P` in a session of its own, until GET `probe`
    answers; yields its URL. SIGTERM to its group at the end, SIGKILL if it lingers."""
    port = free_port()
    server = subprocess.Popen([*argv, "--host", "127.0.0.1", "--port", str(port)], env=env,
                              start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            try:
                urllib.request.urlopen(f"{url}{probe}", timeout=5).read()
                break
            except OSError:
                assert time.monotonic() < deadline, f"{argv[0]} never answered on {url}"
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
