"""The projection's check against published points (benchmarks/bench_projection.py): the
kept result recomputed, every error left out of its own fit, and the bands
`raysim project` prints equal to the kept result's."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from raysim.projection.bands import BANDS, Band, band_for, efficiency_range, regime
from raysim.projection.collectives import Topology
from raysim.projection.links import INTRA_LINKS, NETWORK_LINKS, RDMA, TCP
from raysim.projection.step_model import CONTENTION, TORCH_DDP_OVERHEAD_S_PER_GB

ROOT = Path(__file__).resolve().parents[2]
KEPT = ROOT / "benchmarks/results/projection_validation.json"


def kept() -> dict:
    return json.loads(KEPT.read_text())


def test_the_bands_in_code_are_the_kept_results():
    assert {name: (b.low, b.high, b.points, b.frameworks) for name, b in BANDS.items()} == {
        name: (b["low"], b["high"], b["points"], b["frameworks"])
        for name, b in kept()["bands"].items()
    }


def test_the_constants_in_code_are_the_fit_on_every_point():
    fitted = kept()["fitted_on_every_point"]
    assert CONTENTION[TCP] == pytest.approx(fitted["contention"]["tcp"], abs=1e-3)
    assert CONTENTION[RDMA] == pytest.approx(fitted["contention"]["rdma"], abs=1e-3)
    overhead = fitted["torch_ddp_overhead_s_per_gb"]
    assert abs(TORCH_DDP_OVERHEAD_S_PER_GB - overhead) < 1e-4


def test_the_kept_result_is_large_enough_and_names_every_point():
    data = kept()
    assert data["counts"]["points"] >= 25 and data["counts"]["multi_machine"] >= 15
    communication_bound = [p for p in data["points"] if p["published_efficiency"] < 0.85]
    assert len(communication_bound) >= 6
    for point in data["points"]:
        assert point["source"] and point["setting"], point["point"]
    assert all(reason for reason in data["excluded"].values())
    loso = data["leave_one_series_out"]
    assert loso["by_transport"]["mean_abs_error_points"] < loso["baseline"]["mean_abs_error_points"]


def test_the_kept_result_shows_series_of_one_cluster_that_need_disjoint_links():
    """README's reason no one model gets every point within 5: on DLPerf's cluster,
    TensorFlow's ResNet-50 and BERT need bandwidths that do not overlap, and MXNet's
    ResNet-50 AMP fits at none."""
    fits = kept()["link_fits_gbs"]
    tf_resnet, tf_bert = fits["dlperf_tf_resnet50"], fits["dlperf_tf_bert_base"]
    assert tf_resnet[1] < tf_bert[0]
    assert fits["dlperf_mxnet_resnet50_amp"] is None
    assert fits["dlperf_mxnet_resnet50"] is not None


def test_a_regime_is_its_transport_and_scale_and_nothing_beyond_what_was_checked():
    def topo(nodes, gpus, network):
        return Topology(nodes, gpus, INTRA_LINKS["nvlink"], NETWORK_LINKS[network])

    assert regime(1, 8, TCP) == "one machine, up to 16 GPUs"
    assert band_for(topo(4, 8, "ib_hdr"))[0] == "rdma, 17-128 GPUs"
    assert band_for(topo(4, 8, "25gbe"))[0] == "tcp, 17-128 GPUs"
    assert band_for(topo(128, 8, "ib_hdr")) == (None, None)  # 1024 GPUs: beyond every point
    assert efficiency_range(0.8, Band(-2.0, 3.0, 4)) == pytest.approx((0.77, 0.82))


def projected_row(network: str, gpus_per_node: int, nodes: str, machines: int) -> str:
    """`raysim project`'s row for `machines` machines (resnet50, batch 64, a 180 ms step)."""
    done = subprocess.run(
        [sys.executable, "-m", "raysim.cli", "project", "--model", "resnet50", "--batch-size",
         "64", "--step-time-ms", "180", "--gpus-per-node", str(gpus_per_node), "--network",
         network, "--nodes", nodes],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    first = [str(machines), str(machines * gpus_per_node)]
    return next(line for line in done.stdout.splitlines() if line.split()[:2] == first)


def test_project_prints_each_rows_band_and_says_where_nothing_was_checked():
    two = projected_row("ib_hdr", 8, "2,256", machines=2)
    assert "(rdma, up to 16 GPUs, 13 pts)" in two  # PyTorch's points: what raysim projects
    big = projected_row("ib_hdr", 8, "2,256", machines=256)
    assert "not checked (more GPUs than any published point)" in big


def test_a_regime_with_few_of_pytorchs_points_says_whose_points_its_band_is_from():
    row = projected_row("25gbe", 4, "4", machines=4)
    assert "(tcp, up to 16 GPUs, 4 pts of any framework)" in row


@pytest.mark.slow
def test_the_published_check_is_as_kept(tmp_path):
    """benchmarks/bench_projection.py recomputed gives the kept file's numbers, and README
    states its leave-one-series-out figures."""
    out = tmp_path / "v.json"
    command = [sys.executable, "benchmarks/bench_projection.py", "--allow-dirty", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    fresh, old = json.loads(out.read_text()), kept()
    for key in (
        "points",
        "bands",
        "leave_one_series_out",
        "fitted_on_every_point",
        "counts",
        "link_fits_gbs",
    ):
        assert fresh[key] == old[key], key
    readme = (ROOT / "README.md").read_text().replace("\n", " ")
    loso = fresh["leave_one_series_out"]["by_transport"]
    for figure in (f"mean error {loso['mean_abs_error_points']} points",
                   f"largest {loso['max_abs_error_points']}",
                   f"{fresh['counts']['points']} published points"):  # fmt: skip
        assert figure in readme, figure
