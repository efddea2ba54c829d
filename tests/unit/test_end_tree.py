"""raysim.cluster.standing.end_tree on real process trees: a root that ends what it
started when told, and a child that ignores SIGTERM."""

from __future__ import annotations

import subprocess
import sys
import time

from raysim.cluster.standing import end_tree
from raysim.procfs import descendants, is_running

CHILD = "import signal, time; signal.signal(signal.SIGTERM, signal.{handler}); time.sleep(60)"
ROOT = """
import signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", {child!r}])
def end(*_):  # as `ray start --block` does: end its own children, then itself
    child.terminate(); child.wait(); sys.exit(0)
signal.signal(signal.SIGTERM, end if {polite} else signal.SIG_DFL)
print("up", flush=True)
time.sleep(60)
"""


def start_tree(polite: bool, child_handler: str) -> subprocess.Popen:
    code = ROOT.format(child=CHILD.format(handler=child_handler), polite=polite)
    root = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert root.stdout.readline().strip() == "up"
    deadline = time.monotonic() + 30
    while not descendants(root.pid):
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    return root


def test_a_root_that_ends_its_children_is_left_to_do_so():
    root = start_tree(polite=True, child_handler="SIG_DFL")
    child = descendants(root.pid)[0]
    start = time.monotonic()
    assert end_tree(root.pid, grace_s=10) == 2
    assert time.monotonic() - start < 3, "ended by the root's own handler, not the grace"
    root.wait(timeout=5)
    assert root.returncode == 0 and not is_running(child)


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period():
    roots = [start_tree(polite=False, child_handler="SIG_IGN") for _ in range(2)]
    children = [descendants(root.pid)[0] for root in roots]
    start = time.monotonic()
    assert end_tree(*(root.pid for root in roots), grace_s=2) == 4
    assert 1 <= time.monotonic() - start < 4, "both trees' grace periods ran together"
    for root in roots:
        root.wait(timeout=5)
    deadline = time.monotonic() + 5  # SIGKILL is delivered, not waited for
    while any(is_running(child) for child in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(is_running(child) for child in children)
