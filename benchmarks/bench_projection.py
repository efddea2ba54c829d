"""Check `raysim project`'s cluster model against published multi-machine measurements.

    python benchmarks/bench_projection.py [--out benchmarks/results/projection_validation.json]

Each point is a published data-parallel training measurement that states the model,
batch per GPU, GPUs per machine and interconnect, with a one-GPU step or throughput
beside the scaled ones (sources in POINTS). The projection gets only what a user would
give it: the model (buckets and FLOP-based readiness from raysim.projection.model_profile),
the batch, the one-GPU step and the links' presets (raysim.projection.links, calibrated from
nccl-tests, not from these points). Two constants are fitted here, each on one point
(`calibration`): how much an all-reduce beside backward slows it (on Horovod's ResNet-101
over 25 GbE, whose all-reduces an unslowed backward would hide), then PyTorch DDP's
overhead per GB of gradients (on PyTorch's ResNet-50 in one DGX-1); every other point is
held out.
Pure computation: no Ray, no training; a few seconds.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from common import parse, provenance
from formatting import Renderer, table

from raysim.projection.collectives import Topology
from raysim.projection.links import INTRA_LINKS, NETWORK_LINKS
from raysim.projection.model_profile import ModelProfile, profile_model, torchvision_profile
from raysim.projection.step_model import (
    OVERLAP_CONTENTION,
    TORCH_DDP_OVERHEAD_S_PER_GB,
    Workload,
    project_step,
)

DLPERF = "Oneflow-Inc/DLPerf NVIDIADeepLearningExamples/PyTorch/{}/README.md"
DLPERF_CLUSTER = (
    "8x V100-SXM2-16GB per machine, NVLink, one InfiniBand EDR 100 Gb/s NIC (DLPerf "
    "reports/dlperf_benchmark_test_report_v1.md)"
)
TORCH_DDP_BENCH = "pytorch/pytorch benchmarks/distributed/ddp/README.md (PyTorch 1.4, NCCL)"
HOROVOD = "horovod/horovod README (2017): TensorFlow + Horovod, 4 Pascal GPUs per server"


@dataclass(frozen=True)
class Published:
    key: str
    model: str
    framework: str
    """torch_ddp (DDP's 25 MB buckets, overlapped, with DDP's overhead), apex_one_bucket
    (apex DDP, message_size=250M elements: one bucket after backward), horovod."""
    batch: int
    gpus_per_node: int
    intra: str
    network: str
    nics_per_node: int
    one_gpu_step_s: float
    steps_s: dict[int, float]
    """Machines -> published step time (or batch / per-GPU throughput)."""
    setting: str
    source: str


def from_throughput(batch: int, one_gpu: float, scaled: dict[int, tuple[int, float]]):
    """(one-GPU step, {machines: step}) from images/s: step = gpus × batch / throughput."""
    return batch / one_gpu, {n: gpus * batch / rate for n, (gpus, rate) in scaled.items()}


def _dlperf(key, model, framework, batch, one, scaled, setting, readme):
    one_step, steps = from_throughput(batch, one, scaled)
    return Published(key, model, framework, batch, 8, "nvlink2", "ib_edr", 1, one_step, steps,
                     setting + "; " + DLPERF_CLUSTER, DLPERF.format(readme))  # fmt: skip


def _horovod(key, model, one, sixteen):
    one_step, steps = from_throughput(64, one, {4: (16, sixteen)})
    return Published(key, model, "horovod", 64, 4, "pcie3", "25gbe", 1, one_step, steps,
                     "FP32, batch 64, 4 servers x 4 Pascal GPUs (intra-node link n.s.: PCIe "
                     "assumed), 25 Gb/s Ethernet over TCP", HOROVOD)  # fmt: skip


POINTS = [
    Published("torch_ddp_resnet50", "resnet50", "torch_ddp", 32, 8, "nvlink2", "ib_edr", 4,
              0.097, {1: 0.104, 2: 0.104},
              "FP32 assumed, batch 32, DGX-1 (8x V100, NVLink), 4x 100 Gb/s InfiniBand per "
              "machine; p50 step, 1 GPU without DDP", TORCH_DDP_BENCH),
    Published("torch_ddp_resnet101", "resnet101", "torch_ddp", 32, 8, "nvlink2", "ib_edr", 4,
              0.162, {1: 0.179, 2: 0.179}, "as torch_ddp_resnet50", TORCH_DDP_BENCH),
    Published("torch_ddp_resnext101", "resnext101_32x8d", "torch_ddp", 32, 8, "nvlink2",
              "ib_edr", 4, 0.415, {1: 0.447, 2: 0.450}, "as torch_ddp_resnet50",
              TORCH_DDP_BENCH),
    _dlperf("dlperf_resnet50", "resnet50", "torch_ddp", 128, 367.29,
            {1: (8, 2887.65), 2: (16, 5716.79), 4: (32, 10917.09)},
            "ResNet-50 v1.5 FP32, batch 128, NGC PyTorch 20.03, median of 5", "resnet50v1.5"),
    _dlperf("dlperf_bert_base", "bert_base", "apex_one_bucket", 32, 119.6,
            {1: (8, 921.32), 2: (16, 1499.4), 4: (32, 2885.81)},
            "BERT-base pretraining FP32, batch 32, seq 128, NGC PyTorch, apex DDP "
            "message_size=250M elements", "BERT"),
    _horovod("horovod_tcp_inception_v3", "inception_v3", 134.4, 1990.7),
    _horovod("horovod_tcp_resnet101", "resnet101", 119.4, 1685.1),
    _horovod("horovod_tcp_vgg16", "vgg16", 130.9, 1308.7),
]  # fmt: skip
CONTENTION_CALIBRATION = ("horovod_tcp_resnet101", 4)
"""The (point, machines) the contention is fitted on (no DDP overhead there: Horovod)."""
DDP_CALIBRATION = ("torch_ddp_resnet50", 1)
"""The (point, machines) the DDP overhead constant is fitted on, given the contention."""


class BertBase(torch.nn.Module):
    """BERT-base as pretrained by NVIDIA's example: 12 layers, hidden 768, vocabulary
    30522, sequence 128, the masked-LM head on 20 positions tied to the embedding."""

    def __init__(self, vocab: int = 30522, hidden: int = 768, layers: int = 12):
        super().__init__()
        self.tokens = torch.nn.Embedding(vocab, hidden)
        self.positions = torch.nn.Embedding(512, hidden)
        self.segments = torch.nn.Embedding(2, hidden)
        self.norm = torch.nn.LayerNorm(hidden)
        layer = torch.nn.TransformerEncoderLayer(hidden, 12, 4 * hidden, activation="gelu",
                                                 batch_first=True)  # fmt: skip
        self.encoder = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.pooler = torch.nn.Linear(hidden, hidden)
        self.next_sentence = torch.nn.Linear(hidden, 2)
        self.lm_transform = torch.nn.Linear(hidden, hidden)
        self.lm_norm = torch.nn.LayerNorm(hidden)
        self.lm_bias = torch.nn.Parameter(torch.zeros(vocab))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        h = self.tokens(ids) + self.positions(positions) + self.segments(torch.zeros_like(ids))
        h = self.encoder(self.norm(h))
        pooled = self.next_sentence(torch.tanh(self.pooler(h[:, 0])))
        masked = self.lm_norm(torch.nn.functional.gelu(self.lm_transform(h[:, :20])))
        logits = masked @ self.tokens.weight.t() + self.lm_bias
        return logits.sum() + pooled.sum()


def profile(point: Published) -> ModelProfile:
    if point.model != "bert_base":
        return torchvision_profile(point.model)
    with torch.device("meta"):
        model, ids = BertBase(), torch.zeros(2, 128, dtype=torch.long)
    return profile_model(model, ids, "bert_base", bucket_cap_mb=1000)  # 250M fp32 elements


def workload(point: Published, prof: ModelProfile, overhead_per_gb: float) -> Workload:
    gradient_gb = sum(prof.buckets_bytes) / 1e9
    return Workload(
        step_s=point.one_gpu_step_s,
        batch_per_gpu=point.batch,
        buckets_bytes=prof.buckets_bytes,
        ready_fraction=prof.ready_fraction,
        backward_share=prof.backward_share,
        step_source="published one-GPU step",
        readiness_source="FLOPs",
        sync_overhead_s=overhead_per_gb * gradient_gb if point.framework == "torch_ddp" else 0.0,
    )


def topology(point: Published, machines: int) -> Topology:
    return Topology(machines, point.gpus_per_node, INTRA_LINKS[point.intra],
                    NETWORK_LINKS[point.network], point.nics_per_node)  # fmt: skip


def point_named(key: str) -> Published:
    return next(p for p in POINTS if p.key == key)


def fit_contention(profiles: dict[str, ModelProfile]) -> float:
    """The contention that projects the calibration point's published step (bisection:
    the step grows with the contention)."""
    key, machines = CONTENTION_CALIBRATION
    point = point_named(key)
    work, topo = workload(point, profiles[key], 0.0), topology(point, machines)
    low, high = 0.0, 5.0
    for _ in range(60):
        middle = (low + high) / 2
        if project_step(work, topo, middle).step_s_overlap < point.steps_s[machines]:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def fit_overhead(profiles: dict[str, ModelProfile], contention: float) -> float:
    key, machines = DDP_CALIBRATION
    point = point_named(key)
    without = project_step(
        workload(point, profiles[key], 0.0), topology(point, machines), contention
    )
    gradient_gb = sum(profiles[key].buckets_bytes) / 1e9
    return (point.steps_s[machines] - without.step_s_overlap) / gradient_gb


def validate(
    overhead_per_gb: float, contention: float, profiles: dict[str, ModelProfile]
) -> list[dict]:
    calibrations = {CONTENTION_CALIBRATION, DDP_CALIBRATION}
    rows = []
    for point in POINTS:
        for machines, published_step in point.steps_s.items():
            projected = project_step(
                workload(point, profiles[point.key], overhead_per_gb),
                topology(point, machines),
                contention,
            )
            published = point.one_gpu_step_s / published_step
            rows.append({
                "point": point.key, "machines": machines, "gpus": projected.gpus,
                "role": "calibration" if (point.key, machines) in calibrations else "held out",
                "setting": point.setting, "source": point.source,
                "published_step_ms": round(published_step * 1e3, 1),
                "projected_step_ms": round(projected.step_s_overlap * 1e3, 1),
                "published_efficiency": round(published, 4),
                "projected_efficiency": round(projected.efficiency, 4),
                "error_points": round((projected.efficiency - published) * 100, 1),
                "algorithm": projected.algorithm,
            })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/projection_validation.json")
    args = parse(parser)
    profiles = {point.key: profile(point) for point in POINTS}
    contention = fit_contention(profiles)
    fitted = fit_overhead(profiles, contention)
    rows = validate(TORCH_DDP_OVERHEAD_S_PER_GB, OVERLAP_CONTENTION, profiles)
    held_out = [abs(r["error_points"]) for r in rows if r["role"] == "held out"]
    result = {
        **provenance(args.allow_dirty),
        "overlap_contention": {"in_code": OVERLAP_CONTENTION,
                               "fitted_here": round(contention, 4)},
        "torch_ddp_overhead_s_per_gb": {"in_code": TORCH_DDP_OVERHEAD_S_PER_GB,
                                        "fitted_here": round(fitted, 5)},
        "held_out_mean_abs_error_points": round(sum(held_out) / len(held_out), 2),
        "held_out_max_abs_error_points": max(held_out),
        "points": rows,
    }  # fmt: skip
    for row in rows:
        print(f"{row['point']:28s} {row['machines']:2d} machines ({row['gpus']:2d} GPUs) "
              f"published {row['published_efficiency']:.1%} projected "
              f"{row['projected_efficiency']:.1%} error {row['error_points']:+.1f} "
              f"[{row['role']}]")  # fmt: skip
    print(f"fitted contention {contention:.4f} (in code {OVERLAP_CONTENTION}), DDP overhead "
          f"{fitted:.5f} s/GB (in code {TORCH_DDP_OVERHEAD_S_PER_GB})")  # fmt: skip
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {args.out}")


# --- BENCHMARKS.md's tables from this bench's results -------------------------


def projection(data: dict) -> str:
    rows = []
    for p in data["points"]:
        rows.append(
            [
                p["point"],
                f"{p['machines']} × {p['gpus'] // p['machines']}",
                p["setting"],
                f"{p['published_efficiency'] * 100:.1f}%",
                f"{p['projected_efficiency'] * 100:.1f}%",
                f"{p['error_points']:+.1f}",
                f"{p['published_step_ms']:.1f}",
                f"{p['projected_step_ms']:.1f}",
                p["role"],
            ]
        )
    header = [
        "point",
        "machines × GPUs",
        "setting",
        "published eff.",
        "projected eff.",
        "error (points)",
        "published step ms",
        "projected step ms",
        "role",
    ]
    sources = ", ".join(sorted({p["source"] for p in data["points"]}))
    held_out = (
        f"Held out: mean absolute error {data['held_out_mean_abs_error_points']} points, "
        f"largest {data['held_out_max_abs_error_points']}."
    )
    return table(header, rows) + f"\n\nSources: {sources}.\n\n" + held_out


TABLES: dict[str, tuple[str, Renderer]] = {
    "projection": ("projection_validation.json", projection),
}
"""BENCHMARKS.md block name: (result file, renderer); tables.py gathers them."""


if __name__ == "__main__":
    main()
