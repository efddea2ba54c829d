"""The process group's store port: one that binds, outside the range the kernel gives
outgoing connections (which another process's connection may take before the store binds
it)."""

from __future__ import annotations

import socket

from raysim.cluster.torch_backend import PORTS_FROM, _ephemeral_low, free_listening_port


def test_the_store_port_binds_and_lies_below_the_ephemeral_range():
    below = _ephemeral_low()
    assert below > PORTS_FROM  # Linux's default range starts at 32768
    for _ in range(5):
        port = free_listening_port(socket.AF_INET, below)
        assert port is not None and PORTS_FROM <= port < below
        with socket.socket() as store:  # what TCPStore does with it
            store.bind(("", port))
            store.listen()


def test_a_port_in_use_is_not_given():
    only = PORTS_FROM + 1  # one candidate: PORTS_FROM
    with socket.socket() as holder:
        holder.bind(("", PORTS_FROM))
        holder.listen()
        assert free_listening_port(socket.AF_INET, only) is None
    assert free_listening_port(socket.AF_INET, only) == PORTS_FROM
