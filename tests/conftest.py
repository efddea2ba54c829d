"""One real local Ray for the whole session: runs reuse it instead of starting their own;
and one short run on it for the tests that only read a run."""

from __future__ import annotations

import pytest
import torch

from raysim.cluster import SimCluster
from raysim.config import load_config
from raysim.plan import Hardware, make_plan

SHARED_RAY_CPUS = 2
TINY = {"image_size": 16, "num_epochs": 2, "batch_size": 8, "device": "cpu"}
"""Digits at 16 px: the smallest real run that still learns."""


def pytest_collection_modifyitems(config, items):
    # The tests without Ray go first, so that what they check of this process (no Ray
    # started, its memory figures) is not left over from a run; tests with a cluster of
    # their own stop the shared Ray: they go last.
    items.sort(key=lambda item: ("own_cluster" in item.keywords, _tier(item) != "unit"))
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


def _tier(item: pytest.Item) -> str:
    """The tier folder a test lives in (unit, local_ray, clusters, gpu, benchmarks)."""
    return item.path.parent.name


@pytest.fixture(scope="session")
def shared_ray():
    """A simulated CPU cluster big enough for 4 nodes; stopped at the end of the session."""
    plan = make_plan(load_config(num_nodes=4, device="cpu"), Hardware(num_cpus=SHARED_RAY_CPUS))
    with SimCluster(plan) as cluster:
        yield cluster


@pytest.fixture
def without_shared_ray():
    """For a test that starts its own cluster: this process may hold one Ray at a time."""
    import ray

    ray.shutdown()


@pytest.fixture
def tiny_config(tmp_path):
    """TINY, in this test's own run directory."""

    def make(**overrides):
        values = {**TINY, "run_dir": str(tmp_path / "runs"), "run_name": "run"}
        values.update(overrides)
        return load_config(**values)

    return make


@pytest.fixture(scope="session")
def short_run(shared_ray, tmp_path_factory):
    """TINY on two nodes for one epoch of three steps, run once for every test that reads it."""
    import raysim

    values = {**TINY, "num_nodes": 2, "num_epochs": 1, "max_steps_per_epoch": 3}
    cfg = load_config(**values, run_dir=str(tmp_path_factory.mktemp("short")), run_name="short")
    return raysim.run(cfg, out=None)
