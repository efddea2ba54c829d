import math

import pytest

from raysim.config import PRESETS, ConfigError, NetworkSpec
from raysim.projection.comm_model import allreduce_seconds
from raysim.projection.flat import DEFAULT_NODES, project
from raysim.projection.step_model import bytes_ready_fraction, overlapped_step_seconds
from raysim.report.projection import format_table

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
