"""Byte units, named once: MB for what raysim prints, MiB/GiB where sizes are binary."""

from __future__ import annotations

MB = 10**6
"""Printed memory figures are decimal megabytes."""
GB = 10**9
MIB = 2**20
"""DDP's bucket caps are in MiB."""
GIB = 2**30
"""device_memory_gb is in GiB, as cards are sold (a 10 GB RTX 3080 has 10 GiB)."""


def mb(nbytes: float) -> str:
    return f"{nbytes / MB:.0f} MB"


def gib(nbytes: float) -> str:
    return f"{nbytes / GIB:g} GiB"
