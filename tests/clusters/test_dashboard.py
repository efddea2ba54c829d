"""The standing cluster (`raysim up` / `down`), its dashboard over real HTTP, and the
run as the dashboard shows it. The cluster is a separate `ray start`, ended by `down`."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from raysim.cluster.local import dashboard_banner, dashboard_kwargs
from raysim.rundir import read_lines
from tests import browser
from tests.ray_nodes import processes_naming
from tests.run_checks import check_run_actors

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"  # Debian's; .ci/run installs it, and CI fails without it


def docs_script():
    """docs/dashboard_screenshots.py, whose token proxy and browser calls the check reuses."""
    path = ROOT / "docs" / "dashboard_screenshots.py"
    spec = importlib.util.spec_from_file_location("dashboard_screenshots", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def raysim_cli(*args, env, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "raysim.cli", *args],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=timeout,
    )  # fmt: skip


def get(url: str, token: str | None):
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


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


@pytest.mark.slow
def test_up_run_on_it_see_it_on_the_dashboard_then_down(tmp_path):
    env = {**os.environ, "RAYSIM_HOME": str(tmp_path / "home")}
    env.pop("RAY_ADDRESS", None)
    started = raysim_cli("up", "--dashboard-port", "0", "--cpus", "2", env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    state = json.loads((tmp_path / "home" / "cluster.json").read_text())
    try:
        assert state["dashboard_url"] in started.stdout and "auth_token" in started.stdout
        running = subprocess.Popen(
            [sys.executable, "-m", "raysim.cli", "run", "--address", "auto",
             "--num-nodes", "2", "--num-epochs", "4", "--image-size", "16", "--batch-size", "16",
             "--device", "cpu", "--max-steps-per-epoch", "10", "--run-dir", str(tmp_path),
             "--run-name", "seen"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
        exported = scrape_while(running, state["metrics_url"])
        output = running.communicate(timeout=300)[0]
        assert running.returncode == 0, output[-3000:]
        # Ray prefixes user metrics with ray_; a gauge shows for ~2 report intervals.
        assert {'node="node-0"', 'node="node-1"'} <= {
            tag for line in exported if line.startswith("ray_raysim_step_time_s")
            for tag in line.split("{")[1].split("}")[0].split(",")
        }, exported[:5]  # fmt: skip
        assert any(line.startswith("ray_raysim_memory_budget_bytes") for line in exported)
        ranks = [r for r in read_lines(tmp_path / "seen" / "metrics.jsonl") if r["kind"] == "rank"]
        assert {r["rank"] for r in ranks} == {0, 1}

        url = state["dashboard_url"]
        with pytest.raises(urllib.error.HTTPError) as refused:
            get(f"{url}/api/v0/nodes", token=None)
        assert refused.value.code == 401, "token authentication stays on"
        token = (Path.home() / ".ray" / "auth_token").read_text().strip()
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
        if shutil.which(CHROMIUM) or os.environ.get("CI") == "true":  # the Actors page in a
            screens = docs_script()  # real browser, as a user sees it (CI: tests/browser.py)
            with screens.TokenProxy(url, token) as proxy:
                pages = {
                    name: screens.page_text(f"{proxy.url}/#/{name}", browser.chromium())
                    for name in ("actors", "jobs", "cluster", "metrics")
                }  # what README says a user finds on each
            assert "TrainController" in pages["actors"] and "RayTrainWorker" in pages["actors"]
            assert "raysim.cli run" in pages["jobs"], "the run's driver as a job"
            assert "raysim_device" in pages["cluster"], "the simulated device's resource"
            assert "Grafana" in pages["metrics"], "charts only after Prometheus and Grafana"
    finally:
        ended = raysim_cli("down", env=env)
    assert ended.returncode == 0 and state["address"] in ended.stdout
    assert processes_naming(state["temp_dir"]) == [], "down ends every process of the cluster"
    assert not (tmp_path / "home" / "cluster.json").exists()


@pytest.mark.slow
@pytest.mark.own_cluster
def test_the_embedded_dashboard_serves_the_run_while_it_goes(without_shared_ray, tiny_config):
    """`--dashboard`: the embedded Ray's dashboard on 127.0.0.1 answers during the run, with
    token authentication on, and Ray Train's state API lists the run."""
    import threading

    import raysim
    from raysim.cluster import free_port

    port = free_port()
    cfg = tiny_config(num_nodes=2, num_epochs=3, max_steps_per_epoch=20, dashboard=True,
                      dashboard_port=port, run_name="embedded")  # fmt: skip
    outcome: dict = {}
    runner = threading.Thread(target=lambda: outcome.update(result=raysim.run(cfg, out=None)))
    runner.start()
    url, seen, refused = f"http://127.0.0.1:{port}", [], None
    token_path = Path.home() / ".ray" / "auth_token"
    while runner.is_alive() and not seen:
        try:
            if refused is None:
                get(f"{url}/api/v0/nodes", token=None)
        except urllib.error.HTTPError as err:
            refused = err.code
        except OSError:
            time.sleep(0.5)
            continue
        token = token_path.read_text().strip() if token_path.exists() else None
        try:
            seen = get(f"{url}/api/train/v2/runs/v1", token)["train_runs"]
        except OSError:
            time.sleep(0.5)
    runner.join(timeout=300)
    assert outcome["result"].summary["status"] == "finished"
    assert refused == 401, "token authentication stays on"
    assert [r["name"] for r in seen] == ["embedded"]
