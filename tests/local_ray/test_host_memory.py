"""Host memory: each node's proportional set size beside its RSS, and the check before Ray
starts that N nodes fit in what the host has available."""

import json
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from raysim.config import load_config
from raysim.console import summary_table
from raysim.plan import Hardware, PlanError, make_plan
from raysim.plan.host_costs import MEASURED, HostCosts
from raysim.plan.host_memory import host_memory_problem, nodes_that_fit, usable_before_ray_kills
from raysim.plan.start_timeout import RAY_DEFAULT_TIMEOUT_S, worker_start_timeout_s
from raysim.procfs import process_rss_bytes, pss_bytes
from raysim.report.summary import per_node_summary
from raysim.rundir import read_lines

MB, GB = 1e6, 1e9
ROOT = Path(__file__).resolve().parents[2]
KEPT = ROOT / "benchmarks" / "results" / "bench_scale.json"
COSTS = HostCosts(fixed_bytes=1_500_000_000, worker_pss_bytes=800_000_000,
                  worker_training_bytes=200_000_000, worker_group_per_node_s=4.0)  # fmt: skip


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
def test_a_real_run_reports_pss_below_rss_on_every_node(short_run, tmp_path):
    result = short_run
    ranks = [r for r in read_lines(result.run_dir / "metrics.jsonl") if r["kind"] == "rank"]
    assert len(ranks) == 2
    for rank in ranks:
        # a worker holds torch and ResNet18's training state (~180 MB) but shares the
        # libraries (~0.3-0.5 GB of RSS) with the other processes on the host
        assert 200 * MB < rank["pss_bytes"] < rank["rss_bytes"] < 4000 * MB
    for node in result.summary["nodes"]:
        assert node["memory_peak_bytes"] < node["peak_pss_bytes"] < node["peak_rss_bytes"]
    assert "peak PSS" in summary_table(result.summary, tmp_path)


def test_the_kept_costs_are_the_bench_scale_result():
    """raysim/plan/host_costs.py keeps what benchmarks/bench_scale.py measured last."""
    kept = json.loads(KEPT.read_text())
    assert asdict(MEASURED) == kept["constants"]
    assert kept["describe"] and not kept["describe"].endswith("-dirty")


def test_nodes_beyond_the_host_memory_are_refused_naming_how_many_fit():
    budget = 600_000_000  # per node: 0.6 GB outside training + 0.6 GB budget = 1.2 GB
    assert nodes_that_fit(13.5 * GB, budget, COSTS) == 10
    assert host_memory_problem(10, budget, 13.5 * GB, COSTS) is None
    problem = host_memory_problem(11, budget, 13.5 * GB, COSTS)
    assert problem.startswith("host memory: 11 nodes need about 14.7 GB")
    assert "1.20 GB a node with its 0.60 GB budget" in problem
    assert "at most 10 nodes fit; use fewer nodes or a smaller memory_fraction" in problem
    # without an enforced budget a node holds what the bench's used: 0.8 GB
    assert nodes_that_fit(13.5 * GB, None, COSTS) == 15
    assert nodes_that_fit(1 * GB, None, COSTS) == 0


def test_ray_kills_above_95_percent_of_the_host():
    assert usable_before_ray_kills(10 * GB, 24 * GB) == pytest.approx(8.8 * GB)
    assert usable_before_ray_kills(1 * GB, 24 * GB) == 0
    assert usable_before_ray_kills(None, 24 * GB) is None


def test_the_plan_refuses_before_ray_and_passes_a_fitting_run():
    cfg = load_config(num_nodes=8, device="cpu", memory_fraction=0.06, gpu_fraction=0.06)
    plan = make_plan(cfg, Hardware(num_cpus=2, memory_available_bytes=64 * 10**9))
    assert plan.num_workers == 8
    with pytest.raises(PlanError, match=r"host memory: 8 nodes .* at most \d nodes fit"):
        make_plan(cfg, Hardware(num_cpus=2, memory_available_bytes=4 * 10**9))
    make_plan(cfg, Hardware(num_cpus=2))  # not checked where the host is unknown
    remote = load_config(num_nodes=8, device="cpu", address="ray://elsewhere:10001")
    make_plan(remote, Hardware(num_cpus=16, memory_available_bytes=10**9))  # not this host


def test_the_command_line_refuses_more_nodes_than_host_memory_holds(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "raysim.cli", "run", "--config", "configs/distributed_config.yaml",
         "--device", "cpu", "--device-memory-gb", "400", "--run-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    # 4 nodes × 0.23 × 400 GiB: 99 GB each, more than this host has
    assert re.search(r"host memory: 4 nodes need about \d+\.\d GB", done.stderr)
    assert "at most 0 nodes fit" in done.stderr and "Traceback" not in done.stderr
    assert not any(tmp_path.iterdir()), "refused before anything is written or started"


def test_the_worker_group_timeout_grows_with_n_unless_the_user_set_it():
    assert worker_start_timeout_s(2, None, costs=COSTS) == RAY_DEFAULT_TIMEOUT_S
    assert worker_start_timeout_s(32, None, costs=COSTS) == pytest.approx(3 * 4.0 * 32)
    assert worker_start_timeout_s(32, 10.0, costs=COSTS) == 10.0
    # elastic: also how long a restart waits for a lost node, so Ray's default stays
    assert worker_start_timeout_s(32, None, elastic=True, costs=COSTS) == RAY_DEFAULT_TIMEOUT_S
    # never shorter than the measured start-up of any N
    for nodes in (1, 8, 16, 64, 128):
        start = nodes * COSTS.worker_group_per_node_s
        timeout = worker_start_timeout_s(nodes, None, costs=COSTS)
        assert timeout >= max(start, RAY_DEFAULT_TIMEOUT_S)
