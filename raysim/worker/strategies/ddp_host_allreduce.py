"""The gradient all-reduce through shared memory, for simulated nodes on one host.

Where every rank is a process on this host, averaging a bucket over gloo sends it
through loopback TCP: each byte is copied into the kernel and out again, on gloo's
threads, for every hop of the ring. Instead each rank moves its DDP bucket's storage
into shared memory once (in place: the gradients, views into the bucket, move with
it) and maps every peer's; then one all-reduce is a reduce-scatter (rank r sums chunk
r of every bucket into its own) and an all-gather (each copies the other chunks from
their owners), on the training thread, between gloo barriers. That is how NCCL
averages between local ranks, through shared memory rather than the network.

The sum is exact and the same on every rank: each chunk is added up by one rank, in
rank order, and copied to the others. Rank order whichever rank owns the chunk, so an
element's sum does not depend on where DDP's bucket layout puts it: a new worker group's
first step lays the bucket out in parameter order and later steps in gradient-ready
order, and a restarted run must add its first step up as the uninterrupted run did.
The barriers are gloo's, so a peer that dies fails the step as a dead peer fails gloo's
own all-reduce, within the process group's timeout.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

SUM_BLOCK = 2**18
"""Elements of a chunk summed at once (1 MiB of float32): the scratch a node holds for the
sum, instead of its whole chunk; no slower (ResNet18's 11.7M gradients over 4 ranks, two
sittings: a median 22.3 and 28.0 ms against 23.6 and 33.1 ms for the whole chunk at once,
2026-12-07)."""


@dataclass
class _SharedBucket:
    data_ptr: int
    peers: list[torch.Tensor]
    """Every rank's bucket, this rank's own included, in rank order."""
    bounds: list[int]
    """Chunk r of a bucket is [bounds[r], bounds[r + 1]): rank r adds it up."""
    nbytes: int
    total: torch.Tensor
    """A block of this rank's chunk summed in rank order, before it goes back into the
    bucket."""


def _share(tensor: torch.Tensor) -> tuple[int, int, int, int]:
    """Move the tensor's storage into shared memory in place; (pid, fd, storage offset,
    numel) for the peers to map it by."""
    fd, _ = tensor.untyped_storage()._share_fd_cpu_()[:2]
    return os.getpid(), fd, tensor.storage_offset(), tensor.numel()


def _map(handle: tuple[int, int, int, int], like: torch.Tensor) -> torch.Tensor:
    """A peer's shared tensor, mapped through its descriptor in /proc."""
    pid, fd, offset, numel = handle
    whole = torch.from_file(
        f"/proc/{pid}/fd/{fd}", shared=True, size=offset + numel, dtype=like.dtype
    )
    return whole[offset : offset + numel]


@dataclass
class HostAllreduce:
    """Averages CPU gradient buckets in place through shared memory among this group's
    ranks, all on this host. Build it with `probe`, which returns None where any rank
    cannot map another's memory (another host, another container)."""

    rank: int
    world_size: int
    group: Any
    on_shared_bytes: Callable[[int], None] | None = None
    """Told the bytes of this rank's buckets now in shared memory (out of its data
    segment, so the memory guard charges them itself)."""
    sum_block: int = SUM_BLOCK
    _buckets: dict[int, _SharedBucket] = field(default_factory=dict)

    @classmethod
    def probe(cls, group: Any = None, **kwargs: Any) -> HostAllreduce | None:
        """Every rank shares a small tensor holding its rank and maps the others'; the
        path is taken only if every rank read every peer's value back (a collective)."""
        group = group if group is not None else dist.group.WORLD
        rank, world_size = dist.get_rank(group), dist.get_world_size(group)
        mine = torch.full((1,), float(rank))
        try:
            handle: tuple | None = _share(mine)
        except (AttributeError, OSError, RuntimeError):
            handle = None
        handles: list[tuple | None] = [None] * world_size
        dist.all_gather_object(handles, handle, group=group)
        readable = True
        try:
            for peer, peer_handle in enumerate(handles):
                if peer_handle is None or float(_map(peer_handle, mine)[0]) != peer:
                    readable = False
        except (OSError, RuntimeError):
            readable = False
        verdicts: list[bool] = [False] * world_size
        dist.all_gather_object(verdicts, readable, group=group)  # mine stays mapped till here
        if not all(verdicts):
            return None
        return cls(rank, world_size, group, **kwargs)

    def allreduce(self, bucket: Any) -> torch.Tensor:
        """Average a DDP GradBucket's buffer over the group, in place, and return it."""
        buffer = bucket.buffer()
        shared = self._buckets.get(bucket.index())
        if shared is None or shared.data_ptr != buffer.data_ptr():
            shared = self._share_bucket(bucket.index(), buffer)
        lo, hi = shared.bounds[self.rank], shared.bounds[self.rank + 1]
        dist.barrier(group=self.group)  # every bucket holds this step's gradients
        # Not own chunk first: with three ranks or more, (a + b) + c and (c + a) + b differ
        # in the last bits, and a restart's first step puts elements in other chunks.
        # A block at a time, so the sum's scratch is a block, not the chunk (which no
        # device holds: NCCL sums in its own buffers).
        for start in range(lo, hi, self.sum_block):
            end = min(start + self.sum_block, hi)
            total = shared.total[: end - start]
            torch.add(shared.peers[0][start:end], shared.peers[1][start:end], out=total)
            for peer_bucket in shared.peers[2:]:
                total.add_(peer_bucket[start:end])
            torch.div(total, self.world_size, out=buffer[start:end])
        dist.barrier(group=self.group)  # every chunk is averaged
        for peer, peer_bucket in enumerate(shared.peers):
            if peer != self.rank:
                start, end = shared.bounds[peer], shared.bounds[peer + 1]
                buffer[start:end].copy_(peer_bucket[start:end])
        dist.barrier(group=self.group)  # nobody still reads a bucket the next backward fills
        return buffer

    def _share_bucket(self, index: int, buffer: torch.Tensor) -> _SharedBucket:
        """A new bucket (the first step's, or DDP's rebuilt one): share it, map the peers'."""
        handles: list[tuple | None] = [None] * self.world_size
        dist.all_gather_object(handles, _share(buffer), group=self.group)
        peers = [
            buffer if peer == self.rank else _map(handle, buffer)
            for peer, handle in enumerate(handles)
        ]
        numel = buffer.numel()
        bounds = [numel * r // self.world_size for r in range(self.world_size + 1)]
        lo, hi = bounds[self.rank], bounds[self.rank + 1]
        total = torch.empty(min(hi - lo, self.sum_block), dtype=buffer.dtype)
        shared = _SharedBucket(
            buffer.data_ptr(), peers, bounds, numel * buffer.element_size(), total
        )
        self._buckets[index] = shared
        if self.on_shared_bytes is not None:
            self.on_shared_bytes(sum(b.nbytes for b in self._buckets.values()))
        return shared
