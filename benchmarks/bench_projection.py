"""Check `raysim project`'s cluster model against every published multi-machine measurement
found, each left out of the fit that projects it.

    python benchmarks/bench_projection.py [--out benchmarks/results/projection_validation.json]

Each point is a published data-parallel training measurement that states the model,
batch per GPU, GPUs per machine and interconnect, with a one-GPU step or throughput
beside the scaled ones (sources in POINTS; docs/projection_reference_points.md lists every
row found, and EXCLUDED says why a row is not here). The projection gets only what a user
would give it: the model (buckets and FLOP-based readiness from
raysim.projection.model_profile), the batch, the one-GPU step and the links' presets
(raysim.projection.links, from nccl-tests, not from these points).

Four constants are fitted (least squares on efficiency): the contention of an all-reduce
with backward over TCP and over RDMA, PyTorch DDP's overhead per GB of gradients, and the
spread of one GPU's compute that a synchronous step waits out on the slowest GPU.
Every error reported is leave-one-series-out: the constants are refitted without the
series (one model in one published table on one cluster) the point belongs to. Beside
the model, three variants show what each mechanism buys on points it was not tuned on:
`baseline` (no contention, no DDP overhead, no spread: nothing fitted), `one_contention`
(one contention for every transport, as before issue 32) and `no_straggler` (the model
without the slowest GPU). The fit on every point gives the
constants in code (raysim.projection.step_model) and the error bands `raysim project`
prints (raysim.projection.bands). `link_fits_gbs` asks, for each series on DLPerf's one
cluster, which achieved bandwidth of its network would put all of its multi-machine rows
within 5 points: series that need disjoint links are out of one model's reach at once.
Pure computation: no Ray, no training; two to three minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from common import parse, provenance
from formatting import Renderer

from raysim.projection.bands import OWN_POINTS, regime
from raysim.projection.collectives import Topology
from raysim.projection.links import INTRA_LINKS, NETWORK_LINKS, RDMA
from raysim.projection.model_profile import ModelProfile, profile_model, torchvision_model
from raysim.projection.step_model import (
    CONTENTION,
    STRAGGLER_SPREAD,
    TORCH_DDP_OVERHEAD_S_PER_GB,
    Workload,
    project_step,
)

DLPERF = "NVIDIADeepLearningExamples/{}/README.md"
DLPERF_TF = DLPERF.format("TensorFlow/Classification/ConvNets/resnet50v1.5")
DLPERF_CLUSTER = (
    "8x V100-SXM2-16GB per machine, NVLink, one InfiniBand EDR 100 Gb/s NIC (DLPerf "
    "reports/dlperf_benchmark_test_report_v1.md)"
)
SECOND_LOOK = (
    "found on issue 32's second look, after the contention by transport and DDP's overhead "
    "were set and before the slowest GPU was added (their errors decided it)"
)
DLPERF_HOROVOD = (
    "FP32, real ImageNet, median of 5-7 runs; found for issue 32 after the contention by "
    "transport and DDP's overhead were set and before the slowest GPU was added"
)
DLPERF_NEW = "in the table the set cites, left out of it until then; " + SECOND_LOOK
DLPERF_LATE = (
    "found for issue 32 on its third look (another DLPerf directory) after every mechanism, "
    "the spread of the slowest GPU included, was set: new to the model"
)
DLPERF_HEAD = (
    "read at Oneflow-Inc/DLPerf's newest commit (c89430b, 2022-01-21) on issue 32's fourth "
    "look, after every mechanism was set: new to the model"
)
DLPERF_CURRENT = (
    "the page's current table (c89430b), which replaced in September 2020 the run the set "
    "had held until issue 32's fourth look"
)
MXNET_RN50 = (
    "NVIDIA DeepLearningExamples MXNet (NGC 20.03: MXNet 1.6.0, Horovod 0.19.0, NCCL 2.5.6), "
    "DALI on the GPU, median of 7"
)
MXNET_RN50_PAGE = DLPERF.format("MxNet/Classification/RN50v1.5")
TORCH_DDP_BENCH = "pytorch/pytorch benchmarks/distributed/ddp/README.md (PyTorch 1.4, NCCL)"
HOROVOD = "horovod/horovod README (2017; table in the diff of PR #44): TensorFlow + Horovod"
HOROVOD_512 = (
    "horovod/horovod docs/benchmarks.rst and README ('512-GPU Benchmark'; the 128-GPU "
    "figures in the 2017 README)"
)
CSC = (
    "mvsjober/ml-benchmarks results.md (PyTorch 2.0.0, DDP, synthetic, 2023-09-16), "
    "benchmarks/pytorch_visionmodel_ddp.py; Puhti: docs.csc.fi systems-puhti"
)
RAYSGD = (
    "ray-project/ray python/ray/util/sgd/torch/examples/benchmarks/README.rst (RaySGD "
    "TorchTrainer wrapping PyTorch 1.4 DDP, 2020-03-04): one GPU from its single-node table"
)
APEX = "apex.amp O1 (fp32 weights, so fp32 gradients on the wire)"


@dataclass(frozen=True)
class Published:
    key: str
    """The series: one model in one published table on one cluster."""
    model: str
    framework: str
    """torch_ddp (DDP's 25 MB buckets, overlapped, with DDP's overhead), one_bucket (one
    all-reduce of every gradient after backward: apex DDP with message_size=250M elements,
    Megatron-LM's local DDP), horovod."""
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
    wire_bytes_per_param: int = 4
    """What each gradient element weighs on the wire: 4 (fp32; also the AMP rows here,
    whose frameworks all-reduce fp32 gradients), 2 (a framework that all-reduces fp16)."""
    part_of_one_machine: dict[int, float] = field(default_factory=dict)
    """GPUs -> published step on one machine using fewer than gpus_per_node of its GPUs
    (a table's rows on 2 or 4 of a machine's GPUs)."""


def from_throughput(batch: int, one_gpu: float, scaled: dict[int, tuple[int, float]]):
    """(one-GPU step, {machines: step}) from images/s: step = gpus × batch / throughput."""
    return batch / one_gpu, {n: gpus * batch / rate for n, (gpus, rate) in scaled.items()}


def part_steps(batch: int, rates: dict[int, float]) -> dict[int, float]:
    """{GPUs: step} of one machine's rows on some of its GPUs, from images/s."""
    return {gpus: gpus * batch / rate for gpus, rate in rates.items()}


def _dlperf(
    key, model, batch, one, scaled, setting, page, framework="torch_ddp", part=None, wire=4
):
    """A DLPerf table (`page`: its path in Oneflow-Inc/DLPerf): machines of 8 GPUs
    (`scaled`), and `part`, {GPUs: images/s} of its rows on 2 or 4 of one machine's GPUs;
    `wire`: bytes per gradient element on the wire."""
    one_step, steps = from_throughput(batch, one, scaled)
    return Published(key, model, framework, batch, 8, "nvlink2", "ib_edr", 1, one_step, steps,
                     setting + "; " + DLPERF_CLUSTER, "Oneflow-Inc/DLPerf " + page,
                     wire_bytes_per_param=wire,
                     part_of_one_machine=part_steps(batch, part or {}))  # fmt: skip


def _raysgd(key, precision, one, by_gpus):
    """RaySGD's ResNet-50 on AWS p3dn.24xlarge machines, {GPUs: images/s}: fewer than 8
    GPUs are part of one machine."""
    one_step, steps = from_throughput(128, one, {g // 8: (g, r) for g, r in by_gpus.items()
                                                 if g >= 8})  # fmt: skip
    part = part_steps(128, {g: rate for g, rate in by_gpus.items() if g < 8})
    return Published(key, "resnet50", "torch_ddp", 128, 8, "nvlink2", "100gbe", 1, one_step,
                     steps, f"ResNet-50 {precision}, batch 128, synthetic ImageNet; AWS "
                     "p3dn.24xlarge: 8x V100 with NVLink, 100 Gb/s Ethernet (NCCL's sockets: "
                     "no EFA plugin in the benchmark's setup); " + SECOND_LOOK, RAYSGD,
                     part_of_one_machine=part)  # fmt: skip


def _horovod(key, model, network, one, scaled, cluster):
    one_step, steps = from_throughput(64, one, scaled)
    return Published(key, model, "horovod", 64, 4, "pcie3", network, 1, one_step, steps,
                     "FP32, batch 64, TensorFlow + Horovod, Pascal GPUs (intra-node link n.s.: "
                     "PCIe assumed), " + cluster, HOROVOD)  # fmt: skip


def _horovod_scale(key, model, one, efficiencies):
    """Horovod's 512-GPU benchmark quotes efficiencies (against one GPU) at 32 and 128
    servers; the one-GPU throughput is the same README's 25 GbE table's."""
    one_step = 64 / one
    steps = {n: one_step / eff for n, eff in efficiencies.items()}
    return Published(key, model, "horovod", 64, 4, "pcie3", "roce25", 1, one_step, steps,
                     "FP32, batch 64 (the page's reproduction command), 4 Pascal GPUs per "
                     "server, 'RoCE-capable 25 Gbit/s network' (RDMA assumed); quoted "
                     "efficiency, rounded to the percent", HOROVOD_512)  # fmt: skip


TF_RN50 = (
    "NVIDIA DeepLearningExamples TensorFlow 1.15 (NGC 20.03: Horovod 0.19.0, NCCL 2.6.3), "
    "DALI, median of 5"
)
TF_BERT_TABLES = {
    # key suffix: (setting, batch, wire bytes, sentences/s on 1, 4, 8, 16, 32 GPUs)
    "": ("FP32", 32, 4, (107.33, 397.71, 790.03, 1404.04, 2727.9)),
    "_b48": ("FP32", 48, 4, (112.76, 430.43, 855.45, 1576.88, 3089.74)),
    "_fp16_b64": ("FP16", 64, 2, (183.25, 721.56, 1452.59, 2653.74, 5189.07)),
    "_fp16_b64_xla": ("FP16 with XLA", 64, 2, (422.53, 1552.11, 3112.73, 5050.86, 9409.2)),
    "_fp16_b96_xla": ("FP16 with XLA", 96, 2, (468.1, 1766.06, 3559.8, 5960.14, 11650.0)),
}
"""DLPerf's NGC TensorFlow BERT-base page (its five tables, c89430b)."""


def _tf_bert() -> list[Published]:
    """DLPerf's TensorFlow BERT-base tables: NVIDIA DeepLearningExamples (fed7ba9), TF 1.15 in
    NGC 20.03 with Horovod 0.19.0 and NCCL 2.6.3 under horovodrun. With --use_fp16 its
    optimization.py wraps the optimizer in hvd.DistributedOptimizer(compression=
    Compression.fp16): fp16 gradients on the wire; fp32 otherwise."""
    return [
        _dlperf("dlperf_tf_bert_base" + suffix, "bert_base", batch, one,
                {1: (8, eight), 2: (16, sixteen), 4: (32, thirty_two)},
                f"BERT-base pretraining {setting}, batch {batch}, seq 128, NVIDIA's TensorFlow "
                "BERT + Horovod, median of 5" + ("; fp16 gradients on the wire" if wire == 2
                                                  else "") + "; " + DLPERF_HEAD,
                DLPERF.format("TensorFlow/LanguageModeling/BERT"), "horovod", part={4: four},
                wire=wire)
        for suffix, (setting, batch, wire, (one, four, eight, sixteen, thirty_two))
        in TF_BERT_TABLES.items()
    ]  # fmt: skip


MXNET_BERT_TABLES = {
    # key suffix: (precision, batch, {GPUs: sentences/s} for 1, 2, 4, 8, 16, 32 GPUs)
    "": ("FP32", 32, (150.11, 270.28, 538.5, 1058.6, 1845.65, 3671.45)),
    "_b48": ("FP32", 48, (153.75, 287.77, 572.64, 1127.41, 2067.72, 4105.29)),
    "_b64": ("FP32", 64, (156.76, 295.42, 587.71, 1153.08, 2172.62, 4340.89)),
    "_fp16_b64": ("FP16", 64, (473.76, 811.6, 1623.56, 3107.1, 5723.26, 11269.14)),
    "_fp16_b96": ("FP16", 96, (516.54, 925.52, 1837.08, 3579.0, 6684.57, 13376.76)),
    "_fp16_b128": ("FP16", 128, (544.31, 1000.15, 1970.59, 3825.21, 7327.5, 14822.31)),
}
"""DLPerf's MXNet BERT-base page (its six tables, c89430b)."""


def _mxnet_bert() -> list[Published]:
    """DLPerf's MXNet BERT-base tables: gluon-nlp (7b7bf60) with MXNet 1.6.0, Horovod 0.19.5
    and NCCL 2.7.3 under mpirun. FP16 casts the model (run_pretraining.py's get_model:
    model.cast(args.dtype), read at gluon-nlp 0c99603, not at 7b7bf60; multi_precision
    keeps fp32 weights in the optimizer), so its gradients go on the wire in fp16."""
    points = []
    for suffix, table in MXNET_BERT_TABLES.items():
        precision, batch, (one, two, four, eight, sixteen, thirty_two) = table
        fp16 = precision == "FP16"
        current = "; " + (DLPERF_HEAD if fp16 or suffix else DLPERF_CURRENT)
        points.append(_dlperf(
            "dlperf_mxnet_bert_base" + suffix, "bert_base", batch, one,
            {1: (8, eight), 2: (16, sixteen), 4: (32, thirty_two)},
            f"BERT-base pretraining {precision}, batch {batch}, seq 128, MXNet gluon-nlp + "
            "Horovod 0.19.5 (NCCL 2.7.3), no gradient clipping, median of 7"
            + ("; fp16 gradients on the wire" if fp16 else "") + current,
            "MxNet/BERT/README.md", "horovod", part={2: two, 4: four}, wire=2 if fp16 else 4,
        ))  # fmt: skip
    return points


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
    _dlperf("dlperf_resnet50", "resnet50", 128, 367.29,
            {1: (8, 2887.65), 2: (16, 5716.79), 4: (32, 10917.09)},
            "ResNet-50 v1.5 FP32, batch 128, NGC PyTorch 20.03, median of 5",
            DLPERF.format("PyTorch/resnet50v1.5"), part={4: 1449.48}),
    _dlperf("dlperf_resnet50_amp", "resnet50", 256, 802.9,
            {1: (8, 6154.66), 2: (16, 11991.94), 4: (32, 22551.16)},
            "ResNet-50 v1.5 AMP (fp32 weights, so fp32 gradients on the wire), batch 256, "
            "NGC PyTorch 20.03, median of 5", DLPERF.format("PyTorch/resnet50v1.5"),
            part={4: 3137.44}),
    _dlperf("dlperf_bert_base", "bert_base", 32, 119.6,
            {1: (8, 921.32), 2: (16, 1499.4), 4: (32, 2885.81)},
            "BERT-base pretraining FP32, batch 32, seq 128, NGC PyTorch, apex DDP "
            "message_size=250M elements", DLPERF.format("PyTorch/BERT"), "one_bucket",
            part={4: 457.72}),
    _dlperf("dlperf_bert_base_b48", "bert_base", 48, 121.94,
            {1: (8, 928.01), 2: (16, 1584.32), 4: (32, 3039.3)},
            "as dlperf_bert_base, batch 48 (the same page's second FP32 table); "
            + DLPERF_NEW, DLPERF.format("PyTorch/BERT"), "one_bucket", part={4: 464.66}),
    _dlperf("dlperf_bert_base_amp", "bert_base", 96, 462.35,
            {1: (8, 3287.12), 2: (16, 5426.07), 4: (32, 10349.12)},
            "BERT-base pretraining AMP, batch 96, seq 128; fp32 gradients on the wire (NVIDIA's "
            "BERT all-reduces its fp32 master gradients unless --allreduce_post_accumulation_fp16 "
            "is given; DLPerf's flags n.s.)", DLPERF.format("PyTorch/BERT"), "one_bucket",
            part={4: 1727.93}),
    _dlperf("dlperf_bert_base_amp_b64", "bert_base", 64, 444.51,
            {1: (8, 3251.7), 2: (16, 4936.92), 4: (32, 9331.72)},
            "as dlperf_bert_base_amp, batch 64 (the same page's second FP16 table); "
            + DLPERF_NEW, DLPERF.format("PyTorch/BERT"), "one_bucket", part={4: 1671.66}),
    _dlperf("dlperf_resnet50_amp_static", "resnet50", 256, 827.86, {1: (8, 6446.74)},
            "as dlperf_resnet50_amp, static loss scale (the page's one-machine table); "
            + DLPERF_HEAD, DLPERF.format("PyTorch/resnet50v1.5"), part={4: 3253.68}),
    _dlperf("dlperf_bert_base_amp_static", "bert_base", 96, 465.23, {1: (8, 3378.99)},
            "as dlperf_bert_base_amp, static loss scale (the page's one-machine table); "
            + DLPERF_HEAD, DLPERF.format("PyTorch/BERT"), "one_bucket", part={4: 1705.8}),
    _dlperf("dlperf_bert_base_amp_b64_static", "bert_base", 64, 426.53, {1: (8, 3130.63)},
            "as dlperf_bert_base_amp_b64, static loss scale (the page's one-machine table); "
            + DLPERF_HEAD, DLPERF.format("PyTorch/BERT"), "one_bucket", part={4: 1567.68}),
    _dlperf("dlperf_examples_resnet50_dali", "resnet50", 128, 350.66,
            {1: (8, 2707.42), 2: (16, 5193.09), 4: (32, 10032.72)},
            "ResNet-50 v1.5 FP32, batch 128, pytorch/examples imagenet (DDP, one process per "
            "GPU), PyTorch 1.6, NCCL 2.7.3, DALI (CPU) with 48 workers; " + DLPERF_LATE,
            "PyTorch/resnet50v1.5/README.md", part={4: 1306.49}),
    _dlperf("dlperf_examples_resnet50_loader", "resnet50", 128, 348.62,
            {1: (8, 2632.93), 2: (16, 5115.4), 4: (32, 10021.29)},
            "as dlperf_examples_resnet50_dali, torch's DataLoader with 48 workers; "
            + DLPERF_LATE, "PyTorch/resnet50v1.5/README.md", part={4: 1226.38}),
    Published("dlperf_megatron_gpt", "gpt_1536x16", "one_bucket", 2, 8, "nvlink2", "ib_edr", 1,
              0.46412, {1: 0.48096, 2: 0.66446, 4: 0.68351},
              "GPT (hidden 1536, 16 layers, sequence 2048, ~0.53 B parameters), FP16, micro-batch "
              "2, activation checkpointing, Megatron-LM (NGC PyTorch 20.12, NCCL 2.8.3) with "
              "tensor and pipeline parallel 1: data parallel alone, its default local DDP "
              "all-reducing the fp16 gradients in one buffer after backward; NCCL over the "
              "InfiniBand verbs (the page installs MLNX_OFED in the container); step times; "
              + DLPERF_LATE + "; " + DLPERF_CLUSTER,
              "Oneflow-Inc/DLPerf Megatron-LM/README.md, reports/GPT/"
              "dlperf_gpt_test_report_210512.md", wire_bytes_per_param=2),
    *_mxnet_bert(),
    _dlperf("dlperf_tf_resnet50", "resnet50", 128, 362.44,
            {1: (8, 2721.98), 2: (16, 5099.42), 4: (32, 9514.64)},
            "ResNet-50 v1.5, batch 128, TensorFlow 1.15 + Horovod 0.19.0, NCCL 2.6.3 (NGC "
            "20.03), DALI; " + DLPERF_HOROVOD,
            DLPERF_TF, "horovod", part={4: 1391.28}),
    _dlperf("dlperf_tf_resnet50_amp", "resnet50", 224, 945.18,
            {1: (8, 6903.42), 2: (16, 12021.09), 4: (32, 24734.22)},
            "ResNet-50 v1.5, TF-AMP (fp32 variables; Horovod's DistributedOptimizer without "
            "compression, so fp32 gradients on the wire), batch 224, " + TF_RN50 + "; "
            + DLPERF_HEAD, DLPERF_TF, "horovod", part={4: 3546.02}),
    _dlperf("dlperf_tf_resnet50_amp_xla", "resnet50", 224, 1198.55,
            {1: (8, 8588.45), 2: (16, 14931.03), 4: (32, 29171.69)},
            "as dlperf_tf_resnet50_amp, with XLA; " + DLPERF_HEAD, DLPERF_TF, "horovod",
            part={4: 4360.83}),
    _dlperf("dlperf_tf_resnet50_amp_xla_synthetic", "resnet50", 224, 1236.9,
            {1: (8, 9265.83)},
            "as dlperf_tf_resnet50_amp_xla, synthetic data (one machine only); " + DLPERF_HEAD,
            DLPERF_TF, "horovod", part={4: 4610.43}),
    *_tf_bert(),
    _dlperf("dlperf_mxnet_resnet50", "resnet50", 128, 392.24,
            {1: (8, 3006.98), 2: (16, 5758.49), 4: (32, 11331.93)},
            "ResNet-50 v1.5 FP32, batch 128; " + MXNET_RN50 + "; " + DLPERF_CURRENT,
            MXNET_RN50_PAGE, "horovod", part={2: 764.6, 4: 1518.04}),
    _dlperf("dlperf_mxnet_resnet50_amp", "resnet50", 256, 1281.83,
            {1: (8, 9241.68), 2: (16, 13348.68), 4: (32, 27558.28)},
            "ResNet-50 v1.5, --dtype float16 --amp, batch 256: with --amp the network is not "
            "cast (models.py get_model), so fp32 weights and fp32 gradients on the wire; "
            + MXNET_RN50 + "; " + DLPERF_HEAD, MXNET_RN50_PAGE, "horovod", part={4: 4811.72}),
    _dlperf("dlperf_mxnet_resnet50_fp16", "resnet50", 256, 1393.87,
            {1: (8, 9621.31), 2: (16, 16219.03), 4: (32, 30713.68)},
            "ResNet-50 v1.5, --dtype float16 without --amp, batch 256: the network cast to "
            "float16 (models.py get_model), so fp16 gradients on the wire; " + MXNET_RN50 + "; "
            + DLPERF_HEAD, MXNET_RN50_PAGE, "horovod", part={4: 5158.71}, wire=2),
    Published("nvidia_tf_resnet50_dgx1", "resnet50", "horovod", 128, 8, "nvlink2", "ib_edr", 4,
              *from_throughput(128, 364.9, {1: (8, 2778.5)}),
              "ResNet-50 v1.5 FP32, TensorFlow + Horovod, NVIDIA's own DGX-1 (8x V100 16 GB, "
              "NVLink) results as DLPerf quotes them beside its batch-128 table (batch 128 "
              "assumed); " + SECOND_LOOK,
              "Oneflow-Inc/DLPerf " + DLPERF_TF + " (NVIDIA/"
              "DeepLearningExamples@709456c TensorFlow/Classification/RN50v1.5 README)",
              part_of_one_machine=part_steps(128, {4: 1419.4})),
    _horovod("horovod_tcp_inception_v3", "inception_v3", "25gbe", 134.4, {4: (16, 1990.7)},
             "4 servers x 4 GPUs, 25 Gb/s Ethernet over TCP"),
    _horovod("horovod_tcp_resnet101", "resnet101", "25gbe", 119.4, {4: (16, 1685.1)},
             "4 servers x 4 GPUs, 25 Gb/s Ethernet over TCP"),
    _horovod("horovod_tcp_vgg16", "vgg16", "25gbe", 130.9, {4: (16, 1308.7)},
             "4 servers x 4 GPUs, 25 Gb/s Ethernet over TCP"),
    _horovod("horovod_rdma_inception_v3", "inception_v3", "roce25", 134.4, {4: (16, 2022.6)},
             "4 servers x 4 GPUs, 25 Gb/s RoCE (RDMA)"),
    _horovod("horovod_rdma_resnet101", "resnet101", "roce25", 119.4, {4: (16, 1746.2)},
             "4 servers x 4 GPUs, 25 Gb/s RoCE (RDMA)"),
    _horovod("horovod_rdma_vgg16", "vgg16", "roce25", 130.9, {4: (16, 1787.4)},
             "4 servers x 4 GPUs, 25 Gb/s RoCE (RDMA)"),
    _horovod("horovod_40gbe_inception_v3", "inception_v3", "40gbe", 148.8, {16: (64, 7932.1)},
             "16 servers x 4 GPUs, 40 Gb/s Ethernet over TCP"),
    _horovod("horovod_40gbe_resnet101", "resnet101", "40gbe", 136.0, {16: (64, 7741.6)},
             "16 servers x 4 GPUs, 40 Gb/s Ethernet over TCP"),
    _horovod("horovod_40gbe_vgg16", "vgg16", "40gbe", 149.6, {16: (64, 6084.2)},
             "16 servers x 4 GPUs, 40 Gb/s Ethernet over TCP"),
    _horovod_scale("horovod_512_inception_v3", "inception_v3", 134.4, {32: 0.90, 128: 0.90}),
    _horovod_scale("horovod_512_resnet101", "resnet101", 119.4, {32: 0.90, 128: 0.90}),
    _horovod_scale("horovod_512_vgg16", "vgg16", 130.9, {32: 0.79, 128: 0.68}),
    Published("csc_puhti_resnet50", "resnet50", "torch_ddp", 32, 4, "nvlink2", "ib_edr", 2,
              *from_throughput(32, 331.39, {1: (4, 1245.59), 2: (8, 2473.86)}),
              "ResNet-50 FP32 (torchvision, SGD), batch 32 (the script's default), synthetic "
              "data; Puhti: 4x V100 NVLink per node, dual-rail HDR100 InfiniBand", CSC),
    _raysgd("raysgd_one_machine_resnet50", "FP32", 356.0, {2: 701.0, 4: 1401.0, 8: 2795.0}),
    _raysgd("raysgd_one_machine_resnet50_apex", APEX, 770.0,
            {2: 1346.0, 4: 2695.0, 8: 5862.0}),
    _raysgd("raysgd_resnet50_apex", APEX + "; one machine here trains 5 % faster than the "
            "single-node table's 8 GPUs (6172 against 5862 img/s)", 770.0,
            {8: 6172.0, 16: 10052.8, 32: 20319.5, 64: 38642.0}),
]  # fmt: skip

EXCLUDED = {
    "BERT-large, DGX A100, TF1 + Horovod (reference points row 9)": "gradient accumulation 32 "
    "on one node against 1 on 32 nodes: the gradient exchanged per sample differs 32-fold "
    "between the two, and no one-GPU figure is given",
    "ml-benchmarks Puhti, other dates (2022-05-18, 2023-05-08, 2023-09-28)": "repeats of the "
    "kept 2023-09-16 setting (within 3 %); counted once so one cluster is not weighted by "
    "repeats. The 2023-09-28 2-GPU row (79 %) drops below the same machine's 4 GPUs (94 %), "
    "which no communication model explains",
    "ml-benchmarks Mahti (4x A100 per node)": "the inter-node network is not stated in the "
    "pages read",
    "ml-benchmarks LUMI (MI250X, Slingshot)": "RCCL on AMD GPUs and Slingshot: no link preset "
    "measured",
    "ml-benchmarks DeepSpeed, Horovod and Lightning rows": "no one-GPU figure in the same "
    "framework (the 1-GPU rows are DDP's)",
    "BytePS performance page (V100, 20 Gb/s TCP)": "figures are charts, no numbers in text",
    "DLPerf TensorFlow ResNet-50 FP16, real data with XLA (one machine)": "input bound: "
    "without DALI its 8 GPUs train 6.4 x one GPU where the same page's synthetic data train "
    "7.49 x; with DALI it repeats the batch-224 XLA table (within 1 %); counted once",
    "DLPerf MXNet ResNet-50 v1b (gluon-cv, FP32 and FP16)": "input bound on one machine: "
    "FP16's 8 GPUs train 3.49 x one GPU and 1.25 x its own 4 GPUs, FP32's 8 GPUs 6.65 x "
    "(3.89 x on 4); its machines then scale near linearly (12.67 x on 32 GPUs), the input "
    "pipeline's limit and not the exchange's",
    "DLPerf MXNet BERT-base and ResNet-50, the runs of August 2020": "replaced on their pages "
    "in September 2020 (commits f8bb8bd and 7f84aa8: new scripts, Horovod 0.19.5 for BERT, "
    "batch 128 for ResNet-50) and in the summary report; the current tables are in",
    "RaySGD multi-node table, Ray (PyTorch) FP32 column": "its one machine trains 2962.7 "
    "img/s, 4 % above 8 x the one GPU (356) and 6 % above the single-node table's own 8 GPUs "
    "(2795): the two tables' runs differ, and efficiencies of 104 / 103 / 103 / 102 % are "
    "beyond any step built on that one GPU; the projection would miss them by -6.6, -11.3, "
    "-11.1 and -11.2 points (an ad hoc run of this bench with them in)",
    "DLPerf pytorch/examples ResNet-50 with 8 loader workers (DataLoader; DALI)": "input "
    "bound: with the DataLoader its 8 GPUs train no faster than its 4 (1070.37 against "
    "1079.19 img/s), with DALI 17 % slower than the same page's 48-worker run on 8 GPUs",
    "DLPerf summary report, PyTorch ResNet-50 column": "repeats the NGC 20.03 setting of "
    "dlperf_resnet50 within 7 % (a different run); counted once",
    "DLPerf summary report, OneFlow, PaddlePaddle and TensorFlow 2.3 columns": "frameworks "
    "whose gradient exchange the projection has no entry for (it knows PyTorch's DDP, one "
    "all-reduce after backward, and Horovod's)",
    "DLPerf DeepSpeed BERT-base (5 tables)": "three tables have rows above 100 % (33.15 x "
    "on 32 GPUs, 16.29 and 16.33 x on 16), and the FP16 batch-64 table keeps 98.9 % on two "
    "machines, where all-reducing its 220 MB of fp16 gradients after backward (DeepSpeed "
    "without ZeRO) at the bandwidth the same cluster's BERT rows show (~11 GB/s) would cost "
    "about a quarter of the step: its printed samples/s do not hold the exchange",
    "scale-ops (Baskerville) Lightning GPT-2 epoch times": "strong scaling over a fixed "
    "data set timed per epoch: the 85M model trains 2.5 x faster on 2 GPUs than on one, and "
    "the 708M one slower on 2 x 2 GPUs than on one GPU (the author: the shared NIC); the "
    "epoch times hold more than the steps",
    "RaySGD Horovod and Horovod + Apex columns": "no one-GPU figure in the same framework "
    "(the 1-GPU rows are DataParallel's and Ray's DDP)",
    "RaySGD single-node table, DataParallel columns": "torch.nn.DataParallel: one process "
    "driving every GPU of the machine, not data-parallel processes (what raysim projects)",
}
"""Published rows found but not validated on, each with why."""

FAMILY = {"torch_ddp": "pytorch", "one_bucket": "pytorch", "horovod": "horovod"}
"""Each framework's family: PyTorch's (what raysim runs) or Horovod's (TensorFlow, MXNet)."""

VARIANTS = ("by_transport", "one_contention", "no_straggler", "baseline")
"""The model (contention by transport), the model with one contention (as before issue
32), the model without the slowest GPU, and the model without its fitted mechanisms."""


@dataclass(frozen=True)
class Constants:
    contention_tcp: float
    contention_rdma: float
    ddp_overhead_s_per_gb: float
    straggler_spread: float


NOTHING = Constants(0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Row:
    point: Published
    machines: int
    profile: ModelProfile
    gpus_per_node: int
    """The point's machines' GPUs, or fewer on a row of part of one machine."""

    @property
    def published_step_s(self) -> float:
        if self.gpus_per_node < self.point.gpus_per_node:
            return self.point.part_of_one_machine[self.gpus_per_node]
        return self.point.steps_s[self.machines]

    @property
    def published_efficiency(self) -> float:
        return self.point.one_gpu_step_s / self.published_step_s


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


class GptDataParallel(torch.nn.Module):
    """DLPerf's Megatron-LM GPT for pure data parallelism: 16 pre-norm layers of hidden 1536
    and 16 heads, sequence 2048, vocabulary 51200, the output tied to the embedding (about
    0.53 B parameters)."""

    def __init__(self, vocab: int = 51200, hidden: int = 1536, layers: int = 16):
        super().__init__()
        self.tokens = torch.nn.Embedding(vocab, hidden)
        self.positions = torch.nn.Embedding(2048, hidden)
        layer = torch.nn.TransformerEncoderLayer(hidden, 16, 4 * hidden, activation="gelu",
                                                 batch_first=True, norm_first=True)  # fmt: skip
        self.layers = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = torch.nn.LayerNorm(hidden)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        h = self.norm(self.layers(self.tokens(ids) + self.positions(positions)))
        return (h @ self.tokens.weight.t()).sum()


TRANSFORMERS = {"bert_base": (BertBase, 128), "gpt_1536x16": (GptDataParallel, 2048)}
"""The transformers built here (no torchvision model): class and sequence length."""


def profile(point: Published) -> ModelProfile:
    """The model's buckets and readiness under the point's framework: one bucket of every
    gradient for one_bucket, DDP's default caps otherwise."""
    cap = math.inf if point.framework == "one_bucket" else None
    if point.model not in TRANSFORMERS:
        prof = profile_model(*torchvision_model(point.model), point.model, bucket_cap_mb=cap)
    else:
        build, sequence = TRANSFORMERS[point.model]
        with torch.device("meta"):
            model, ids = build(), torch.zeros(2, sequence, dtype=torch.long)
        prof = profile_model(model, ids, point.model, bucket_cap_mb=cap)
    scale = point.wire_bytes_per_param / 4
    return replace(prof, buckets_bytes=tuple(int(b * scale) for b in prof.buckets_bytes))


def workload(row: Row, constants: Constants) -> Workload:
    prof, point = row.profile, row.point
    gradient_gb = sum(prof.buckets_bytes) / 1e9
    ddp = point.framework == "torch_ddp"
    return Workload(
        step_s=point.one_gpu_step_s,
        batch_per_gpu=point.batch,
        buckets_bytes=prof.buckets_bytes,
        ready_fraction=prof.ready_fraction,
        backward_share=prof.backward_share,
        step_source="published one-GPU step",
        readiness_source="FLOPs",
        sync_overhead_s=constants.ddp_overhead_s_per_gb * gradient_gb if ddp else 0.0,
    )


def topology(row: Row) -> Topology:
    point = row.point
    return Topology(row.machines, row.gpus_per_node, INTRA_LINKS[point.intra],
                    NETWORK_LINKS[point.network], point.nics_per_node)  # fmt: skip


def projected_efficiency(row: Row, constants: Constants) -> float:
    topo = topology(row)
    rdma = row.machines == 1 or topo.network.transport == RDMA
    contention = constants.contention_rdma if rdma else constants.contention_tcp
    return project_step(workload(row, constants), topo, contention,
                        constants.straggler_spread).efficiency  # fmt: skip


def error_points(row: Row, constants: Constants) -> float:
    return (projected_efficiency(row, constants) - row.published_efficiency) * 100


def loss(rows: Sequence[Row], constants: Constants) -> float:
    return sum(error_points(row, constants) ** 2 for row in rows)


def golden(f: Callable[[float], float], low: float, high: float, steps: int = 28) -> float:
    """The minimum of a one-dimensional f on [low, high] (golden-section search: each step
    keeps one of the two inner points, so f is evaluated once per step)."""
    ratio = (5**0.5 - 1) / 2
    a, b = low, high
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(steps - 1):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = f(d)
    if fc <= fd:
        b = d
    else:
        a = c
    return (a + b) / 2


FIELDS = {
    "by_transport": (
        ("contention_tcp",),
        ("contention_rdma",),
        ("ddp_overhead_s_per_gb",),
        ("straggler_spread",),
    ),
    "one_contention": (
        ("contention_tcp", "contention_rdma"),
        ("ddp_overhead_s_per_gb",),
        ("straggler_spread",),
    ),
    "no_straggler": (("contention_tcp",), ("contention_rdma",), ("ddp_overhead_s_per_gb",)),
    "baseline": (),
}
"""Per variant, the fitted parameters (fields moved together count as one)."""
BOUNDS = {
    "contention_tcp": 4.0,
    "contention_rdma": 4.0,
    "ddp_overhead_s_per_gb": 0.5,
    "straggler_spread": 0.1,
}


def fit(rows: Sequence[Row], variant: str) -> Constants:
    """Least squares on efficiency error, by coordinate descent over the variant's
    parameters (each one-dimensional search a golden section)."""
    constants = NOTHING
    for _ in range(4):
        for group in FIELDS[variant]:
            base = constants
            best = golden(
                lambda v, g=group, c=base: loss(rows, replace(c, **dict.fromkeys(g, v))),
                0.0,
                BOUNDS[group[0]],
            )
            constants = replace(base, **dict.fromkeys(group, best))
    return constants


def leave_one_series_out(rows: Sequence[Row], variant: str) -> dict[int, float]:
    """Each row's error with the constants fitted on every other series: {row index: error}."""
    errors = {}
    for key in dict.fromkeys(row.point.key for row in rows):
        constants = fit([r for r in rows if r.point.key != key], variant)
        for i, row in enumerate(rows):
            if row.point.key == key:
                errors[i] = error_points(row, constants)
    return errors


def summary(errors: Sequence[float]) -> dict:
    return {
        "mean_abs_error_points": round(statistics.mean(abs(e) for e in errors), 2),
        "max_abs_error_points": round(max(abs(e) for e in errors), 1),
        "mean_signed_error_points": round(statistics.mean(errors), 2),
        "within_5_points": sum(abs(e) <= 5 for e in errors),
    }


def bands(rows: Sequence[Row], errors: dict[int, float]) -> dict[str, dict]:
    """Per regime: the range of the leave-one-series-out errors (raysim.projection.bands),
    of PyTorch's points where the regime has OWN_POINTS of them (raysim projects PyTorch's
    DDP), else of every framework's."""
    found: dict[str, dict[str, list[float]]] = {}
    for i, row in enumerate(rows):
        topo = topology(row)
        name = str(regime(topo.nodes, topo.gpus, topo.network.transport))
        found.setdefault(name, {}).setdefault(FAMILY[row.point.framework], []).append(errors[i])
    out = {}
    for name, by_family in sorted(found.items()):
        family = "pytorch" if len(by_family.get("pytorch", ())) >= OWN_POINTS else "any"
        e = by_family["pytorch"] if family == "pytorch" else sum(by_family.values(), [])
        out[name] = {"low": round(min(e), 1), "high": round(max(e), 1), "points": len(e),
                     "frameworks": family}  # fmt: skip
    return out


LINK_GRID_GBS = tuple(x / 2 for x in range(1, 51))
"""Achieved bandwidths (GB/s, 0.5 to 25: to twice EDR's line rate) that link_fits tries."""


def link_fits(rows: Sequence[Row], constants: Constants) -> dict[str, list[float] | None]:
    """Per DLPerf series with rows across machines (one cluster: InfiniBand EDR, 12.5 GB/s
    line rate): the achieved bandwidths of LINK_GRID_GBS (RDMA) that put every one of its
    multi-machine rows within 5 points, [lowest, highest], or None where none does. Series
    that need disjoint links cannot all be within 5 of one model of that cluster."""
    found: dict[str, list[float] | None] = {}
    series = [r for r in rows if r.point.network == "ib_edr" and r.machines > 1
              and r.point.source.startswith("Oneflow-Inc/DLPerf")]  # fmt: skip
    for key in dict.fromkeys(r.point.key for r in series):
        own = [r for r in series if r.point.key == key]
        fits = []
        for gbs in LINK_GRID_GBS:
            link = replace(NETWORK_LINKS["ib_edr"], busbw_gbs=gbs)
            if all(abs(project_step(workload(r, constants), replace(topology(r), network=link),
                                    constants.contention_rdma, constants.straggler_spread)
                       .efficiency - r.published_efficiency) * 100 <= 5 for r in own):  # fmt: skip
                fits.append(gbs)
        found[key] = [fits[0], fits[-1]] if fits else None
    return found


def point_rows(rows: Sequence[Row], loso: dict[str, dict[int, float]], fitted: Constants):
    out = []
    for i, row in enumerate(rows):
        topo = topology(row)
        step = project_step(workload(row, fitted), topo, None)
        out.append({
            "point": row.point.key, "framework": row.point.framework,
            "machines": row.machines, "gpus": topo.gpus,
            "network": row.point.network, "transport": topo.network.transport,
            "role": "left out of the fit (its series)",
            "setting": row.point.setting, "source": row.point.source,
            "published_step_ms": round(row.published_step_s * 1e3, 1),
            "projected_step_ms": round(step.step_s_overlap * 1e3, 1),
            "published_efficiency": round(row.published_efficiency, 4),
            "projected_efficiency": round(row.published_efficiency
                                          + loso["by_transport"][i] / 100, 4),
            "error_points": round(loso["by_transport"][i], 1),
            "error_points_in_fit": round(error_points(row, fitted), 1),
            "error_points_one_contention": round(loso["one_contention"][i], 1),
            "error_points_no_straggler": round(loso["no_straggler"][i], 1),
            "error_points_baseline": round(loso["baseline"][i], 1),
            "algorithm": step.algorithm,
        })  # fmt: skip
    return out


def projection(data: dict) -> str:
    """BENCHMARKS.md's table: each point's leave-one-series-out error beside the
    one-contention model's and the baseline's, then each variant's summary."""
    lines = [
        "| point | machines × GPUs | published | projected | error | one contention | "
        "no straggler | baseline |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in data["points"]:
        lines.append(
            f"| {p['point']} | {p['machines']} × {p['gpus'] // p['machines']} | "
            f"{p['published_efficiency']:.1%} | {p['projected_efficiency']:.1%} | "
            f"{p['error_points']:+.1f} | {p['error_points_one_contention']:+.1f} | "
            f"{p['error_points_no_straggler']:+.1f} | {p['error_points_baseline']:+.1f} |"
        )
    lines.append("")
    for variant in VARIANTS:
        s = data["leave_one_series_out"][variant]
        lines.append(
            f"- {variant}: mean |error| {s['mean_abs_error_points']}, largest "
            f"{s['max_abs_error_points']}, mean signed {s['mean_signed_error_points']:+}, "
            f"{s['within_5_points']}/{data['counts']['points']} within 5 points"
        )
    for family, s in data["leave_one_series_out_by_framework"].items():
        count = sum(FAMILY[p["framework"]] == family for p in data["points"])
        lines.append(
            f"- by_transport, {family}'s points only: mean |error| "
            f"{s['mean_abs_error_points']}, largest {s['max_abs_error_points']}, mean signed "
            f"{s['mean_signed_error_points']:+}, {s['within_5_points']}/{count} within 5 points"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/projection_validation.json")
    args = parse(parser)
    profiles = {point.key: profile(point) for point in POINTS}
    rows = [
        row
        for p in POINTS
        for row in [Row(p, 1, profiles[p.key], gpus) for gpus in p.part_of_one_machine]
        + [Row(p, n, profiles[p.key], p.gpus_per_node) for n in p.steps_s]
    ]
    loso = {variant: leave_one_series_out(rows, variant) for variant in VARIANTS}
    fitted = fit(rows, "by_transport")
    chosen = [loso["by_transport"][i] for i in range(len(rows))]
    result = {
        **provenance(args.allow_dirty),
        "fitted_on_every_point": {
            "contention": {"tcp": round(fitted.contention_tcp, 3),
                           "rdma": round(fitted.contention_rdma, 3)},
            "torch_ddp_overhead_s_per_gb": round(fitted.ddp_overhead_s_per_gb, 4),
            "straggler_spread": round(fitted.straggler_spread, 4)},
        "in_code": {"contention": CONTENTION,
                    "torch_ddp_overhead_s_per_gb": TORCH_DDP_OVERHEAD_S_PER_GB,
                    "straggler_spread": STRAGGLER_SPREAD},
        "counts": {"points": len(rows), "series": len(POINTS),
                   "multi_machine": sum(r.machines > 1 for r in rows),
                   "machines": sorted({r.machines for r in rows})},
        "leave_one_series_out": {
            v: summary([loso[v][i] for i in range(len(rows))]) for v in VARIANTS},
        "leave_one_series_out_by_framework": {
            family: summary([chosen[i] for i, r in enumerate(rows) if FAMILY[r.point.framework]
                             == family]) for family in dict.fromkeys(FAMILY.values())},
        "held_out_mean_abs_error_points": summary(chosen)["mean_abs_error_points"],
        "held_out_max_abs_error_points": summary(chosen)["max_abs_error_points"],
        "bands": bands(rows, loso["by_transport"]),
        "link_fits_gbs": link_fits(rows, fitted),
        "excluded": EXCLUDED,
        "points": point_rows(rows, loso, fitted),
    }  # fmt: skip
    print(projection(result))
    print(f"fitted on every point: {result['fitted_on_every_point']}")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {args.out}")


# --- BENCHMARKS.md's tables from this bench's results -------------------------


TABLES: dict[str, tuple[str, Renderer]] = {
    "projection": ("projection_validation.json", projection),
}
"""BENCHMARKS.md block name: (result file, renderer); tables.py gathers them."""


if __name__ == "__main__":
    main()
