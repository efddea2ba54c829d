"""raysim: simulate a multi-node data-parallel training cluster on one machine with Ray Train."""

from raysim import worker
from raysim.config import ConfigError, ExperimentConfig, load_config
from raysim.experiment import RunFailedError, RunResult, run
from raysim.report import compare
from raysim.sweep import sweep

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "RunFailedError",
    "RunResult",
    "compare",
    "load_config",
    "run",
    "sweep",
    "worker",
]
__version__ = "0.1.0"
