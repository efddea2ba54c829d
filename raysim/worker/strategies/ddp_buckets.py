"""When each of DDP's gradient buckets is ready, from the parameters' gradient hooks, for
the model's facts (raysim.worker.model_facts): DDP's default layout, what a real cluster
runs, and with one node (no DDP, no comm hook) the layout DDP would build here."""

from __future__ import annotations

import time

import torch

from raysim.projection.comm_model import bucket_layout
from raysim.worker.model_facts import ModelFacts, unwrapped


def _on_bucket_ready(model: torch.nn.Module, cap_mb: float | None, callback) -> list:
    """callback(index, nbytes) when the last gradient of bucket `index` of DDP's layout with
    `cap_mb` has been accumulated. Returns the hooks' handles."""
    handles = []
    for index, bucket in enumerate(bucket_layout(unwrapped(model), cap_mb)):
        nbytes = sum(p.numel() * p.element_size() for p in bucket)
        pending = {id(p) for p in bucket}
        seen: set[int] = set()

        def ready(param, pending=pending, seen=seen, index=index, nbytes=nbytes) -> None:
            seen.add(id(param))
            if seen == pending:
                seen.clear()
                callback(index, nbytes)

        handles += [param.register_post_accumulate_grad_hook(ready) for param in bucket]
    return handles


def watch_single_node_buckets(
    model: torch.nn.Module, facts: ModelFacts, cap_mb: float | None
) -> None:
    """Without DDP: a bucket of the layout DDP would build is ready with its last gradient."""
    facts.gradient_hooks += _on_bucket_ready(
        model, cap_mb, lambda _, nbytes: facts.bucket_ready(nbytes, time.perf_counter())
    )


def watch_default_buckets(model: torch.nn.Module, facts: ModelFacts) -> None:
    """DDP's default layout, whatever this run uses: what a real cluster would run."""
    facts.gradient_hooks += _on_bucket_ready(
        model, None, lambda index, _: facts.default_bucket_ready(index, time.perf_counter())
    )
