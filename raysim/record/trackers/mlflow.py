"""The MLflow tracker (the config's `tracking: {mlflow: ...}`), an optional extra.

The driver opens the MLflow run before Ray starts (the resolved config as params) and
ends it when the run ends (summary.json's figures as summary/ metrics, the run directory's
files as artifacts, status FINISHED, or FAILED with the error as the raysim.error tag);
in between the controller-side recorder logs each epoch once, with the epoch as the step:
the aggregate under its metrics.jsonl names (train_loss, samples_per_s, ...) and each
simulated node under its name (node-0/train_loss_sum, node-0/step_time_s, ...). The
controller finds the run the driver opened in the run directory's mlflow.json.

mlflow is imported only by a run that asks for it. The default store is a database in the
run directory (sqlite:///<run_dir>/mlflow.db, artifacts in <run_dir>/mlartifacts), which
`mlflow ui --backend-store-uri` serves. A file: URI still works: MLflow 3 keeps its file
store in maintenance mode and refuses it unless MLFLOW_ALLOW_FILE_STORE is true, which
raysim sets around its own calls to a file store only.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from raysim.config.tracking import MlflowSettings
from raysim.record.trackers.base import (
    RunEnd,
    Tracker,
    TrackerError,
    error_text,
    first_line,
    require_extra,
)
from raysim.record.trackers.figures import epoch_figures, summary_figures
from raysim.rundir import (
    MLFLOW_ARTIFACTS_DIR,
    MLFLOW_DB_FILE,
    MLFLOW_RUN_FILE,
    train_run_name,
    write_json,
)

ALLOW_FILE_STORE_ENV = "MLFLOW_ALLOW_FILE_STORE"
EXPERIMENT_KIND_TAG, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
MAX_PARAM_CHARS = 6000
MAX_TAG_CHARS = 8000


def resolve_uri(uri: str | None, run_dir: Path) -> str:
    """The tracking URI as the controller actor (another process, another working
    directory) must see it: relative paths made absolute; None is the run directory's
    own database, sqlite:///<run_dir>/mlflow.db."""
    if uri is None:
        return "sqlite:///" + str(Path(run_dir).resolve() / MLFLOW_DB_FILE)
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "":
        return Path(uri).expanduser().resolve().as_uri()
    if parsed.scheme == "file" and not parsed.netloc and not parsed.path.startswith("/"):
        return Path(parsed.path).resolve().as_uri()
    if parsed.scheme == "sqlite" and uri.startswith("sqlite:///") and uri[10:11] != "/":
        return "sqlite:///" + str(Path(uri[10:]).resolve())
    return uri


def is_file_store(uri: str) -> bool:
    return urllib.parse.urlparse(uri).scheme == "file"


def local_store(uri: str) -> Path | None:
    """The file or folder a local store (file:, sqlite:) keeps its runs in; None for a
    server."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.path))
    if parsed.scheme == "sqlite" and uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :])
    return None


@contextlib.contextmanager
def file_store_allowed(uri: str) -> Iterator[None]:
    """MLflow 3's opt-in to its file store, for raysim's calls to a file store only (a
    value the user set is left as it is)."""
    if not is_file_store(uri) or ALLOW_FILE_STORE_ENV in os.environ:
        yield
        return
    os.environ[ALLOW_FILE_STORE_ENV] = "true"
    try:
        yield
    finally:
        os.environ.pop(ALLOW_FILE_STORE_ENV, None)


def _clean_key(key: str) -> str:
    """MLflow keys take letters, digits, _ - . / and spaces."""
    return re.sub(r"[^\w\-./ ]", "_", key)


def config_params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """The resolved config flattened: nested mappings as dotted keys, the rest as text."""
    params = {}
    for key, value in config.items():
        name = _clean_key(f"{prefix}{key}")
        if isinstance(value, dict) and value:
            params.update(config_params(value, f"{name}."))
        else:
            text = json.dumps(value) if isinstance(value, list | dict) else str(value)
            params[name] = text[:MAX_PARAM_CHARS]
    return params


def epoch_metrics(epoch: dict[str, Any], ranks: list[dict[str, Any]]) -> dict[str, float]:
    """One epoch's metrics (figures.py), their names as MLflow takes them."""
    return {_clean_key(k): v for k, v in epoch_figures(epoch, ranks).items()}


def summary_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """summary.json's figures (figures.py), their names as MLflow takes them."""
    return {_clean_key(k): v for k, v in summary_figures(summary).items()}


class Mlflow(Tracker):
    """One raysim run's MLflow run. The driver opens and ends it; the controller's copy
    logs the epochs (the client is made lazily in each process)."""

    def __init__(self, settings: MlflowSettings, run_dir: Path, config: dict[str, Any]):
        super().__init__(settings, run_dir, config)
        self.uri: str | None = None
        self.run_id: str | None = None
        self._client = None
        self._told = False

    @classmethod
    def check(cls, settings: MlflowSettings) -> None:
        """The extra is installed, or one line says how to install it."""
        require_extra("mlflow", "MLflow", "mlflow")

    @property
    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def allowed(self):
        return file_store_allowed(self.uri or "")

    # The driver, before Ray starts.

    def start(self, resume: bool) -> None:
        """Open the MLflow run (or reopen a resumed run's own) and log the config as params."""
        self.uri = resolve_uri(self.settings.uri, self.run_dir)
        try:
            with self.allowed():
                self._open(resume)
        except Exception as err:  # an unreachable server, a store MLflow cannot open
            raise TrackerError(
                f"tracking.mlflow: cannot open an MLflow run at {self.uri}: {first_line(err)}"
            ) from None
        saved = {"tracking_uri": self.uri, "run_id": self.run_id,
                 "experiment": self.settings.experiment}  # fmt: skip
        write_json(self.run_dir / MLFLOW_RUN_FILE, saved)

    def _open(self, resume: bool) -> None:
        from mlflow.entities import Param, RunStatus

        params = config_params(self.config)
        earlier = self._saved_run_id() if resume else None
        if earlier is not None:
            self.run_id = earlier
            self.client.update_run(earlier, status=RunStatus.to_string(RunStatus.RUNNING))
            logged = self.client.get_run(earlier).data.params
            changed = {k: v for k, v in params.items() if k in logged and logged[k] != v}
            params = {k: v for k, v in params.items() if k not in logged}
            if changed:  # params cannot change: a resumed run's new values are a tag
                text = ", ".join(f"{k}={v}" for k, v in changed.items())
                self.client.set_tag(earlier, "raysim.resumed_with", text[:MAX_TAG_CHARS])
        else:
            name = self.settings.experiment
            found = self.client.get_experiment_by_name(name)
            experiment_id = found.experiment_id if found else self._create_experiment(name)
            tags = {"raysim.run_dir": str(self.run_dir)}
            run = self.client.create_run(experiment_id, run_name=self.run_dir.name, tags=tags)
            self.run_id = run.info.run_id
        self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in params.items()])

    def _create_experiment(self, name: str) -> str:
        """Tagged as model training, so MLflow's UI opens it with its metric charts rather
        than its GenAI views. The default store keeps its artifacts in the run directory
        too (MLflow's own default for a database store is ./mlruns in the working
        directory)."""
        where = None
        if self.settings.uri is None:
            where = str(self.run_dir.resolve() / MLFLOW_ARTIFACTS_DIR)
        tags = {EXPERIMENT_KIND_TAG: MODEL_TRAINING}
        return self.client.create_experiment(name, artifact_location=where, tags=tags)

    def _saved(self) -> dict[str, Any] | None:
        path = self.run_dir / MLFLOW_RUN_FILE
        return json.loads(path.read_text()) if path.is_file() else None

    def _saved_run_id(self) -> str | None:
        """The run id a resumed run directory was logged under, if to this same store."""
        saved = self._saved()
        return saved["run_id"] if saved and saved.get("tracking_uri") == self.uri else None

    # The controller-side recorder, once per epoch.

    def log_epoch(self, epoch: dict[str, Any], ranks: list[dict[str, Any]]) -> list[dict]:
        """Log an epoch to the run the driver opened; a failure to log is told once, as a
        notice line, and the next epochs try again."""
        from mlflow.entities import Metric

        stamp = int(1000 * epoch.get("report_unix", time.time()))
        step = int(epoch["epoch"])
        metrics = [Metric(k, v, stamp, step) for k, v in epoch_metrics(epoch, ranks).items()]
        try:
            if self.run_id is None:  # this copy is the controller's: the driver's file says
                saved = self._saved() or {}
                self.uri, self.run_id = saved["tracking_uri"], saved["run_id"]
            with self.allowed():
                self.client.log_batch(self.run_id, metrics=metrics)
        except Exception as err:
            if self._told:
                return []
            self._told = True
            text = f"MLflow logging failed at epoch {step} ({self.uri}): {err}"
            return [{"kind": "notice", "epoch": step, "text": text}]
        return []

    # The driver, when the run ends.

    def end(self, outcome: RunEnd) -> None:
        """Summary, artifacts and status. A tracking failure here is told on stderr and
        does not hide the run's own result."""
        if self.run_id is None:
            return  # never started (the run stopped before its run directory)
        try:
            with self.allowed():
                self._end(outcome)
        except Exception as err:
            print(f"raysim: warning: MLflow: could not end run {self.run_id}: {err}",
                  file=sys.stderr)  # fmt: skip

    def _end(self, outcome: RunEnd) -> None:
        from mlflow.entities import Metric, RunTag

        stamp = int(1000 * time.time())
        metrics = [Metric(k, v, stamp, 0) for k, v in summary_metrics(outcome.summary).items()]
        tags = [RunTag(f"raysim.environment.{k}", str(v)[:MAX_TAG_CHARS])
                for k, v in outcome.summary.get("environment", {}).items()]  # fmt: skip
        if outcome.error is not None:
            tags.append(RunTag("raysim.error", error_text(outcome.error)[:MAX_TAG_CHARS]))
        self.client.log_batch(self.run_id, metrics=metrics, tags=tags)
        self._log_artifacts()
        self.client.set_terminated(self.run_id, status=outcome.status.upper())

    def _log_artifacts(self) -> None:
        """The run directory's files: config, metrics, summary, TensorBoard, trace, report;
        not the MLflow store itself (its database, journal and artifacts), nor Ray Train's
        checkpoints."""
        store = local_store(self.uri)
        skip = {self.run_dir / train_run_name(self.run_dir), self.run_dir / MLFLOW_ARTIFACTS_DIR}
        for path in sorted(self.run_dir.iterdir()):
            if path in skip or path.name.startswith(".") or path.name.startswith(MLFLOW_DB_FILE):
                continue
            if store is not None and (path.resolve() == store or path.resolve() in store.parents):
                continue
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), artifact_path=path.name)
            else:
                self.client.log_artifact(self.run_id, str(path))
