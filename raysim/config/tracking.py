"""The `tracking` key: where a run is logged besides its own run directory.

    tracking:
      mlflow: {uri: sqlite:///data/mlflow.db, experiment: resnet-scaling}
      wandb: {project: resnet-scaling, mode: offline}

Each key names a tracker and holds its settings (SETTINGS: the tracker's name -> its
settings class). `mlflow: {}` (or `mlflow: true`) logs to a database inside the run
directory (mlflow.db) under the experiment "raysim"; no `mlflow` (or `mlflow: null`) logs nothing.
`wandb: {}` logs a Weights & Biases run offline, its files in the run directory (wandb/),
under the project "raysim". TensorBoard needs no key: every run writes its event files. The
trackers themselves are raysim.record.trackers (MLflow and W&B need their extras).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from raysim.errors import ConfigError, did_you_mean

DEFAULT_EXPERIMENT = "raysim"


def _unknown(where: str, key: Any, known: tuple[str, ...]) -> str:
    hint = did_you_mean(key, known) or f"valid keys: {', '.join(known)}"
    return f"{where}: unknown key {key!r}: {hint.strip()}"


def _key_problems(where: str, value: dict, settings: type) -> list[str]:
    known = tuple(f.name for f in dataclasses.fields(settings))
    return [_unknown(where, k, known) for k in value if k not in known]


@dataclass(frozen=True, kw_only=True)
class MlflowSettings:
    """Where an MLflow run goes."""

    uri: str | None = None
    """MLflow tracking URI (sqlite:, http(s):, databricks, file: or a local folder);
    None: a database in the run directory, sqlite:///<run_dir>/mlflow.db."""
    experiment: str = DEFAULT_EXPERIMENT
    """The MLflow experiment the run is logged under (created when missing)."""

    @staticmethod
    def problems(value: dict[str, Any]) -> list[str]:
        """Every problem of a `tracking.mlflow` mapping as YAML gives it."""
        problems = _key_problems("tracking.mlflow", value, MlflowSettings)
        uri = value.get("uri")
        if uri is not None and not (isinstance(uri, str) and uri.strip()):
            problems.append(
                f"tracking.mlflow.uri: {uri!r} must be a tracking URI such as "
                "sqlite:///data/mlflow.db or http://127.0.0.1:5000, or unset for a store in the "
                "run directory"
            )
        experiment = value.get("experiment", DEFAULT_EXPERIMENT)
        if not (isinstance(experiment, str) and experiment.strip()):
            problems.append(
                f"tracking.mlflow.experiment: {experiment!r} must be a non-empty experiment name"
            )
        return problems


WANDB_MODES = ("offline", "online")


@dataclass(frozen=True, kw_only=True)
class WandbSettings:
    """Where a Weights & Biases run goes."""

    project: str = DEFAULT_EXPERIMENT
    """The W&B project the run is logged under."""
    mode: str = "offline"
    """offline: W&B's files in the run directory only, nothing leaves the machine (`wandb
    sync` uploads them later); online: to the W&B server (needs `wandb login`)."""

    @staticmethod
    def problems(value: dict[str, Any]) -> list[str]:
        """Every problem of a `tracking.wandb` mapping as YAML gives it."""
        problems = _key_problems("tracking.wandb", value, WandbSettings)
        project = value.get("project", DEFAULT_EXPERIMENT)
        if not (isinstance(project, str) and project.strip()):
            problems.append(f"tracking.wandb.project: {project!r} must be a non-empty name")
        mode = value.get("mode", "offline")
        if mode not in WANDB_MODES:
            hint = did_you_mean(mode, WANDB_MODES).strip()
            problems.append(
                f"tracking.wandb.mode: {mode!r} must be one of {', '.join(WANDB_MODES)}"
                + (f"; {hint}" if hint else "")
            )
        return problems


SETTINGS: dict[str, type] = {"mlflow": MlflowSettings, "wandb": WandbSettings}
"""A tracker's name under `tracking:` -> its settings (a frozen dataclass of its keys, with a
static problems(mapping) -> list of problem lines)."""


@dataclass(frozen=True, kw_only=True)
class Tracking:
    """Trackers a run logs to besides TensorBoard; none by default (a field per SETTINGS)."""

    mlflow: MlflowSettings | None = None
    """None: no MLflow run."""
    wandb: WandbSettings | None = None
    """None: no W&B run."""

    def chosen(self) -> dict[str, Any]:
        """The trackers turned on, by name, with their settings."""
        return {name: getattr(self, name) for name in SETTINGS if getattr(self, name)}

    def to_yaml(self) -> dict[str, Any]:
        """As the config file writes it: {} when off."""
        return {name: dataclasses.asdict(s) for name, s in self.chosen().items()}


def _settings_problems(name: str, value: Any) -> list[str]:
    if value is None or isinstance(value, bool):
        return []
    if not isinstance(value, dict):
        keys = ", ".join(f"{f.name}: ..." for f in dataclasses.fields(SETTINGS[name]))
        return [
            f"tracking.{name}: {value!r} must be a mapping {{{keys}}} (or {{}} for its defaults)"
        ]
    return SETTINGS[name].problems(value)


def tracking_problems(value: Any) -> list[str]:
    """Every problem of a `tracking` value as YAML gives it (None: the default)."""
    if value is None or isinstance(value, Tracking):
        return []
    if not isinstance(value, dict):
        return [f"tracking: {value!r} must be a mapping such as {{mlflow: {{experiment: name}}}}"]
    known = tuple(SETTINGS)
    problems = [_unknown("tracking", k, known) for k in value if k not in known]
    for name in known:
        problems += _settings_problems(name, value.get(name))
    return problems


def parse_tracking(value: Any) -> Tracking:
    """None, a Tracking, or {<tracker>: {settings} | {} | true | false | null}."""
    if isinstance(value, Tracking):
        return value
    problems = tracking_problems(value)
    if problems:
        raise ConfigError(problems)
    chosen = {}
    for name, settings in (value or {}).items():
        if settings is not None and settings is not False:
            chosen[name] = SETTINGS[name](**({} if settings is True else settings))
    return Tracking(**chosen)
