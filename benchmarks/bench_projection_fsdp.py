"""Check `raysim project --strategy fsdp` against published FSDP scaling measurements.

    python benchmarks/bench_projection_fsdp.py   # writes results/projection_fsdp_validation.json

Each series is one published table: a model trained with FSDP2 on one cluster at several
GPU counts, the same batch per GPU (weak scaling). The projection is anchored where the
table starts (one GPU alone, or one machine): that step gives the compute per step
(raysim.projection.fsdp_step.compute_for_step, so the anchor's own collectives are not
counted as compute), and every other row is projected from it and compared with the
published per-GPU throughput, as efficiency against the anchor. Nothing is fitted: the
contention and the slowest GPU's spread are DDP's (raysim.projection.step_model.CONTENTION
and STRAGGLER_SPREAD, fitted on DDP points only), the links are the presets
(raysim.projection.links, from nccl-tests). Every point was read before the FSDP model was
written (`seen_while_designing`); no constant was tuned on them.
Pure computation: no Ray, no training; seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from common import parse, provenance
from formatting import Renderer

from raysim.projection.collectives import Topology
from raysim.projection.fsdp_step import (
    FsdpUnit,
    FsdpWorkload,
    compute_for_step,
    project_fsdp_step,
)
from raysim.projection.links import INTRA_LINKS, NETWORK_LINKS
from raysim.projection.step_model import assumed_backward_share, contention_for

TORCHTITAN = (
    "pytorch/torchtitan benchmarks/llama3_h100_202412_torchtitan.md (Tables 1 and 3; "
    "Grand Teton: 8x H100 96 GB per host, NVLink, RDMA 400 Gb/s per GPU)"
)
TRAINY = (
    "pytorch/torchtitan benchmarks/llama3-8b_h200_202506_trainy-whitefiber.md (8x H200 per "
    "host, NVLink, RDMA 400 Gb/s CX-7 per GPU; torch 2.8.0a0, torchtitan e7c0cae)"
)
KEMPNER = (
    "KempnerInstitute/KempnerForge benchmarks/mfu_scaling/mfu_scaling_2026-04-05.md "
    "(4x H200 141 GB per node, NVLink; rows 1, 2, 4)"
)


@dataclass(frozen=True)
class Llama:
    """A Llama-3 decoder's shapes: what its FSDP units hold and compute."""

    dim: int = 4096
    layers: int = 32
    ffn: int = 14336
    vocab: int = 128256
    heads: int = 32
    kv_heads: int = 8
    seq: int = 8192

    @property
    def block_params(self) -> int:
        kv = self.dim * self.dim * self.kv_heads // self.heads
        return 2 * self.dim * self.dim + 2 * kv + 3 * self.dim * self.ffn + 2 * self.dim

    def units(self, float8_gather: bool = False, last_block_kept: bool = True) -> tuple:
        """The root (embedding, final norm, output: kept after forward), one unit per block
        (torchtitan keeps the last one too), and the output layer's compute at the end.
        Forward FLOPs per token: 2 per matmul weight, 4·seq·dim for a block's attention."""
        block_flops = 2 * self.block_params + 4 * self.seq * self.dim
        head_flops = 2 * self.vocab * self.dim
        total = self.layers * block_flops + head_flops
        root = FsdpUnit("root", 2 * self.vocab * self.dim + self.dim, 0.0, regather=False)
        blocks = tuple(
            FsdpUnit(f"layers.{i}", self.block_params, block_flops / total,
                     regather=not (last_block_kept and i == self.layers - 1),
                     gather_bytes_per_param=1 if float8_gather else None)
            for i in range(self.layers)
        )  # fmt: skip
        head = FsdpUnit("output (root's)", 0, head_flops / total, regather=False)
        return (root, *blocks, head)


@dataclass(frozen=True)
class Series:
    key: str
    setting: str
    source: str
    model: Llama
    units: tuple
    batch: int
    gpus_per_node: int
    intra: str
    network: str
    nics_per_node: int
    tokens_per_gpu_s: dict[int, float]
    """GPUs -> published tokens/s per GPU; the first is the anchor."""
    gather_bytes: int = 2
    seen_while_designing: bool = True


SERIES = (
    *(
        Series(f"torchtitan_llama3_8b_{name}",
               f"Llama 3.1 8B, FSDP2 ({label}), bf16 parameters, fp32 reduce-scatter, local "
               "batch 2 x 8192 tokens, selective activation checkpointing",
               TORCHTITAN, Llama(), Llama().units(), 2, 8, "nvlink4", "ib_ndr", 8,
               {8: one_machine, 128: sixteen})
        for name, label, one_machine, sixteen in (
            ("fsdp", "eager", 5762, 5605),
            ("compile", "torch.compile", 6667, 6514),
            ("compile_float8", "torch.compile, Float8 linears, bf16 all-gather", 8532, 8380),
        )
    ),
    Series("trainy_llama3_8b_h200",
           "Llama 3.1 8B, FSDP2, torch.compile, Float8 linears with float8 all-gather (blocks' "
           "weights 1 byte on the wire), fp32 reduce-scatter, local batch 2 x 8192 tokens",
           TRAINY, Llama(), Llama().units(float8_gather=True), 2, 8, "nvlink4", "ib_ndr", 8,
           {32: 10938, 64: 10753}),
    Series("kempnerforge_7b_one_node",
           "Llama-3 8.03B ('7B'), FSDP2 vs one GPU without FSDP, bf16, full activation "
           "checkpointing, torch.compile, micro-batch 4 x 4096 tokens, 2 accumulated (priced "
           "as one step per micro-batch, each with its collectives)",
           KEMPNER, Llama(seq=4096), Llama(seq=4096).units(last_block_kept=False), 4, 4,
           "nvlink4", "ib_ndr", 1, {1: 10471, 2: 18728 / 2, 4: 38983 / 4}),
)  # fmt: skip
"""Every published FSDP scaling table found with its settings (none left out)."""


def topology(series: Series, gpus: int) -> Topology:
    nodes = max(1, gpus // series.gpus_per_node)
    per_node = min(gpus, series.gpus_per_node)
    return Topology(nodes, per_node, INTRA_LINKS[series.intra],
                    NETWORK_LINKS[series.network], series.nics_per_node)  # fmt: skip


def workload(series: Series, step_s: float) -> FsdpWorkload:
    return FsdpWorkload(
        step_s=step_s, batch_per_gpu=series.batch, units=series.units,
        backward_share=assumed_backward_share(), step_source="anchored on the first row",
        units_source="Llama-3 shapes", gather_bytes_per_param=series.gather_bytes,
    )  # fmt: skip


def points(series: Series) -> list[dict]:
    """Every row after the anchor, projected from the anchor's compute."""
    (anchor, anchor_rate), *rest = series.tokens_per_gpu_s.items()
    tokens = series.batch * series.model.seq
    anchor_step = tokens / anchor_rate
    anchor_topo = topology(series, anchor)
    compute = compute_for_step(workload(series, anchor_step), anchor_topo,
                               anchor_step, contention_for(anchor_topo))  # fmt: skip
    out = []
    for gpus, rate in rest:
        topo = topology(series, gpus)
        step = project_fsdp_step(workload(series, compute), topo)
        published = rate / anchor_rate
        projected = anchor_step / step.step_s_overlap
        out.append({
            "series": series.key, "anchor_gpus": anchor, "gpus": gpus, "machines": topo.nodes,
            "network": series.network if topo.nodes > 1 else series.intra,
            "published_tokens_per_gpu_s": rate, "anchor_tokens_per_gpu_s": anchor_rate,
            "compute_s": round(compute, 4), "comm_s": round(step.comm_s, 4),
            "projected_step_s": round(step.step_s_overlap, 4),
            "published_step_s": round(tokens / rate, 4),
            "published_efficiency": round(published, 4),
            "projected_efficiency": round(projected, 4),
            "error_points": round((projected - published) * 100, 1),
            "seen_while_designing": series.seen_while_designing,
            "setting": series.setting, "source": series.source,
        })  # fmt: skip
    return out


def summary(errors: list[float]) -> dict:
    return {
        "points": len(errors),
        "mean_abs_error_points": round(statistics.mean(abs(e) for e in errors), 2),
        "max_abs_error_points": round(max(abs(e) for e in errors), 1),
        "mean_signed_error_points": round(statistics.mean(errors), 2),
        "within_5_points": sum(abs(e) <= 5 for e in errors),
    }


def projection_fsdp(data: dict) -> str:
    """BENCHMARKS.md's table: each FSDP point's efficiency against its anchor, published
    and projected, then the summary."""
    lines = [
        "| series | GPUs (anchor) | machines | published | projected | error |",
        "|---|---|---|---|---|---|",
    ]
    for p in data["points"]:
        lines.append(
            f"| {p['series']} | {p['gpus']} ({p['anchor_gpus']}) | {p['machines']} | "
            f"{p['published_efficiency']:.1%} | {p['projected_efficiency']:.1%} | "
            f"{p['error_points']:+.1f} |"
        )
    s = data["summary"]
    lines += ["", f"- mean |error| {s['mean_abs_error_points']}, largest "
              f"{s['max_abs_error_points']}, mean signed {s['mean_signed_error_points']:+}, "
              f"{s['within_5_points']}/{s['points']} within 5 points"]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/projection_fsdp_validation.json")
    args = parse(parser)
    rows = [point for series in SERIES for point in points(series)]
    result = {
        **provenance(args.allow_dirty),
        "fitted": "nothing: DDP's contention and slowest-GPU spread (fitted on DDP points) "
        "and the link presets",
        "summary": summary([row["error_points"] for row in rows]),
        "points": rows,
    }
    print(projection_fsdp(result))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {args.out}")


TABLES: dict[str, tuple[str, Renderer]] = {
    "projection-fsdp": ("projection_fsdp_validation.json", projection_fsdp),
}
"""BENCHMARKS.md block name: (result file, renderer); tables.py gathers them."""


if __name__ == "__main__":
    main()
