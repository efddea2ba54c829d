"""raysim: simulate a multi-node data-parallel training cluster on one machine with Ray Train."""

from raysim.config import ConfigError, ExperimentConfig, load_config
from raysim.experiment import RunFailedError, RunResult, run

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "RunFailedError",
    "RunResult",
    "load_config",
    "run",
]
__version__ = "0.1.0"
