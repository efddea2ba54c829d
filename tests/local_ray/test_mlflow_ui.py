"""MLflow's own tools on a raysim run: the default database store served by `mlflow ui`,
a failed run logged to that server (`mlflow ui` is MLflow's `mlflow server`), both read
back through MLflow's REST API, and the run's page in headless Chromium (its params and a
metric chart)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

import raysim
from raysim.config import load_config
from raysim.record.trackers import RunEnd
from raysim.record.trackers.mlflow import EXPERIMENT_KIND_TAG, MODEL_TRAINING, Mlflow
from raysim.rundir import MLFLOW_RUN_FILE, read_lines
from tests import browser
from tests.servers import serving

ROOT = Path(__file__).resolve().parents[2]
MLFLOW = str(Path(sys.executable).parent / "mlflow")


def mlflow_serving(command: str, *args: str, artifacts: Path | None = None):
    """`mlflow ui|server ...` on 127.0.0.1 (one worker, no job runner) until it answers
    (tests/servers.py); artifacts: where it keeps the artifacts logged through it (its
    default is ./mlartifacts, here the repository)."""
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    if artifacts is not None:
        env["MLFLOW_ARTIFACTS_DESTINATION"] = str(artifacts)
    return serving([MLFLOW, command, *args, "--workers", "1"], "/health", 180, env=env)


def rest(url: str, endpoint: str, **query) -> dict:
    """One GET of MLflow's REST API (/api/2.0/mlflow/...)."""
    address = f"{url}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(address, timeout=30) as response:
        return json.loads(response.read())


def read_back(url: str, run_id: str) -> tuple[dict, dict, dict]:
    """The run as the server gives it: info, params, tags."""
    run = rest(url, "runs/get", run_id=run_id)["run"]
    params = {p["key"]: p["value"] for p in run["data"].get("params", [])}
    tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
    return run["info"], params, tags


def served_history(url: str, run_id: str, key: str) -> list[tuple[int, float]]:
    metrics = rest(url, "metrics/get-history", run_id=run_id, metric_key=key)["metrics"]
    return [(int(m.get("step", 0)), m["value"]) for m in metrics]


def check_served_run(url: str, run_dir: Path, experiment: str, status: str = "FINISHED") -> dict:
    """What every served run shows: its status, the config as params, each node's step times
    per epoch as metrics.jsonl has them, the experiment tagged as model training."""
    saved = json.loads((run_dir / MLFLOW_RUN_FILE).read_text())
    info, params, tags = read_back(url, saved["run_id"])
    assert info["status"] == status and info["run_name"] == run_dir.name
    assert params["num_nodes"] == "2" and params["max_steps_per_epoch"] == "3"
    assert tags["raysim.run_dir"] == str(run_dir)
    found = rest(url, "experiments/get", experiment_id=info["experiment_id"])["experiment"]
    assert found["name"] == experiment
    assert {"key": EXPERIMENT_KIND_TAG, "value": MODEL_TRAINING} in found["tags"]
    records = read_lines(run_dir / "metrics.jsonl")
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert served_history(url, saved["run_id"], "train_loss") == [
        (e["epoch"], pytest.approx(e["train_loss"])) for e in epochs
    ]
    node_1 = [r for r in records if r["kind"] == "rank" and r["node_id"] == "node-1"]
    assert served_history(url, saved["run_id"], "node-1/step_time_s") == [
        (r["epoch"], pytest.approx(r["step_time_s"])) for r in node_1
    ]
    return {**saved, "experiment_id": info["experiment_id"]}


def chart_sections(keys: list[str]) -> dict[str, int]:
    """Model metrics' sections as MLflow groups a run's metrics: one per key prefix
    (`node-1/...`), the keys without one under "Model metrics"; a chart per metric."""
    sections = Counter(k.split("/")[0] if "/" in k else "Model metrics" for k in keys)
    return dict(sections)


# Stores, no server.


def test_the_default_store_is_a_database_with_its_artifacts_in_the_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg = load_config(num_epochs=1, tracking={"mlflow": {}})
    tracker = Mlflow(cfg.tracking.mlflow, run_dir, cfg.to_dict())
    tracker.start(resume=False)
    (run_dir / "summary.json").write_text('{"final_test_accuracy": 0.5}')
    tracker.end(RunEnd(None, {"final_test_accuracy": 0.5}))
    assert tracker.uri == f"sqlite:///{run_dir}/mlflow.db" and (run_dir / "mlflow.db").is_file()
    logged = run_dir / "mlartifacts" / tracker.run_id / "artifacts"
    assert sorted(p.name for p in logged.iterdir()) == ["mlflow.json", "summary.json"]
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ


def test_a_file_store_uri_still_works_with_mlflows_opt_in_set_by_raysim(tmp_path, monkeypatch):
    """MLflow 3 keeps its file store in maintenance mode; raysim opts in for its own calls
    to one, and leaves the environment as it was."""
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg = load_config(num_epochs=1, tracking={"mlflow": {"uri": f"file://{tmp_path}/fs"}})
    tracker = Mlflow(cfg.tracking.mlflow, run_dir, cfg.to_dict())
    tracker.start(resume=False)
    tracker.end(RunEnd(None))
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    run = MlflowClient(f"file://{tmp_path}/fs").get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.data.params["num_epochs"] == "1"


# Real runs on the shared Ray, one real MLflow server.


@pytest.fixture(scope="module")
def ui_server(tracked_run, tmp_path_factory):
    """README's command on a run (the session's tracked run), started once for both tests:
    `mlflow ui --backend-store-uri sqlite:///runs/<name>/mlflow.db`. The tracking-server
    test logs a run of its own to it (its experiment "served" beside the tracked run's "t",
    its artifacts in this module's folder)."""
    store = f"sqlite:///{tracked_run.run_dir}/mlflow.db"
    artifacts = tmp_path_factory.mktemp("served") / "artifacts"
    with mlflow_serving("ui", "--backend-store-uri", store, artifacts=artifacts) as url:
        yield url


@pytest.mark.slow
def test_mlflow_ui_serves_the_default_store_and_its_run_page(tracked_run, ui_server, tmp_path):
    """The session's tracked run served by README's `mlflow ui`; the run's page in Chromium:
    its params and metrics on Overview, a chart per metric under Model metrics, its files
    under Artifacts."""
    run_dir, url = tracked_run.run_dir, ui_server
    saved = check_served_run(url, run_dir, "t")
    page = f"{url}/#/experiments/{saved['experiment_id']}/runs/{saved['run_id']}"
    logged = rest(url, "runs/get", run_id=saved["run_id"])["run"]["data"]["metrics"]
    overview = browser.text(browser.dom_once(page, browser.shows("node-1/step_time_s")))
    assert "Parameters" in overview and "num_nodes 2" in overview
    assert "Status Finished" in overview and "max_steps_per_epoch 3" in overview
    assert f"Metrics ({len(logged)})" in overview, "every metric on Overview"
    assert "summary/final_test_accuracy" in overview and "node-1/step_time_s" in overview
    charts = browser.dom_once(f"{page}/model-metrics", "document.querySelector('.js-plotly-plot')")
    for section, count in chart_sections([m["key"] for m in logged]).items():
        assert f"{section} ({count})" in browser.text(charts), "a chart per metric"
    files = browser.text(browser.dom_once(f"{page}/artifacts", browser.shows("metrics.jsonl")))
    assert {"config.yaml", "metrics.jsonl", "summary.json"} <= set(files.split())
    shot = tmp_path / "mlflow_run.png"
    browser.screenshot(page, shot)
    if os.environ.get("RAYSIM_DOCS_SCREENSHOTS") == "1":  # retake docs/mlflow_run.png
        shutil.copy(shot, ROOT / "docs" / "mlflow_run.png")


@pytest.mark.slow
def test_a_run_logged_to_a_tracking_server_reads_back_the_same(shared_ray, tiny_config, ui_server):
    """A run logged to a real MLflow server (ui_server) that fails: an injected out-of-memory
    on one of two nodes in the second epoch. Its first epoch, params and files read back,
    and it ends FAILED with that node's memory error, in MLflow too."""
    url = ui_server
    fault = {"kind": "oom", "rank": 0, "epoch": 2}
    tracking = {"mlflow": {"uri": url, "experiment": "served"}}
    cfg = tiny_config(num_nodes=2, max_steps_per_epoch=3, faults=[fault], tracking=tracking)
    with pytest.raises(raysim.RunFailedError, match=r"node-0 \(rank 0\) ran out of its memory"):
        raysim.run(cfg, out=None)
    run_dir = Path(cfg.run_dir) / "run"
    epochs = [r for r in read_lines(run_dir / "metrics.jsonl") if r["kind"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1], "the epoch before the fault, read back"
    saved = check_served_run(url, run_dir, "served", status="FAILED")
    assert saved["tracking_uri"] == url
    _, params, tags = read_back(url, saved["run_id"])
    assert "node-0 (rank 0) ran out of its memory" in tags["raysim.error"]
    assert params["faults"] == json.dumps([{**fault, "step": 1, "seconds": 5.0, "notice_s": 5.0}])
    listed = rest(url, "artifacts/list", run_id=saved["run_id"])["files"]
    assert {"summary.json", "metrics.jsonl", "config.yaml"} <= {f["path"] for f in listed}
    assert not (run_dir / "mlflow.db").exists(), "nothing stored in the run directory"
