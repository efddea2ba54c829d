"""The `tracking` key: where a run is logged besides its own run directory.

    tracking:
      mlflow: {uri: file:///data/mlruns, experiment: resnet-scaling}

`mlflow: {}` (or `mlflow: true`) logs to a file store inside the run directory under
the experiment "raysim"; no `mlflow` (or `mlflow: null`) logs nothing. The logging itself
is raysim.record.mlflow_tracking, and needs the `mlflow` extra.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from raysim.errors import ConfigError, did_you_mean

DEFAULT_EXPERIMENT = "raysim"
TRACKERS = ("mlflow",)
MLFLOW_KEYS = ("uri", "experiment")


@dataclass(frozen=True, kw_only=True)
class MlflowSettings:
    """Where an MLflow run goes."""

    uri: str | None = None
    """MLflow tracking URI (file:, sqlite:, http(s):, databricks, or a local folder);
    None: a file store in the run directory, <run_dir>/<run_name>/mlruns."""
    experiment: str = DEFAULT_EXPERIMENT
    """The MLflow experiment the run is logged under (created when missing)."""


@dataclass(frozen=True, kw_only=True)
class Tracking:
    """Trackers a run logs to; none by default."""

    mlflow: MlflowSettings | None = None
    """None: no MLflow run."""

    def to_yaml(self) -> dict[str, Any]:
        """As the config file writes it: {} when off."""
        if self.mlflow is None:
            return {}
        return {"mlflow": dataclasses.asdict(self.mlflow)}


def _unknown(where: str, key: Any, known: tuple[str, ...]) -> str:
    hint = did_you_mean(key, known) or f"valid keys: {', '.join(known)}"
    return f"{where}: unknown key {key!r}: {hint.strip()}"


def _mlflow_problems(value: Any) -> list[str]:
    if value is None or isinstance(value, bool):
        return []
    if not isinstance(value, dict):
        return [
            f"tracking.mlflow: {value!r} must be a mapping {{uri: ..., experiment: ...}} "
            "(or {} for a store in the run directory)"
        ]
    problems = [_unknown("tracking.mlflow", k, MLFLOW_KEYS) for k in value if k not in MLFLOW_KEYS]
    uri = value.get("uri")
    if uri is not None and not (isinstance(uri, str) and uri.strip()):
        problems.append(
            f"tracking.mlflow.uri: {uri!r} must be a tracking URI such as file:///data/mlruns "
            "or http://127.0.0.1:5000, or unset for a store in the run directory"
        )
    experiment = value.get("experiment", DEFAULT_EXPERIMENT)
    if not (isinstance(experiment, str) and experiment.strip()):
        problems.append(
            f"tracking.mlflow.experiment: {experiment!r} must be a non-empty experiment name"
        )
    return problems


def tracking_problems(value: Any) -> list[str]:
    """Every problem of a `tracking` value as YAML gives it (None: the default)."""
    if value is None or isinstance(value, Tracking):
        return []
    if not isinstance(value, dict):
        return [f"tracking: {value!r} must be a mapping such as {{mlflow: {{experiment: name}}}}"]
    problems = [_unknown("tracking", k, TRACKERS) for k in value if k not in TRACKERS]
    return problems + _mlflow_problems(value.get("mlflow"))


def parse_tracking(value: Any) -> Tracking:
    """None, a Tracking, or {mlflow: {uri, experiment} | {} | true | false | null}."""
    if isinstance(value, Tracking):
        return value
    problems = tracking_problems(value)
    if problems:
        raise ConfigError(problems)
    mlflow = (value or {}).get("mlflow")
    if mlflow is None or mlflow is False:
        return Tracking()
    settings = {} if mlflow is True else mlflow
    return Tracking(mlflow=MlflowSettings(**settings))
