"""The standing cluster (`raysim up` / `down`), its dashboard over real HTTP, and the
run as the dashboard shows it. The cluster is a separate `ray start`, ended by `down`."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from raysim.cluster.local import dashboard_banner, dashboard_kwargs
from raysim.rundir import read_lines
from tests import browser
from tests.dashboard_pages import ROOT, cluster_page_text, docs_script, get, seen_in_a_browser
from tests.ray_nodes import processes_naming
from tests.run_checks import LEFT_OUT, check_run_actors

JOB_PAGE = ("Task Timeline", "Download trace file", "Task Table", "Actor Table",
            "Placement Group Table", "Driver logs are only available when submitting")  # fmt: skip
IN_USE = "4600.0/10000.0 raysim_device"  # the Overview's Resource Status: 2 nodes x 0.23
FREED = "0.0/10000.0 raysim_device Expand"  # the Cluster page's Logical Resources, after it


def raysim_cli(*args, env, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "raysim.cli", *args],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=timeout,
    )  # fmt: skip


def scrape_while(process: subprocess.Popen, metrics_url: str) -> list[str]:
    """The raysim lines of the Prometheus export, scraped twice a second while it runs."""
    lines: list[str] = []
    while process.poll() is None:
        try:
            with urllib.request.urlopen(metrics_url, timeout=5) as response:
                text = response.read().decode()
        except OSError:
            text = ""
        lines += [line for line in text.splitlines() if line.startswith("ray_raysim_")]
        time.sleep(0.5)
    return lines


def test_dashboard_arguments_keep_to_loopback(monkeypatch):
    monkeypatch.setenv("RAY_TRAIN_ENABLE_STATE_TRACKING", "0")  # restored afterwards
    kwargs = dashboard_kwargs(0)
    assert kwargs["include_dashboard"] is True and kwargs["dashboard_host"] == "127.0.0.1"
    assert kwargs["dashboard_port"] > 0 and kwargs["_metrics_export_port"] > 0
    assert os.environ["RAY_TRAIN_ENABLE_STATE_TRACKING"] == "1"


def test_the_banner_says_what_is_where_and_promises_no_train_page():
    banner = dashboard_banner("http://127.0.0.1:8265", "http://127.0.0.1:9999/metrics")
    assert "no Train page" in banner
    assert "http://127.0.0.1:8265/api/train/v2/runs/v1" in banner
    for page, shows in [("Jobs", "task timeline"), ("Cluster", "raysim_device"),
                        ("Actors", "Ray Train's controller and workers")]:  # fmt: skip
        assert re.search(rf"{page}: [^;]*{shows}", banner), (page, banner)
    assert "tensorboard --logdir runs/" in banner and "raysim trace" in banner
    assert "http://127.0.0.1:9999/metrics" in banner.splitlines()[-1]
    assert "metrics" not in dashboard_banner("http://127.0.0.1:8265", None).splitlines()[-1]


def test_a_dashboard_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "RAYSIM_HOME": str(tmp_path)}
        done = raysim_cli("up", "--dashboard-port", str(port), env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"port {port}" in done.stderr and "--dashboard-port 0" in done.stderr
    assert not (tmp_path / "cluster.json").exists()


def pages_during_the_run(proxy_url: str, running: subprocess.Popen) -> dict[str, str]:
    """The Overview and Jobs pages' DOMs while the run goes: the Overview read again until
    its Resource Status shows the nodes' device share in use (the autoscaler's status
    refreshes every few seconds), then the Jobs page."""
    screens = docs_script()
    screens.wait_for_run(proxy_url, running, timeout_s=240)
    pages: dict[str, str] = {}
    while running.poll() is None and IN_USE not in browser.text(pages.get("overview", "")):
        pages["overview"] = screens.page_text(f"{proxy_url}/#/overview", browser.chromium())
    pages["jobs"] = screens.page_text(f"{proxy_url}/#/jobs", browser.chromium())
    assert running.poll() is None, "the pages were read after the run ended: make it longer"
    return pages


def check_pages_during_the_run(pages: dict[str, str]) -> None:
    overview, jobs = browser.text(pages["overview"]), browser.text(pages["jobs"])
    assert IN_USE in overview, "Resource Status: 2 nodes x 0.23 of the device in use"
    assert "Set up Prometheus and Grafana" in overview, "the Overview's charts need them"
    assert "raysim.cli run" in jobs and "RUNNING" in jobs, "the run's driver as a job"
    assert 'data-testid="progress-bar-segment"' in pages["jobs"], "its tasks' progress bar"
    for dom in pages.values():  # Ray 2.60's client has no route for a Train page
        nav = browser.text(dom).split("Updated")[0].split()
        assert "Overview" in nav and "Train" not in nav, nav
        assert not re.search(r'href="#/train', dom, re.I)


def check_pages_after_the_run(proxy_url: str, actors: list[str]) -> None:
    """The Actors, Cluster and Metrics pages and the run's job page, as README tells them."""
    screens = docs_script()
    text = {
        name: browser.text(screens.page_text(f"{proxy_url}/#/{name}", browser.chromium()))
        for name in ("actors", "metrics")
    }
    text["cluster"] = cluster_page_text(screens, proxy_url, FREED)
    assert set(actors) <= set(text["actors"].split()), "each of the cluster's actors"
    assert text["actors"].split().count("RayTrainWorker") == 2, "one per simulated node"
    assert {"TrainStateActor", "AutoscalingCoordinator"} <= set(text["actors"].split())
    assert not LEFT_OUT & set(text["actors"].split()), "the helpers a run leaves out"
    assert text["actors"].count("Log CPU") == len(actors), "each actor with its log"
    for column in ("CPU", "Memory", "Disk(root)", "Logical Resources", "(Head)"):
        assert column in text["cluster"], column
    shown = text["cluster"][text["cluster"].find("Logical Resources") :][:600]
    assert FREED in text["cluster"], f"under Logical Resources: {shown}"
    assert "Set up Prometheus and Grafana" in text["metrics"]
    jobs = screens.get_json(f"{proxy_url}/api/jobs/")
    job_id = next(j["job_id"] for j in jobs if j.get("type") == "DRIVER")
    job = screens.page_text(f"{proxy_url}/#/jobs/{job_id}", browser.chromium())
    shown = browser.text(job)
    for part in JOB_PAGE:
        assert part in shown, part
    href = re.search(r'href="([^"]*tasks/timeline[^"]*)"', job).group(1).replace("&amp;", "&")
    with urllib.request.urlopen(urllib.parse.urljoin(f"{proxy_url}/", href)) as download:
        timeline = download.read().decode()
    assert "run_train_fn" in timeline and "poll_status" in timeline, "Ray's tasks, for Perfetto"


@pytest.mark.slow
def test_up_run_on_it_see_it_on_the_dashboard_then_down(tmp_path):
    """A 2-node run on `raysim up`'s cluster: its Prometheus gauges, the dashboard's HTTP API,
    and each page README describes, in headless Chromium during the run and after it."""
    env = {**os.environ, "RAYSIM_HOME": str(tmp_path / "home")}
    env.pop("RAY_ADDRESS", None)
    started = raysim_cli("up", "--dashboard-port", "0", "--cpus", "2", env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    state = json.loads((tmp_path / "home" / "cluster.json").read_text())
    try:
        assert state["dashboard_url"] in started.stdout and "auth_token" in started.stdout
        url = state["dashboard_url"]
        token = (Path.home() / ".ray" / "auth_token").read_text().strip()
        running = subprocess.Popen(
            [sys.executable, "-m", "raysim.cli", "run", "--address", "auto",
             "--num-nodes", "2", "--num-epochs", "4", "--image-size", "16", "--batch-size", "16",
             "--device", "cpu", "--max-steps-per-epoch", "25", "--run-dir", str(tmp_path),
             "--run-name", "seen"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
        with docs_script().TokenProxy(url, token) as proxy, ThreadPoolExecutor(1) as pool:
            scraping = pool.submit(scrape_while, running, state["metrics_url"])
            pages = pages_during_the_run(proxy.url, running) if seen_in_a_browser() else {}
            exported = scraping.result()
            output = running.communicate(timeout=300)[0]
            assert running.returncode == 0, output[-3000:]
            if pages:
                check_pages_during_the_run(pages)
            # Ray prefixes user metrics with ray_; a gauge shows for ~2 report intervals.
            assert {'node="node-0"', 'node="node-1"'} <= {
                tag for line in exported if line.startswith("ray_raysim_step_time_s")
                for tag in line.split("{")[1].split("}")[0].split(",")
            }, exported[:5]  # fmt: skip
            assert any(line.startswith("ray_raysim_memory_budget_bytes") for line in exported)
            ranks = [r for r in read_lines(tmp_path / "seen" / "metrics.jsonl")
                     if r["kind"] == "rank"]  # fmt: skip
            assert {r["rank"] for r in ranks} == {0, 1}

            with pytest.raises(urllib.error.HTTPError) as refused:
                get(f"{url}/api/v0/nodes", token=None)
            assert refused.value.code == 401, "token authentication stays on"
            nodes = get(f"{url}/api/v0/nodes", token)["data"]["result"]["result"]
            assert [n["resources_total"]["raysim_device"] for n in nodes] == [10000.0]
            assert nodes[0]["resources_total"]["CPU"] == 2.0
            train_api = re.search(r"the run's state is at (\S+)", started.stdout).group(1)
            runs = get(train_api, token)["train_runs"]  # where the banner sends the user
            assert [(r["name"], r["status"]) for r in runs] == [("seen", "FINISHED")]
            actors = get(f"{url}/api/v0/actors?limit=200", token)["data"]["result"]["result"]
            controllers = [a for a in actors if a["class_name"] == "TrainController"]
            assert len(controllers) == 1 and controllers[0]["state"] == "DEAD"
            check_run_actors([a["class_name"] for a in actors if a["state"] == "DEAD"], nodes=2)
            if pages:
                check_pages_after_the_run(proxy.url, [a["class_name"] for a in actors])
    finally:
        down_started = time.monotonic()
        ended = raysim_cli("down", env=env)
        down_s = time.monotonic() - down_started
    assert ended.returncode == 0 and state["address"] in ended.stdout
    # the head ends itself without draining (raysim.cluster.standing.NO_DRAIN): `raysim
    # down` took 1.9 s after a run; draining, it waited for the run's detached actors until
    # the grace period's SIGKILL (12.6 s)
    assert down_s < 7, f"raysim down took {down_s:.1f} s"
    assert processes_naming(state["temp_dir"]) == [], "down ends every process of the cluster"
    assert not (tmp_path / "home" / "cluster.json").exists()
