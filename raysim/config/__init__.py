"""The experiment's configuration: typed dataclasses, loaded from YAML and overrides."""

from raysim.config.faults import FAULT_KINDS, Fault, parse_inject
from raysim.config.loading import (
    build_config,
    dump_yaml,
    field_types,
    load_config,
    read_yaml,
    replace,
    resume_config,
)
from raysim.config.network import PRESETS, NetworkSpec, parse_network
from raysim.config.schema import ExperimentConfig
from raysim.errors import ConfigError

__all__ = [
    "FAULT_KINDS",
    "PRESETS",
    "ConfigError",
    "ExperimentConfig",
    "Fault",
    "NetworkSpec",
    "build_config",
    "dump_yaml",
    "field_types",
    "load_config",
    "parse_inject",
    "parse_network",
    "read_yaml",
    "replace",
    "resume_config",
]
