"""The FSDP projection (raysim.projection.fsdp_step): each unit gathered for forward and
backward and reduce-scattered, beside compute; its check against published FSDP points
(benchmarks/bench_projection_fsdp.py) recomputed equal to the kept result."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from raysim.errors import ConfigError
from raysim.projection.bands import FSDP_BAND, FSDP_CHECKED_GPUS
from raysim.projection.collectives import Topology, gather_seconds, ring_seconds
from raysim.projection.fsdp_step import (
    FsdpUnit,
    FsdpWorkload,
    compute_for_step,
    fsdp_step_seconds,
    project_fsdp_scaling,
    project_fsdp_step,
)
from raysim.projection.links import INTRA_LINKS, NETWORK_LINKS

ROOT = Path(__file__).resolve().parents[2]
KEPT = ROOT / "benchmarks/results/projection_fsdp_validation.json"


def topo(nodes=2, gpus=8, network="ib_hdr"):
    return Topology(nodes, gpus, INTRA_LINKS["nvlink"], NETWORK_LINKS[network])


def work(step_s=0.5, units=8, params=50_000_000):
    blocks = tuple(FsdpUnit(f"b{i}", params, 1 / units) for i in range(units))
    return FsdpWorkload(step_s, 4, (FsdpUnit("root", 0, 0.0, regather=False), *blocks),
                        2 / 3, "given", "test units")  # fmt: skip


def test_a_gather_is_half_a_ring_all_reduce_of_the_same_bytes():
    t = topo(4)
    big = 10**9  # bandwidth terms dominate the latencies
    assert gather_seconds(big, t) == pytest.approx(ring_seconds(big, t) / 2, rel=1e-3)
    assert gather_seconds(big, topo(1, 1)) == 0.0


def test_one_gpu_has_no_collectives_and_scales_perfectly():
    step = project_fsdp_step(work(), topo(1, 1))
    assert step.comm_s == 0 and step.efficiency == pytest.approx(1.0)


def test_the_step_lies_between_compute_and_every_collective_back_to_back():
    w, t = work(), topo(4)
    step = project_fsdp_step(w, t)
    assert w.step_s < step.step_s_overlap < w.step_s + step.comm_s
    # At least the first unit's gather and the last reduce-scatter cannot hide.
    first = gather_seconds(w.units[1].params * 4, t)
    assert step.step_s_overlap >= w.step_s + first


def test_comm_is_two_gathers_and_one_scatter_per_unit_less_the_roots_regather():
    w, t = work(), topo(4)
    per_unit = gather_seconds(50_000_000 * 4, t)
    root = gather_seconds(0, t)
    assert fsdp_step_seconds(w, t, 0.0)[1] == pytest.approx(8 * 3 * per_unit + 2 * root)


def test_a_slower_network_or_more_contention_never_projects_a_faster_step():
    w = work(step_s=0.05)
    fast = project_fsdp_step(w, topo(4, network="ib_ndr")).step_s_overlap
    slow = project_fsdp_step(w, topo(4, network="10gbe")).step_s_overlap
    assert slow > fast
    assert fsdp_step_seconds(w, topo(4), 1.0)[0] >= fsdp_step_seconds(w, topo(4), 0.0)[0]


def test_compute_for_step_inverts_the_projection():
    w, t = work(), topo(2)
    measured = project_fsdp_step(w, t, 0.3).step_s_overlap
    assert compute_for_step(w, t, measured, 0.3) == pytest.approx(w.step_s, rel=1e-6)
    with pytest.raises(ConfigError, match="shorter than the collectives"):
        compute_for_step(w, topo(8, network="1gbe"), 1e-4, 0.3)


def test_bad_workloads_and_node_counts_are_told():
    with pytest.raises(ConfigError, match="compute shares must add up to 1"):
        project_fsdp_step(replace(work(), units=(FsdpUnit("a", 1, 0.5),)), topo())
    with pytest.raises(ConfigError, match="--nodes"):
        project_fsdp_scaling(work(), topo(), [0])


def test_a_models_units_hold_its_parameters_and_its_flops():
    from raysim.projection.model_profile import fsdp_units, torchvision_model

    model, example = torchvision_model("resnet50")
    units = fsdp_units(model, example)
    assert sum(u.params for u in units) == sum(p.numel() for p in model.parameters())
    assert sum(u.compute_share for u in units) == pytest.approx(1.0)
    names = [u.name for u in units]
    assert names[0] == "root" and names[-1] == "fc" and not units[0].regather
    by_name = {u.name: u for u in units}
    assert by_name["layer3"].compute_share > by_name["fc"].compute_share * 50  # fc: few FLOPs


def test_project_fsdp_prints_the_fsdp_band_and_a_run_is_told_to_use_a_model():
    args = [sys.executable, "-m", "raysim.cli", "project", "--model", "resnet50",
            "--batch-size", "64", "--step-time-ms", "180", "--gpus-per-node", "8",
            "--network", "ib_hdr", "--nodes", f"2,{FSDP_CHECKED_GPUS // 8 * 2}",
            "--strategy", "fsdp"]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "under FSDP" in done.stdout and "(fsdp, up to 128 GPUs, 6 pts)" in done.stdout
    assert "not checked (more GPUs than any published point)" in done.stdout
    ran = subprocess.run([*args[:4], "runs/x", "--strategy", "fsdp"], capture_output=True,
                         text=True, cwd=ROOT)  # fmt: skip
    assert ran.returncode == 2 and "--strategy fsdp: projects a --model" in ran.stderr


def test_the_fsdp_check_is_as_kept_and_its_band_is_in_code(tmp_path):
    out = tmp_path / "f.json"
    command = [sys.executable, "benchmarks/bench_projection_fsdp.py", "--allow-dirty",
               "--out", str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    fresh, kept = json.loads(out.read_text()), json.loads(KEPT.read_text())
    assert fresh["points"] == kept["points"] and fresh["summary"] == kept["summary"]
    errors = [p["error_points"] for p in kept["points"]]
    assert (FSDP_BAND.low, FSDP_BAND.high, FSDP_BAND.points) == (min(errors), max(errors),
                                                                  len(errors))  # fmt: skip
    assert max(p["gpus"] for p in kept["points"]) == FSDP_CHECKED_GPUS
