"""One real local Ray for the whole session: runs reuse it instead of starting their own;
and the runs on it that tests in several files only read (a short one, a tracked one, a
user's own loop)."""

from __future__ import annotations

import pytest
import torch

from raysim.cluster import SimCluster
from raysim.config import load_config
from raysim.plan import Hardware, make_plan

SHARED_RAY_CPUS = 2
TINY = {"image_size": 16, "num_epochs": 2, "batch_size": 8, "device": "cpu"}
"""Digits at 16 px: the smallest real run that still learns."""


SHARED_RAY_TIERS = ("local_ray", "gpu")
"""The tiers whose runs share one Ray (and the device)."""


def pytest_xdist_make_scheduler(config, log):
    """pyproject's `-n 2`: one pytest process runs the shared-Ray tiers, in order, while the
    other runs the rest (unit, benchmarks, then the clusters of their own). In one process
    the suite left a core idle a quarter of the time (waits on timeouts, emulated links,
    single-threaded checks), which the other's work now fills. (xdist's loadgroup marks
    do not reach its scheduler under pytest 9, whose node ids are no longer `_nodeid`.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ByRay(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            shares = nodeid.split("/")[1] in SHARED_RAY_TIERS
            return "shared_ray" if shares else "own_processes"

    return ByRay(config, log)


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


@pytest.fixture(scope="session")
def tracked_run(shared_ray, tmp_path_factory):
    """TINY on two nodes for two epochs of three steps, logged to W&B (offline) and to MLflow
    (its default store in the run directory, experiment "t") at once: the one real run that
    the tracker tests (test_wandb, test_mlflow, test_mlflow_ui) read back."""
    import raysim

    tracking = {"wandb": {}, "mlflow": {"experiment": "t"}}
    values = {**TINY, "num_nodes": 2, "max_steps_per_epoch": 3, "tracking": tracking}
    cfg = load_config(**values, run_dir=str(tmp_path_factory.mktemp("tracked")), run_name="run")
    return raysim.run(cfg, out=None)


def users_loop(config):
    """A user's plain PyTorch loop (as examples/custom_train_loop.py), with a model whose
    steps take some milliseconds: prepare and report are its only raysim calls."""
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from raysim import worker

    torch.manual_seed(0)
    data = TensorDataset(torch.randn(512, 768), torch.randint(0, 10, (512,)))
    model = nn.Sequential(nn.Linear(768, 2048), nn.ReLU(), nn.Linear(2048, 10))
    model, loader = worker.prepare(model, DataLoader(data, batch_size=config["batch_size"]))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(1, config["num_epochs"] + 1):
        for inputs, labels in loader:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(inputs), labels)
            loss.backward()
            optimizer.step()
        worker.report({"epoch": epoch, "loss": loss.item()})


@pytest.fixture(scope="session")
def users_loop_run(shared_ray, tmp_path_factory):
    """users_loop on two nodes for two epochs of 8 steps, its first 2 steps after each report
    traced, node 1 a straggler (10×) and both jittering (up to 0.5× their compute): what the
    emulation and the tracer do to a user's function through prepare (test_switches,
    test_trace)."""
    import raysim

    cfg = load_config(
        num_nodes=2, num_epochs=2, batch_size=32, trace_steps=2, stragglers={1: 10.0},
        jitter=0.5, device="cpu", run_dir=str(tmp_path_factory.mktemp("own")), run_name="own",
    )  # fmt: skip
    return raysim.run(cfg, train_fn=users_loop, out=None)
