"""Host memory: each node's proportional set size beside its RSS, and the check before Ray
starts that N nodes fit in what the host has available."""

import pytest

import raysim
from raysim.console import summary_table
from raysim.procfs import process_rss_bytes, pss_bytes
from raysim.report.summary import per_node_summary
from raysim.rundir import read_lines

MB = 1e6


def test_pss_is_this_process_share_of_its_resident_memory():
    pss, rss = pss_bytes(), process_rss_bytes()
    assert pss is not None and 0 < pss <= rss
    assert pss_bytes(2**31) is None, "no such process"


def test_the_summary_keeps_each_node_peak_pss_and_none_where_unmeasured():
    ranks = [
        {"rank": 0, "node_id": "node-0", "peak_rss_bytes": 900, "pss_bytes": 500},
        {"rank": 0, "node_id": "node-0", "peak_rss_bytes": 950, "pss_bytes": 600},
        {"rank": 1, "node_id": "node-1", "peak_rss_bytes": 900, "pss_bytes": None},
    ]
    nodes = per_node_summary(ranks)
    assert [n["peak_pss_bytes"] for n in nodes] == [600, None]


@pytest.mark.slow
def test_a_real_run_reports_pss_below_rss_on_every_node(shared_ray, tiny_config, tmp_path):
    result = raysim.run(tiny_config(num_nodes=2, num_epochs=1, max_steps_per_epoch=3), out=None)
    ranks = [r for r in read_lines(result.run_dir / "metrics.jsonl") if r["kind"] == "rank"]
    assert len(ranks) == 2
    for rank in ranks:
        # a worker holds torch and ResNet18's training state (~180 MB) but shares the
        # libraries (~0.3-0.5 GB of RSS) with the other processes on the host
        assert 200 * MB < rank["pss_bytes"] < rank["rss_bytes"] < 4000 * MB
    for node in result.summary["nodes"]:
        assert node["memory_peak_bytes"] < node["peak_pss_bytes"] < node["peak_rss_bytes"]
    assert "peak PSS" in summary_table(result.summary, tmp_path)
