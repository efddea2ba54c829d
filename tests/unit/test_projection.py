"""The projection (raysim.projection): the flat model of one link, and each mechanism of
the real-cluster model on its own (links, collectives, step_model, model_profile), pure
and Ray-free; the check against published points is test_projection_validation.py."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from raysim.config import PRESETS, ConfigError, NetworkSpec
from raysim.projection.collectives import Topology, allreduce_cost, ring_seconds, tree_seconds
from raysim.projection.comm_model import allreduce_seconds
from raysim.projection.flat import DEFAULT_NODES, project
from raysim.projection.links import INTRA_LINKS, NETWORK_LINKS, RDMA, TCP, Link, parse_link
from raysim.projection.model_profile import torchvision_profile
from raysim.projection.step_model import (
    CONTENTION,
    STRAGGLER_SPREAD,
    TORCH_DDP_OVERHEAD_S_PER_GB,
    Workload,
    bytes_ready_fraction,
    compute_done_at,
    overlapped_step_seconds,
    project_scaling,
    project_step,
    regrid_ready_fraction,
    slowest_of,
)
from raysim.report.projection import format_table

ROOT = Path(__file__).resolve().parents[2]
MB = 1_000_000


def topo(nodes=2, gpus=8, intra="nvlink", network="ib_hdr", nics=1, algorithm="nccl"):
    return Topology(nodes, gpus, INTRA_LINKS[intra], NETWORK_LINKS[network], nics, algorithm)


@pytest.fixture(scope="module")
def resnet50():
    return torchvision_profile("resnet50")


def work(profile, step_s=0.2, batch=32, overhead=0.0):
    return Workload(step_s, batch, profile.buckets_bytes, profile.ready_fraction,
                    profile.backward_share, "given", "FLOPs", overhead)  # fmt: skip


def test_every_preset_names_its_source_and_runs_below_line_rate():
    for link in [*INTRA_LINKS.values(), *NETWORK_LINKS.values()]:
        assert link.source and "(" in link.source, link.name
        assert link.busbw_gbs < link.line_rate_gbps / 8, f"{link.name} is used as if line rate"


def test_one_gpu_is_perfectly_efficient(resnet50):
    row = project_step(work(resnet50, overhead=0.01), topo(nodes=1, gpus=1))
    assert row.comm_s == 0 and row.efficiency == 1.0 and row.step_s_overlap == 0.2


@pytest.mark.parametrize("step_s", [0.01, 0.2, 2.0])
def test_a_slower_link_never_projects_a_higher_efficiency(resnet50, step_s):
    """Within one transport: a slower RDMA link may beat a faster TCP one (its contention)."""
    by_speed = sorted((n for n, link in NETWORK_LINKS.items() if link.transport == TCP),
                      key=lambda name: NETWORK_LINKS[name].busbw_gbs)  # fmt: skip
    for nodes in (2, 8, 64):
        eff = [project_step(work(resnet50, step_s), topo(nodes, network=n)).efficiency
               for n in by_speed]  # fmt: skip
        assert eff == sorted(eff), (nodes, list(zip(by_speed, eff, strict=True)))


def expected_max_of_normals(n: int) -> float:
    """E[max of n standard normals] by integrating x · n φ(x) Φ(x)^(n−1) (midpoint rule)."""
    step, total = 1e-3, 0.0
    for i in range(-8000, 8000):
        x = (i + 0.5) * step
        pdf = math.exp(-x * x / 2) / math.sqrt(2 * math.pi)
        total += x * n * pdf * (0.5 * (1 + math.erf(x / math.sqrt(2)))) ** (n - 1) * step
    return total


def test_the_slowest_gpu_is_the_expected_maximum_of_their_spread():
    assert slowest_of(1) == 1.0 and slowest_of(8, spread=0.0) == 1.0
    for gpus, within in ((2, 0.05), (8, 0.01), (64, 0.01), (512, 0.01)):
        exact = expected_max_of_normals(gpus)
        assert (slowest_of(gpus, 0.04) - 1) / 0.04 == pytest.approx(exact, rel=within), gpus
    assert slowest_of(16) < slowest_of(128) < slowest_of(1024)


def test_more_gpus_wait_for_their_slowest(resnet50):
    """Without a link to pay for (loopback is the emulation's; a one-machine NVLink of
    nearly free all-reduces), N GPUs train at one GPU's speed over their slowest's."""
    free = Link("free", 1e9, 0.0, place="intra", transport=RDMA)
    for gpus in (2, 8, 16):
        one_machine = Topology(1, gpus, free, NETWORK_LINKS["ib_hdr"])
        row = project_step(work(resnet50), one_machine)
        assert row.efficiency == pytest.approx(1 / slowest_of(gpus), rel=1e-4), gpus
        assert row.efficiency < 1 - 0.5 * STRAGGLER_SPREAD
        flat = project_step(work(resnet50), one_machine, spread=0.0)
        assert flat.efficiency == pytest.approx(1.0, abs=1e-4)


def test_the_projected_step_never_falls_below_compute(resnet50):
    for nodes in (1, 2, 16, 1024):
        for network in NETWORK_LINKS:
            row = project_step(work(resnet50), topo(nodes, network=network))
            assert row.compute_s <= row.step_s_overlap <= row.step_s_no_overlap + 1e-12


def test_the_machines_gpus_share_its_nic():
    """8 GPUs behind one NIC are slower than behind 8; with a fast NIC the intra link bounds."""
    one, eight = topo(4, nics=1), topo(4, nics=8)
    assert ring_seconds(100 * MB, one) > 4 * ring_seconds(100 * MB, eight)
    pcie_bound = topo(4, intra="pcie3", network="ib_ndr", nics=8)
    expected = 1000 * MB * 2 * 31 / 32 / 12e9  # PCIe's 12 GB/s, not the NICs' 8 x 46
    assert ring_seconds(1000 * MB, pcie_bound) == pytest.approx(expected, rel=0.01)


def test_hierarchical_moves_one_share_per_gpu_across_machines():
    """Reduce-scatter inside, all-reduce across, all-gather inside: on 2 machines the NIC
    carries n bytes each way instead of the flat ring's 2(p-1)/p n."""
    two = topo(2, nics=1, algorithm="hierarchical")
    flat = topo(2, nics=1, algorithm="ring")
    big = 400 * MB
    inside = ring_seconds(big, topo(1))  # reduce-scatter + all-gather over NVLink
    across = allreduce_cost(big, two)[0] - inside
    assert across == pytest.approx(big / 24e9, rel=0.01)  # n bytes through the 24 GB/s NIC
    assert allreduce_cost(big, flat)[0] == pytest.approx(big * 2 * 15 / 16 / 24e9, rel=0.01)
    assert allreduce_cost(big, topo(1, algorithm="hierarchical"))[0] == pytest.approx(
        ring_seconds(big, topo(1))
    )


def test_nccl_takes_the_tree_at_scale_and_the_ring_for_large_messages_on_few_machines():
    """As NCCL's tuning model does: the ring's latency grows with every GPU in it."""
    many = topo(256, gpus=8)
    assert allreduce_cost(64 * 1024, many)[1] == "tree"
    assert allreduce_cost(256 * MB, topo(4, gpus=8))[1] == "ring"
    assert allreduce_cost(64 * 1024, topo(2, gpus=1))[1] == "ring"
    seconds, _ = allreduce_cost(64 * 1024, many)
    assert seconds == pytest.approx(min(ring_seconds(64 * 1024, many),
                                        tree_seconds(64 * 1024, many)))  # fmt: skip


def test_flop_readiness_puts_a_big_fully_connected_layer_early():
    vgg = torchvision_profile("vgg16")
    assert sum(vgg.buckets_bytes) == vgg.parameters * 4
    biggest = max(range(len(vgg.buckets_bytes)), key=lambda k: vgg.buckets_bytes[k])
    assert vgg.buckets_bytes[biggest] > 300 * MB  # the 25088 x 4096 classifier layer
    assert vgg.ready_fraction[biggest] < 0.05, "bytes-proportional would say ~0.7"
    assert bytes_ready_fraction(vgg.buckets_bytes)[biggest] > 0.5
    assert list(vgg.ready_fraction) == sorted(vgg.ready_fraction)
    assert vgg.ready_fraction[-1] == pytest.approx(1.0)


def test_native_input_sizes_and_unknown_models():
    inception = torchvision_profile("inception_v3")  # 299 px, no auxiliary head
    assert inception.forward_flops > 1.5 * torchvision_profile("googlenet").forward_flops
    with pytest.raises(ConfigError, match="did you mean 'resnet50'"):
        torchvision_profile("resnet5O")


def test_measured_readiness_carries_over_to_another_layout():
    # measured: one bucket of 100 ready at 0.4, one of 300 at 1.0
    assert regrid_ready_fraction([100, 300], [0.4, 1.0], [50, 50, 300]) == (0.4, 0.4, 1.0)


def test_links_by_name_or_mapping_and_their_errors():
    assert parse_link("IB_HDR", "--network", NETWORK_LINKS) is NETWORK_LINKS["ib_hdr"]
    custom = parse_link({"bandwidth_gbps": 80, "latency_us": 4}, "--network", NETWORK_LINKS)
    assert custom == Link("custom", 10.0, 4.0)
    with pytest.raises(ConfigError) as err:
        parse_link({"bandwidth_gbps": -1, "latncy_us": 2}, "--intra", INTRA_LINKS)
    assert "--intra.bandwidth_gbps: -1" in str(err.value) and "'latncy_us'" in str(err.value)


def test_bad_inputs_name_their_flags(resnet50):
    with pytest.raises(ConfigError) as err:
        project_scaling(work(resnet50, step_s=-1, batch=0), topo(gpus=0), [2])
    message = str(err.value)
    for flag in ("--step-time-ms", "--batch-size", "--gpus-per-node"):
        assert flag in message
    with pytest.raises(ConfigError, match="--nodes"):
        project_scaling(work(resnet50), topo(), [0, 2])


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "raysim.cli", "project", *args],
                          capture_output=True, text=True, cwd=ROOT)  # fmt: skip


def test_project_a_model_without_a_run(tmp_path, resnet50):
    out = tmp_path / "p.json"
    done = run_cli("--model", "resnet50", "--batch-size", "64", "--step-time-ms", "180",
                   "--gpus-per-node", "8", "--intra", "nvlink", "--network", "ib_hdr",
                   "--nodes", "1,2,4", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())
    assert [(r["nodes"], r["gpus"]) for r in rows] == [(1, 8), (2, 16), (4, 32)]
    for row in rows:
        linear = row["gpus"] * 64 / 0.180
        assert row["efficiency"] == pytest.approx(row["samples_per_s"] / linear)
        assert row["step_s_overlap"] >= 0.180 and row["comm_s"] > 0
    assert "given: --step-time-ms" in done.stdout and "FLOPs" in done.stdout
    overhead_ms = TORCH_DDP_OVERHEAD_S_PER_GB * sum(resnet50.buckets_bytes) / 1e9 * 1e3
    said = (f"backward runs 1/(1 + {CONTENTION[RDMA]:g}) as fast while an all-reduce runs "
            f"beside it between machines (rdma), 1/(1 + {CONTENTION[RDMA]:g}) inside one; DDP's "
            f"own overhead {overhead_ms:.1f} ms per step")  # fmt: skip
    assert said in done.stdout


@pytest.mark.parametrize(
    ("args", "names"),
    [(["--model", "resnet50", "--batch-size", "8"], "--step-time-ms"),
     (["--model", "resnet50", "--batch-size", "8", "--step-time-ms", "-3"], "--step-time-ms"),
     (["--model", "nosuchnet", "--batch-size", "8", "--step-time-ms", "3"], "--model"),
     (["--model", "resnet50", "--batch-size", "8", "--step-time-ms", "3", "--intra", "nvlnk"],
      "--intra"),
     (["--model", "resnet50", "--batch-size", "8", "--step-time-ms", "3", "--gpus-per-node",
       "-2"], "--gpus-per-node")],
)  # fmt: skip
def test_bad_project_flags_are_one_clear_error(args, names):
    done = run_cli(*args)
    assert done.returncode == 2
    assert names in done.stderr and "Traceback" not in done.stderr


def test_a_bad_target_is_one_clear_error_before_anything_runs(tmp_path):
    done = subprocess.run([sys.executable, "-m", "raysim.cli", "compare", str(tmp_path),
                           "--target", "gpus_per_nod=8,network=100gbe"],
                          capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--target: unknown key 'gpus_per_nod'; did you mean 'gpus_per_node'?" in done.stderr


def test_compute_beside_a_busy_link_runs_slower_by_the_contention():
    # 1 s of work from t=0; the link busy over [0.2, 0.6]: 0.2 s free, 0.4 s at half speed
    # (contention 1.0) does 0.2, the last 0.6 s free: done at 1.2.
    assert compute_done_at(1.0, 0.0, [(0.2, 0.6)], 1.0) == pytest.approx(1.2)
    assert compute_done_at(1.0, 0.0, [(0.2, 0.6)], 0.0) == pytest.approx(1.0)
    assert compute_done_at(0.1, 0.0, [(0.2, 0.6)], 1.0) == pytest.approx(0.1)  # done before
    assert compute_done_at(0.3, 0.0, [(0.2, 0.6)], 1.0) == pytest.approx(0.4)  # inside it


def test_contention_delays_backward_and_the_buckets_behind_it():
    # Compute 0.9 s, backward its last 0.6 s; bucket 1 ready half-way (t=0.6), 0.2 s on the
    # link: backward's last 0.3 s runs 0.2 s at half speed (0.1 done), then 0.2 s: ends at
    # 1.0; bucket 2 (ready at the end) 1.0-1.2. Without contention: 0.9, then 1.1.
    ready = [0.5, 1.0]
    assert overlapped_step_seconds(0.9, [0.2, 0.2], 2 / 3, ready, 1.0) == pytest.approx(1.2)
    assert overlapped_step_seconds(0.9, [0.2, 0.2], 2 / 3, ready, 0.0) == pytest.approx(1.1)
    # A link slow enough that backward never waits on it is unaffected at its end.
    assert overlapped_step_seconds(0.9, [0.0, 0.0], 2 / 3, ready, 1.0) == pytest.approx(0.9)


def test_more_contention_never_projects_a_faster_step(resnet50):
    steps = [project_step(work(resnet50, 0.2), topo(4, network="25gbe"), c).step_s_overlap
             for c in (0.0, 0.25, 0.5, 1.0)]  # fmt: skip
    assert steps == sorted(steps) and steps[-1] > steps[0]
    alone = project_step(work(resnet50, 0.2), topo(nodes=1, gpus=1), 1.0)
    assert alone.efficiency == 1.0


# ResNet18 (10 classes) in DDP's default buckets: raysim.network.bucket_sizes.
RESNET18_BUCKETS = [9_461_800, 26_494_976, 8_769_792]


def test_ring_comm_time_grows_with_nodes_and_matches_the_buckets():
    rows = project(0.1, RESNET18_BUCKETS, 8, PRESETS["10gbe"])
    assert [r.nodes for r in rows] == list(DEFAULT_NODES)
    comm = [r.comm_s for r in rows]
    assert comm[0] == 0 and all(a < b for a, b in zip(comm, comm[1:], strict=False))
    spec = PRESETS["10gbe"]
    expected = sum(allreduce_seconds(b, 4, spec) for b in RESNET18_BUCKETS)
    assert math.isclose(rows[2].comm_s, expected)
    assert rows[2].global_batch == 32


@pytest.mark.parametrize("network", ["1gbe", "10gbe", "ib_hdr", "nvlink"])
@pytest.mark.parametrize("compute_s", [0.005, 0.1, 2.0])
def test_overlap_is_between_compute_alone_and_no_overlap(network, compute_s):
    for row in project(compute_s, RESNET18_BUCKETS, 8, PRESETS[network]):
        assert row.compute_s <= row.step_s_overlap <= row.step_s_no_overlap + 1e-12
        assert row.efficiency_no_overlap <= row.efficiency <= 1.0 + 1e-12
        assert row.step_s_overlap - row.compute_s >= 0


def test_one_node_and_loopback_scale_perfectly():
    rows = project(0.1, RESNET18_BUCKETS, 8, PRESETS["1gbe"], nodes=[1, 2])
    assert rows[0].efficiency == rows[0].efficiency_no_overlap == 1.0
    assert rows[0].samples_per_s == pytest.approx(80.0)
    assert rows[1].efficiency < 1.0
    for row in project(0.1, RESNET18_BUCKETS, 8, PRESETS["loopback"]):
        assert row.comm_s == 0 and row.efficiency == pytest.approx(1.0)
        assert row.samples_per_s == pytest.approx(row.nodes * 80.0)


def test_overlap_hides_early_buckets_behind_backward():
    # Two equal buckets; backward 0.6 s, the first ready half-way, comm 0.2 s each.
    ready = bytes_ready_fraction([100, 100])
    assert ready == (0.5, 1.0)
    assert math.isclose(overlapped_step_seconds(0.9, [0.2, 0.2], 2 / 3, ready), 1.1)
    # A slow link queues them: first ready at 0.6, then 0.5 + 0.5 back to back (not 0.9 + 1.0).
    assert math.isclose(overlapped_step_seconds(0.9, [0.5, 0.5], 2 / 3, ready), 1.6)


def test_compression_and_tree_change_the_comm():
    plain = project(0.1, RESNET18_BUCKETS, 8, PRESETS["10gbe"], nodes=[8])[0]
    fp16 = project(0.1, RESNET18_BUCKETS, 8, PRESETS["10gbe"], nodes=[8], compression="fp16")[0]
    assert fp16.comm_s < plain.comm_s
    tree = NetworkSpec("tree", 10.0, 20.0, "tree")
    assert project(0.1, RESNET18_BUCKETS, 8, tree, nodes=[8])[0].comm_s > plain.comm_s


def test_bad_inputs_are_reported_together():
    with pytest.raises(ConfigError) as err:
        project(0, [1], 0, PRESETS["10gbe"], nodes=[0], backward_share=1.5)
    message = str(err.value)
    for key in ("compute_s", "batch_per_node", "nodes", "backward_share"):
        assert key in message


def test_table_shows_the_numbers():
    rows = project(0.1, RESNET18_BUCKETS, 8, PRESETS["10gbe"], nodes=[1, 64])
    table = format_table(rows, title="ResNet18 on 10gbe")
    lines = table.splitlines()
    assert lines[0] == "ResNet18 on 10gbe"
    assert "nodes" in lines[1] and "efficiency" in lines[1]
    assert len(lines) == 5
    last = rows[1]
    for number in (
        "64",
        "512",
        f"{last.comm_s * 1e3:.1f}",
        f"{last.step_s_overlap * 1e3:.1f}",
        f"{last.samples_per_s:.1f}",
        f"{last.efficiency:.1%}",
    ):
        assert number in lines[4]
    assert "100.0%" in lines[3]
