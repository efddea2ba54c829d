import pytest

from raysim.config import ConfigError, load_config
from raysim.plan.controller_poll import controller_poll_s
from raysim.plan.resources import (
    DEVICE_RESOURCE,
    DEVICE_UNITS,
    NODE_RESOURCE,
    WHOLE_MODEL_BUCKET_MB,
    Hardware,
    PlanError,
    cpu_share,
    make_plan,
    packing_problems,
)
from raysim.units import GIB

CPU_HOST = Hardware(num_cpus=2)
ONE_GPU = Hardware(num_cpus=16, num_gpus=1, gpu_memory_bytes=10 * GIB, gpu_name="RTX 3080")


def test_cpu_host_simulates_the_device_with_a_logical_resource():
    plan = make_plan(load_config(num_nodes=4), CPU_HOST)
    assert plan.device_kind == "cpu" and not plan.use_gpu and plan.simulated_device
    assert plan.backend == "gloo"
    assert plan.resources_per_worker == {"CPU": 0.5, DEVICE_RESOURCE: 0.23 * DEVICE_UNITS}
    assert plan.cluster_resources == {DEVICE_RESOURCE: DEVICE_UNITS}
    assert plan.torch_threads == 1
    assert plan.memory_budget_bytes == int(0.23 * 10 * GIB)


def test_single_node_on_cpu_gets_every_core():
    plan = make_plan(load_config(num_nodes=1), CPU_HOST)
    assert plan.resources_per_worker["CPU"] == 2.0
    assert plan.torch_threads == 2


def test_shared_gpu_uses_gloo_and_asks_for_the_fraction():
    plan = make_plan(load_config(num_nodes=4), ONE_GPU)
    assert plan.use_gpu and plan.device_kind == "cuda"
    assert plan.backend == "gloo"  # NCCL refuses two ranks on one GPU
    assert plan.resources_per_worker == {"CPU": 4.0, "GPU": 0.23}
    assert plan.cluster_resources == {}
    assert plan.memory_budget_bytes == int(0.23 * 10 * GIB)


def test_nccl_only_when_each_worker_has_a_whole_gpu():
    two_gpus = Hardware(num_cpus=8, num_gpus=2, gpu_memory_bytes=GIB)
    cfg = load_config(num_nodes=2, gpu_fraction=1.0, memory_fraction=0.9)
    assert make_plan(cfg, two_gpus).backend == "nccl"
    assert make_plan(load_config(num_nodes=1, gpu_fraction=0.5), ONE_GPU).backend == "nccl"


def test_impossible_gpu_packing_says_how_many_fit():
    with pytest.raises(PlanError) as info:
        make_plan(load_config(num_nodes=4, gpu_fraction=0.30, memory_fraction=0.2), CPU_HOST)
    message = str(info.value)
    assert "4 nodes × gpu_fraction 0.30 = 1.20 of one device" in message
    assert "at 0.30 at most 3 nodes fit" in message
    assert "gpu_fraction to 0.25" in message


def test_impossible_memory_packing():
    problems = packing_problems(5, 0.2, 0.23, devices=1)
    assert len(problems) == 1
    assert "5 nodes × memory_fraction 0.23 = 1.15" in problems[0]
    assert "at most 4 nodes fit" in problems[0]


def test_two_gpus_hold_twice_the_nodes():
    assert packing_problems(8, 0.25, 0.25, devices=2) == []
    assert packing_problems(9, 0.25, 0.25, devices=2)


def test_external_cluster_skips_local_packing():
    cfg = load_config(num_nodes=8, address="auto")
    assert make_plan(cfg, CPU_HOST).num_workers == 8


def test_cuda_requested_without_a_gpu():
    with pytest.raises(PlanError, match="device: 'cuda' but no CUDA device"):
        make_plan(load_config(device="cuda"), CPU_HOST)


@pytest.mark.parametrize(
    ("cpus", "workers", "share"), [(2, 4, 0.5), (2, 3, 0.6666), (8, 3, 2.0), (2, 1, 2.0)]
)
def test_cpu_share_is_a_valid_ray_request(cpus, workers, share):
    assert cpu_share(cpus, workers) == share
    assert cpu_share(cpus, workers) * workers <= cpus


def test_threads_never_oversubscribe_the_cores():
    for nodes in (1, 2, 3, 4):
        plan = make_plan(
            load_config(num_nodes=nodes, gpu_fraction=0.25, memory_fraction=0.25), CPU_HOST
        )
        assert plan.torch_threads * nodes <= max(CPU_HOST.num_cpus, nodes)


def test_multi_node_gives_each_node_whole_resources_and_one_worker():
    plan = make_plan(load_config(num_nodes=4, topology="multi_node"), CPU_HOST)
    share = 0.23 * DEVICE_UNITS
    assert plan.node_resources == {"CPU": 1.0, NODE_RESOURCE: 1.0, DEVICE_RESOURCE: share}
    assert plan.resources_per_worker == {"CPU": 1.0, DEVICE_RESOURCE: share, NODE_RESOURCE: 1.0}
    assert plan.cluster_resources == {}, "the head declares nothing: no worker lands there"
    assert plan.torch_threads == 1, "threads still divide the real cores"


def test_multi_node_on_a_gpu_gives_each_node_the_card():
    plan = make_plan(load_config(num_nodes=4, topology="multi_node"), ONE_GPU)
    assert plan.node_resources == {"CPU": 4.0, NODE_RESOURCE: 1.0, "GPU": 1.0}
    assert plan.resources_per_worker == {"CPU": 4.0, "GPU": 0.23, NODE_RESOURCE: 1.0}
    assert plan.backend == "gloo"


def test_min_nodes_makes_the_run_elastic():
    assert make_plan(load_config(num_nodes=3, min_nodes=2), CPU_HOST).scaling_workers == (2, 3)
    assert make_plan(load_config(num_nodes=3, min_nodes=3), CPU_HOST).scaling_workers == 3
    assert make_plan(load_config(num_nodes=3), CPU_HOST).scaling_workers == 3


def test_nodes_sharing_this_hosts_cores_get_one_ddp_bucket():
    plan = make_plan(load_config(num_nodes=4), CPU_HOST)
    assert plan.ddp_bucket_mb == WHOLE_MODEL_BUCKET_MB
    assert plan.ddp_kwargs == {
        "bucket_cap_mb": WHOLE_MODEL_BUCKET_MB,
        "gradient_as_bucket_view": True,
    }


@pytest.mark.parametrize(
    ("overrides", "hardware"),
    [
        ({}, ONE_GPU),  # a real device: backward's overlap with all-reduce pays
        ({"network": "1gbe"}, CPU_HOST),  # the modelled wire overlaps backward as on a cluster
        ({"grad_compression": "fp16"}, CPU_HOST),
        ({"address": "auto"}, CPU_HOST),  # real nodes have cores of their own
    ],
)
def test_ddp_keeps_its_buckets_where_overlap_matters(overrides, hardware):
    plan = make_plan(load_config(num_nodes=4, **overrides), hardware)
    assert plan.ddp_bucket_mb is None and plan.ddp_kwargs == {}


@pytest.mark.parametrize(
    ("overrides", "hardware", "tried"),
    [
        ({}, CPU_HOST, True),
        ({"address": "auto"}, CPU_HOST, True),  # taken only if the workers share a host
        ({"shared_memory_allreduce": False}, CPU_HOST, False),
        ({"network": "1gbe"}, CPU_HOST, False),  # gloo's asynchronous all-reduce overlaps
        ({"grad_compression": "bf16"}, CPU_HOST, False),
        ({}, ONE_GPU, False),  # CUDA tensors: NCCL, or gloo on a shared card
    ],
)
def test_the_shared_memory_allreduce_is_tried_for_cpu_nodes_with_no_wire(
    overrides, hardware, tried
):
    plan = make_plan(load_config(num_nodes=4, **overrides), hardware)
    assert plan.host_allreduce is tried


def test_an_explicit_bucket_size_wins():
    plan = make_plan(load_config(num_nodes=4, network="1gbe", ddp_bucket_mb=25), CPU_HOST)
    assert plan.ddp_kwargs == {"bucket_cap_mb": 25, "gradient_as_bucket_view": True}
    with pytest.raises(ConfigError, match="ddp_bucket_mb: 0 is out of range; use a positive"):
        load_config(ddp_bucket_mb=0)


def test_the_wire_is_modelled_for_a_network_or_a_compression():
    from raysim.plan.resources import models_the_wire

    assert not models_the_wire(load_config())
    assert models_the_wire(load_config(grad_compression="fp16"))
    assert models_the_wire(load_config(network="10gbe"))


@pytest.mark.parametrize(
    ("nodes", "preempt", "seconds"),
    [(1, False, 0.2), (2, False, 0.2), (4, False, 0.25), (16, False, 1.0), (32, False, 2.0),
     (128, False, 2.0), (16, True, 0.5), (2, True, 0.2)],
)  # fmt: skip
def test_the_controller_polls_often_for_few_nodes_and_as_ray_does_for_many(nodes, preempt, seconds):
    assert controller_poll_s(nodes, preempt) == pytest.approx(seconds)
