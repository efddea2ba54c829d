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


def figure(key: str, value: float) -> str:
    """A metric as a person reads it, by its name's unit: bytes as MB or GB, seconds as
    ms or s, counts whole, anything else to four significant digits."""
    if key.endswith("_bytes"):
        return f"{value / GB:.2f} GB" if abs(value) >= GB else f"{value / MB:.1f} MB"
    if key.endswith("_s") or "_s_per_" in key:
        return f"{value * 1000:.1f} ms" if abs(value) < 1 else f"{value:.2f} s"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"
