"""Joining an existing Ray cluster by address, once per run or sweep."""

from __future__ import annotations

import contextlib
import logging
import os
import socket

from raysim.cluster.env import ClusterError
from raysim.cluster.standing import read_state


def ray_logging_kwargs(verbose: bool) -> dict:
    """ray.init's logging arguments: Ray's own logs only when asked for."""
    return {
        "log_to_driver": verbose,
        "logging_level": logging.INFO if verbose else logging.WARNING,
        "configure_logging": True,
    }


@contextlib.contextmanager
def joined(address: str | None, verbose: bool = False):
    """One connection to an existing cluster (`address`) for a whole run or sweep: its
    hardware is read and the run made over it, since each join costs seconds. Without an
    address, or already connected, it does nothing."""
    import ray

    if address is None or ray.is_initialized():
        yield
        return
    join(address, **ray_logging_kwargs(verbose))
    try:
        yield
    finally:
        ray.shutdown()


def join(address: str, **init_kwargs) -> None:
    """ray.init on an existing cluster; a failure names the usual causes.

    Ray 2.60's `ray start` turns token authentication on, and Ray sends its token to an
    explicit address only with RAY_AUTH_MODE=token: raysim leaves that choice to the user.
    """
    import ray

    standing = read_state() if address == "auto" else None
    if standing is not None:
        # `raysim up`'s cluster, started with Ray's token authentication: send the token,
        # as Ray does for a cluster it finds on this host (its own helper, which keeps an
        # explicit RAY_AUTH_MODE).
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )

        os.environ.setdefault("RAY_ADDRESS", standing.address)
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    # Ray Train records the run's state in that cluster's state API (read where the
    # trainer is built: here).
    os.environ.setdefault("RAY_TRAIN_ENABLE_STATE_TRACKING", "1")
    check_reachable(address)
    try:
        ray.init(address=address, **init_kwargs)
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as err:
        first_line = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err)
        raise ClusterError(
            [f"cannot join the Ray cluster at address {address!r}: {first_line}. Check that "
             "it runs (`ray status --address ...`) and fix address (config) / --address; a "
             "cluster with token authentication (Ray's default) also needs RAY_AUTH_MODE=token "
             "and its token in ~/.ray/auth_token or RAY_AUTH_TOKEN"]
        ) from None  # fmt: skip


def check_reachable(address: str) -> None:
    """Ray retries an address where nothing listens for minutes; fail at once instead."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # auto, or a Ray Client address: Ray resolves those
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise ClusterError(
            [f"nothing answers at address {address!r} ({err.strerror or err}); start the "
             "cluster (`raysim up`, or `ray start --head` on that host) or fix address "
             "(config) / --address"]
        ) from None  # fmt: skip
