"""The runs that tests in several local_ray files only read: one training function under
ddp, zero and fsdp (test_sharded compares them, test_memory_estimate sets their peaks
beside the estimate)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def sharded_runs(shared_ray, tmp_path_factory):
    """test_sharded's sharded_fn on 4 nodes for two epochs of 4 steps under each strategy,
    once for the session: the 8.4M-parameter MLP (deep_model), fsdp on the slow emulated
    link (it only adds delay)."""
    from tests.local_ray.test_sharded import SLOW_LINK, run_strategy

    root = tmp_path_factory.mktemp("sharded")
    return {
        "ddp": run_strategy(root, "ddp"),
        "zero": run_strategy(root, "zero"),
        "fsdp": run_strategy(root, "fsdp", network=SLOW_LINK),
    }
