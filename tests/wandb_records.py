"""An offline W&B run read back from its files, as `wandb sync` would upload it.

wandb 0.31 keeps no Python reader of its .wandb files (the transaction log is read by its
Go core), so this reads the format itself: W&B's 7-byte header, then LevelDB's log format
(32 KiB blocks, each record chunk with a CRC-32, its length and its type), each record a
wandb.proto Record. A run opened by several processes with the same id is one folder per
process (offline-run-<time>-<id>, with -1, -2... when two opened it in the same second),
merged here in time order.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK = 32768
HEADER = struct.Struct("<4sHB")  # ":W&B", magic 0xBEE1, version
CHUNK = struct.Struct("<IHB")  # CRC-32 of type + data, length, type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[Any]:
    """Every Record in one .wandb file, each chunk's CRC checked."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    ident, magic, _ = HEADER.unpack_from(data)
    assert (ident, magic) == (b":W&B", 0xBEE1), f"{path}: not a W&B transaction log"
    pos, parts = HEADER.size, []
    while pos + CHUNK.size <= len(data):
        left = BLOCK - pos % BLOCK
        crc, length, kind = CHUNK.unpack_from(data, pos) if left >= CHUNK.size else (0, 0, 0)
        if kind == 0:  # a block's zero-filled tail
            pos += left
            continue
        body = data[pos + CHUNK.size : pos + CHUNK.size + length]
        assert zlib.crc32(body, zlib.crc32(bytes([kind]))) == crc, f"{path}: bad CRC at {pos}"
        pos += CHUNK.size + length
        parts.append(body)
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            parts = []
            yield record


def _update(into: dict[str, Any], items) -> None:
    for item in items:
        keys = list(item.nested_key) or [item.key]
        target = into
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = json.loads(item.value_json)


@dataclass
class OfflineRun:
    """What the W&B run holds, all its parts together."""

    run_id: str
    parts: int = 0
    project: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)

    def add(self, record: Any) -> None:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            self.project = record.run.project
            _update(self.config, record.run.config.update)
            self.tags = list(record.run.tags) or self.tags
        elif kind == "config":
            _update(self.config, record.config.update)
        elif kind == "history":
            row: dict[str, Any] = {}
            _update(row, record.history.item)
            self.history.append(row)
        elif kind == "summary":
            _update(self.summary, record.summary.update)
        elif kind == "exit":
            self.exit_codes.append(record.exit.exit_code)


def read_offline_run(wandb_dir: Path, run_id: str, parts: int, timeout_s: float = 60) -> OfflineRun:
    """The run `run_id` from a wandb/ folder: its parts (one per process) in time order,
    once `parts` of them have ended (wandb's core writes a part's file after finish()
    returns, so a part is read once it holds its exit record)."""
    deadline = time.monotonic() + timeout_s
    while True:
        run = OfflineRun(run_id)
        for part in sorted(Path(wandb_dir).glob(f"offline-run-*-{run_id}*")):
            run.parts += 1
            for record in records(part / f"run-{run_id}.wandb"):
                run.add(record)
        if len(run.exit_codes) >= parts or time.monotonic() > deadline:
            return run
        time.sleep(0.5)
