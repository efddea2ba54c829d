"""Process environment and loopback ports for the Ray processes raysim starts."""

from __future__ import annotations

import contextlib
import os
import socket

from raysim.errors import ConfigError


class ClusterError(ConfigError):
    """The Ray cluster cannot host the plan; the message says what to start or change."""


@contextlib.contextmanager
def scoped_env(values: dict[str, str]):
    """Environment variables set for a block (processes started in it inherit them)."""
    earlier = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in earlier.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def unset_only(values: dict[str, str]) -> dict[str, str]:
    """The values whose names the user has not set: raysim's defaults never override theirs."""
    return {key: value for key, value in values.items() if key not in os.environ}


def loopback_gcs_env() -> dict[str, str]:
    """For the embedded Ray's processes: its GCS on a known loopback port, and that address
    as theirs. Ray's state API (Ray Train's placement-group cleaner asks it every second)
    otherwise takes the address from /tmp/ray's last-cluster file, which may name another
    or a dead cluster, and turns 127.0.0.1 into the host's network address, where the GCS
    does not listen: each run then waits 12 s at its end, and with another cluster's
    address the cleaner could remove this run's placement group."""
    port = free_port()
    return {
        "RAY_GCS_SERVER_PORT": str(port),
        "RAY_ADDRESS": f"127.0.0.1:{port}",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # Ray's switch: local addresses stay local
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_port_free(port: int, what: str, flag: str) -> None:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise ClusterError(
                [f"port {port} for the {what} is in use on 127.0.0.1; choose another with "
                 f"{flag} PORT, or {flag} 0 for a free one"]
            ) from None  # fmt: skip
