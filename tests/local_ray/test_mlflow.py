"""MLflow tracking (tracking.mlflow): real runs logged to a real MLflow database store, read
back with MLflow's own client (a failed run, logged to a tracking server: test_mlflow_ui)."""

import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from raysim.config import ConfigError, dump_yaml, load_config
from raysim.record.trackers import RunEnd
from raysim.record.trackers.mlflow import Mlflow, resolve_uri
from raysim.rundir import MLFLOW_RUN_FILE, read_lines


def open_run(run_dir, monkeypatch):
    """What a user does: the run's own record of its MLflow run, MLflow's client."""
    from mlflow.tracking import MlflowClient

    saved = json.loads((Path(run_dir) / MLFLOW_RUN_FILE).read_text())
    client = MlflowClient(saved["tracking_uri"])
    return client, client.get_run(saved["run_id"])


def history(client, run, key):
    return [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]


# Config: strict like every other key.


@pytest.mark.parametrize(
    "tracking, message",
    [
        ({"mlfow": {}}, r"tracking: unknown key 'mlfow': did you mean 'mlflow'\?"),
        (
            {"mlflow": {"experimnt": "x"}},
            r"tracking.mlflow: unknown key 'experimnt': did you mean 'experiment'\?",
        ),
        ({"mlflow": {"url": "x"}}, r"tracking.mlflow: unknown key 'url': did you mean 'uri'\?"),
        ({"mlflow": {"experiment": ""}}, r"tracking.mlflow.experiment: '' must be a non-empty"),
        ({"mlflow": 3}, r"tracking.mlflow: 3 must be a mapping \{uri: ..., experiment: ...\}"),
        ("mlflow", r"tracking: 'mlflow' must be a mapping"),
    ],
)
def test_tracking_keys_are_strict(tmp_path, tracking, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"num_nodes": 2, "tracking": tracking}))
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_tracking_round_trips_through_the_run_config():
    assert load_config().to_dict()["tracking"] == {}, "off by default"
    cfg = load_config(tracking={"mlflow": {"experiment": "scaling"}})
    assert cfg.tracking.mlflow.experiment == "scaling" and cfg.tracking.mlflow.uri is None
    assert load_config(**yaml.safe_load(dump_yaml(cfg))) == cfg
    assert load_config(tracking={"mlflow": True}).tracking.mlflow.experiment == "raysim"
    assert load_config(tracking={"mlflow": None}).tracking.mlflow is None


def test_uris_are_made_absolute_for_the_controller(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "runs" / "a b"
    assert resolve_uri(None, run_dir) == f"sqlite:///{tmp_path}/runs/a b/mlflow.db"
    assert resolve_uri("mlruns", run_dir) == f"file://{tmp_path}/mlruns"
    assert resolve_uri("file:store", run_dir) == f"file://{tmp_path}/store"
    assert resolve_uri("file:///abs/store", run_dir) == "file:///abs/store"
    assert resolve_uri("sqlite:///m.db", run_dir) == f"sqlite:///{tmp_path}/m.db"
    assert resolve_uri("sqlite:////abs/m.db", run_dir) == "sqlite:////abs/m.db"
    assert resolve_uri("http://127.0.0.1:5000", run_dir) == "http://127.0.0.1:5000"


def test_without_mlflow_a_tracked_run_fails_before_ray_starts(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["mlflow"] = None  # as if the extra were not installed
        from raysim.cli import main
        code = main(["run", "--tracking", "{{mlflow: {{}}}}", "--run-dir", {str(tmp_path)!r},
                     "--run-name", "x", "--device", "cpu", "--num-epochs", "1"])
        import ray
        print("ray initialized:", ray.is_initialized())
        sys.exit(code)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0, f"one line, got: {done.stderr}"
    assert done.stderr.startswith("raysim: error: tracking.mlflow is set but MLflow cannot be")
    assert done.stderr.strip().endswith(
        "install raysim's mlflow extra: pip install 'raysim[mlflow]'"
    )
    assert "ray initialized: False" in done.stdout
    assert not (tmp_path / "x").exists(), "nothing made before the check"


def test_a_resumed_run_reopens_its_mlflow_run(tmp_path, monkeypatch):
    """No Ray: the driver's side of resume. Params cannot change in MLflow, so a resumed
    run's new values are a tag."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg = load_config(num_epochs=2, tracking={"mlflow": {}})
    first = Mlflow(cfg.tracking.mlflow, run_dir, cfg.to_dict())
    first.start(resume=False)
    first.end(RunEnd(RuntimeError("stopped")))
    again = Mlflow(cfg.tracking.mlflow, run_dir, {**cfg.to_dict(), "num_epochs": 4})
    again.start(resume=True)
    assert again.run_id == first.run_id
    client, run = open_run(run_dir, monkeypatch)
    assert run.info.status == "RUNNING"
    assert run.data.params["num_epochs"] == "2"
    assert run.data.tags["raysim.resumed_with"] == "num_epochs=4"
    assert run.data.tags["raysim.error"] == "RuntimeError: stopped"
    again.end(RunEnd(None))
    _, run = open_run(run_dir, monkeypatch)
    assert run.info.status == "FINISHED"


def test_the_recorder_travels_as_plain_values_and_builds_its_trackers(tmp_path):
    """The controller's copy builds the list from the config's settings; an MLflow run the
    driver never opened is told once, as a notice line, and training goes on."""
    from raysim.record.recorder import MetricsRecorder

    cfg = load_config(num_nodes=2, tracking={"mlflow": {}})
    recorder = pickle.loads(pickle.dumps(MetricsRecorder(tmp_path, 0.0, cfg.to_dict())))
    assert [type(t).__name__ for t in recorder.trackers] == ["TensorBoard", "Mlflow"]
    mlflow = recorder.trackers[1]
    [notice] = mlflow.log_epoch({"epoch": 1, "report_unix": 1.0}, [])
    assert notice["kind"] == "notice" and notice["text"].startswith("MLflow logging failed")
    assert mlflow.log_epoch({"epoch": 2, "report_unix": 2.0}, []) == [], "told once"


# Real runs on the shared Ray.


@pytest.mark.slow
def test_a_tracked_run_logs_config_epochs_nodes_summary_and_files(tracked_run, monkeypatch):
    """The session's tracked run (MLflow beside W&B)."""
    result = tracked_run
    cfg = result.config
    client, run = open_run(result.run_dir, monkeypatch)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "run"
    assert client.get_experiment(run.info.experiment_id).name == "t"
    assert (result.run_dir / "mlflow.db").is_file(), "the default store is in the run directory"

    params = run.data.params
    assert params["num_nodes"] == "2" and params["batch_size"] == "8"
    assert params["image_size"] == "16" and params["max_steps_per_epoch"] == "3"
    assert params["learning_rate"] == str(cfg.learning_rate) and params["network"] == "loopback"
    assert params["tracking.mlflow.experiment"] == "t"

    records = read_lines(result.run_dir / "metrics.jsonl")
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    for key in ("train_loss", "test_accuracy", "samples_per_s", "step_time_s"):
        assert history(client, run, key) == [(e["epoch"], pytest.approx(e[key])) for e in epochs]
    ranks = [r for r in records if r["kind"] == "rank"]
    for node in ("node-0", "node-1"):
        lines = [r for r in ranks if r["node_id"] == node]
        assert len(lines) == 2
        for key in ("train_loss_sum", "step_time_s", "memory_peak_bytes"):
            expected = [(r["epoch"], pytest.approx(r[key])) for r in lines]
            assert history(client, run, f"{node}/{key}") == expected, (node, key)
    assert not [r for r in records if r["kind"] == "notice"], "no logging failure told"

    summary = json.loads((result.run_dir / "summary.json").read_text())
    metrics = run.data.metrics
    assert metrics["summary/final_test_accuracy"] == pytest.approx(summary["final_test_accuracy"])
    assert metrics["summary/model.parameters"] == summary["model"]["parameters"]
    assert run.data.tags["raysim.environment.backend"] == "gloo"
    artifacts = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"summary.json", "metrics.jsonl", "config.yaml", "tensorboard"} <= artifacts
    assert not {"mlflow.db", "mlartifacts", "run"} & artifacts, "not the store, nor Ray's"
