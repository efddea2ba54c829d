"""The Weights & Biases tracker, offline: its settings, the one-line error without the
package, and the run's own files read back (config, every epoch's aggregate and per-node
metrics, the summary and the status), from the tracker's hooks and from a real run."""

from __future__ import annotations

import json
import sys

import pytest

from raysim.config import ConfigError, load_config
from raysim.config.tracking import WandbSettings, parse_tracking
from raysim.failures import RunFailedError
from raysim.record.trackers import RunEnd, check_trackers, trackers_for
from raysim.record.trackers.wandb import Wandb
from raysim.rundir import WANDB_DIR, WANDB_RUN_FILE, epoch_lines, rank_lines, read_lines
from tests.wandb_records import read_offline_run

CONFIG = {"num_nodes": 2, "batch_size": 8, "tracking": {"wandb": {"project": "p"}}}


def epoch(n: int) -> tuple[dict, list[dict]]:
    aggregate = {"epoch": n, "train_loss": 1.0 / n, "samples_per_s": 10.0 * n, "report_unix": 1e9}
    ranks = [{"rank": r, "node_id": f"node-{r}", "epoch": n, "step_time_s": 0.1 + r}
             for r in range(2)]  # fmt: skip
    return aggregate, ranks


def test_settings_default_to_offline_and_bad_values_are_told():
    assert parse_tracking({"wandb": {}}).wandb == WandbSettings(project="raysim", mode="offline")
    assert parse_tracking({"wandb": True}).chosen() == {"wandb": WandbSettings()}
    with pytest.raises(ConfigError) as err:
        parse_tracking({"wandb": {"mode": "ofline", "projct": "x"}})
    text = str(err.value)
    assert "tracking.wandb.mode: 'ofline' must be one of offline, online" in text
    assert "did you mean 'offline'?" in text and "unknown key 'projct'" in text


def test_without_the_package_the_run_stops_with_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ConfigError) as err:
        check_trackers(parse_tracking({"wandb": {}}))
    message = str(err.value)
    assert (
        "\n" not in message
        and "pip install 'raysim[wandb]'" in message
        and "tracking.wandb" in message
    )


def test_the_driver_and_the_controller_log_one_offline_run(tmp_path):
    """The driver's start and end, the controller's epochs: three processes' parts of the
    run, one id; every part in the run directory."""
    settings = WandbSettings(project="p")
    driver = Wandb(settings, tmp_path, CONFIG)
    driver.start(resume=False)
    run_id = json.loads((tmp_path / WANDB_RUN_FILE).read_text())["run_id"]

    controller = Wandb(settings, tmp_path, CONFIG)  # as the recorder builds it
    assert [controller.log_epoch(*epoch(n)) for n in (1, 2)] == [[], []]
    controller.close()
    summary = {"status": "finished", "samples_per_s": 20.0, "model": {"parameters": 11},
               "environment": {"cpus": 2}, "nodes": []}  # fmt: skip
    driver.end(RunEnd(None, summary))

    run = read_offline_run(tmp_path / WANDB_DIR, run_id, parts=3)
    assert run.parts == 3 and run.project == "p"
    assert run.config["num_nodes"] == 2 and run.config["tracking"] == CONFIG["tracking"]
    rows = [{k: v for k, v in row.items() if not k.startswith("_")} for row in run.history]
    assert rows == [
        {"train_loss": 1.0 / n, "samples_per_s": 10.0 * n, "node-0/step_time_s": 0.1,
         "node-1/step_time_s": 1.1}
        for n in (1, 2)
    ]  # fmt: skip
    assert [row["_step"] for row in run.history] == [1, 2], "the epoch is the step"
    assert run.summary["status"] == "finished" and run.tags == ["finished"]
    assert run.summary["summary/samples_per_s"] == 20.0
    assert run.summary["summary/model.parameters"] == 11
    assert run.summary["environment"] == {"cpus": 2} and "error" not in run.summary
    assert run.exit_codes == [0, 0, 0]


def test_a_failed_run_ends_failed_with_its_error(tmp_path):
    tracker = Wandb(WandbSettings(), tmp_path, CONFIG)
    tracker.start(resume=False)
    tracker.end(RunEnd(RunFailedError("node-1 ran out of memory"), {}))
    run = read_offline_run(tmp_path / WANDB_DIR, tracker.run_id, parts=2)
    assert run.summary["status"] == "failed" and run.tags == ["failed"]
    assert run.summary["error"] == "node-1 ran out of memory"
    assert run.exit_codes[-1] == 1


def test_a_resumed_run_directory_logs_to_its_own_run(tmp_path):
    first = Wandb(WandbSettings(), tmp_path, CONFIG)
    first.start(resume=False)
    again = Wandb(WandbSettings(), tmp_path, CONFIG)
    again.start(resume=True)
    assert again.run_id == first.run_id
    assert read_offline_run(tmp_path / WANDB_DIR, first.run_id, parts=2).parts == 2


def test_the_registry_builds_it_from_the_config(tmp_path):
    cfg = load_config(tracking={"wandb": {"project": "p"}})
    names = [type(t).__name__ for t in trackers_for(cfg.tracking, tmp_path, {})]
    assert names == ["TensorBoard", "Wandb"]


@pytest.mark.slow
def test_a_real_run_holds_its_config_every_epoch_and_its_status(tracked_run):
    """The session's tracked run (W&B beside MLflow): each tracker keeps its own run."""
    run_dir = tracked_run.run_dir
    saved = json.loads((run_dir / WANDB_RUN_FILE).read_text())
    assert saved["mode"] == "offline" and saved["project"] == "raysim"
    run = read_offline_run(run_dir / WANDB_DIR, saved["run_id"], parts=3)
    assert run.config["num_nodes"] == 2 and run.config["max_steps_per_epoch"] == 3
    records = read_lines(run_dir / "metrics.jsonl")
    epochs = epoch_lines(records)
    assert [row["_step"] for row in run.history] == [e["epoch"] for e in epochs] == [1, 2]
    for row, line in zip(run.history, epochs, strict=True):
        assert row["train_loss"] == pytest.approx(line["train_loss"])
        assert row["test_accuracy"] == pytest.approx(line["test_accuracy"])
        mine = [r for r in rank_lines(records) if r["epoch"] == line["epoch"]]
        for rank in mine:
            node = rank.get("node_id") or f"node-{rank['rank']}"
            assert row[f"{node}/step_time_s"] == pytest.approx(rank["step_time_s"])
    assert run.summary["status"] == "finished" and run.exit_codes[-1] == 0
    assert run.summary["summary/samples_per_s"] > 0
