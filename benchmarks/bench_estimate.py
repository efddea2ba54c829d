"""`raysim estimate` against real runs: each node's measured peak beside the estimate for a
CNN, an MLP and a transformer under ddp, zero and fsdp.

    python benchmarks/bench_estimate.py [--nodes 4] [--batch 16] [--out FILE]

Each (model, strategy) is one `raysim.run` of a plain PyTorch function (worker.prepare,
Adam, cross-entropy, 256 samples) for 2 epochs on 4 simulated nodes; the measured figure is
each node's `memory_peak_bytes` in the last epoch (the steady step, as the estimate's
probe takes its second step), what the CPU budget charges. The estimate is
`raysim.estimate.estimate` for the same model, batch and nodes: its `charged_bytes`, for
the node that holds the most (under zero a node's optimizer temporaries are those of the
largest parameter it owns, so nodes differ). The error is estimate ÷ the largest node's
peak − 1; the range over every node's is kept beside it.

Which points shaped the estimate: the MLP (deep_model(8) of tests/local_ray/test_sharded.py)
was measured while the estimate and the measure were designed (2026-12-06/07); the CNN
(torchvision's ResNet18 at 32 px) and the transformer (examples/transformer_lm.py's model
at width 384, 4 layers) were first run here, after the estimate's composition was set.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import bench_result, parse
from formatting import Renderer, table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import raysim  # noqa: E402
from raysim.cluster.hardware import detect_hardware  # noqa: E402
from raysim.cluster.local import SimCluster  # noqa: E402
from raysim.config import replace  # noqa: E402
from raysim.estimate import estimate  # noqa: E402
from raysim.plan.resources import make_plan  # noqa: E402
from raysim.rundir import rank_lines, read_lines  # noqa: E402

SAMPLES = 256
CLASSES = 10
LM = {"vocab": 256, "context": 32, "width": 384, "layers": 4, "heads": 6}


def mlp():
    """8.4M parameters in eight equal 1024-wide layers."""
    from torch import nn

    layers: list[nn.Module] = [nn.Linear(32, 1024)]
    for _ in range(8):
        layers += [nn.ReLU(), nn.Linear(1024, 1024)]
    return nn.Sequential(*layers, nn.ReLU(), nn.Linear(1024, CLASSES))


def cnn():
    """torchvision's ResNet18 (11.2M parameters, batch norm's buffers)."""
    import torchvision

    return torchvision.models.resnet18(num_classes=CLASSES)


def transformer():
    """A causal transformer language model (7.2M parameters, a tied output layer)."""
    if str(ROOT) not in sys.path:  # on a node, whose working directory is Ray's
        sys.path.insert(0, str(ROOT))
    from examples.transformer_lm import TinyLM

    return TinyLM(LM["vocab"], LM["context"], LM["width"], LM["layers"], LM["heads"])


MODELS = {
    "mlp": (mlp, (32,), "float32"),
    "cnn": (cnn, (3, 32, 32), "float32"),
    "transformer": (transformer, (LM["context"],), "int64"),
}
"""name: (factory, one sample's shape, its dtype)."""


def train_fn(config: dict) -> None:
    """Plain PyTorch on every node: the model the train_config names, random data."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from raysim import worker

    name = config["train_config"]["model"]
    factory, shape, dtype = MODELS[name]
    gen = torch.Generator().manual_seed(0)
    if dtype == "int64":  # next-token targets: the sequence shifted
        tokens = torch.randint(0, LM["vocab"], (SAMPLES, LM["context"] + 1), generator=gen)
        data = TensorDataset(tokens[:, :-1], tokens[:, 1:])
    else:
        inputs = torch.randn(SAMPLES, *shape, generator=gen)
        data = TensorDataset(inputs, torch.randint(0, CLASSES, (SAMPLES,), generator=gen))
    torch.manual_seed(config["seed"])
    loader = DataLoader(data, batch_size=config["batch_size"])
    model, loader = worker.prepare(factory(), loader)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(1, config["num_epochs"] + 1):
        loader.sampler.set_epoch(epoch)
        total = 0.0
        for inputs, targets in loader:
            optimizer.zero_grad()
            logits = model(inputs)
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                               targets.reshape(-1))  # fmt: skip
            loss.backward()
            optimizer.step()
            total += loss.item()
        worker.report({"loss": total / len(loader)})


def node_peaks(run_dir: Path) -> list[int]:
    """Each node's memory_peak_bytes in the run's last epoch, in rank order."""
    ranks = rank_lines(read_lines(run_dir / "metrics.jsonl"))
    last = max(line["epoch"] for line in ranks)
    return [
        line["memory_peak_bytes"]
        for line in sorted(ranks, key=lambda line: line["rank"])
        if line["epoch"] == last
    ]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--out")
    args = parse(parser, argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = raysim.load_config(
            num_nodes=args.nodes, num_epochs=2, batch_size=args.batch, device="cpu",
            gpu_fraction=0.25, memory_fraction=0.25, run_dir=tmp,
        )  # fmt: skip
        with SimCluster(make_plan(base, detect_hardware())):
            for name in args.models.split(","):
                _, shape, dtype = MODELS[name]
                for strategy in ("ddp", "zero", "fsdp"):
                    cfg = replace(base, strategy=strategy, run_name=f"{name}-{strategy}",
                                         train_config={"model": name})  # fmt: skip
                    result = raysim.run(cfg, train_fn=train_fn, out=None)
                    peaks = node_peaks(result.run_dir)
                    node = estimate(cfg, f"__main__:{name}", shape, dtype)
                    node = node.per_strategy[strategy]
                    errors = [node.charged_bytes / peak - 1 for peak in peaks]
                    error = node.charged_bytes / max(peaks) - 1
                    rows.append({
                        "model": name, "strategy": strategy, "status": result.summary["status"],
                        "measured_bytes": peaks, "estimated_bytes": node.charged_bytes,
                        "categories": node.categories, "error": error, "node_errors": errors,
                    })  # fmt: skip
                    print(f"{name} {strategy}: measured {[round(p / 1e6, 1) for p in peaks]} "
                          f"MB, estimated {node.charged_bytes / 1e6:.1f} MB, error "
                          f"{error:+.1%} (nodes {min(errors):+.1%} to {max(errors):+.1%})",
                          flush=True)  # fmt: skip
    summary = {
        "points": len(rows),
        "within_10_percent": sum(abs(row["error"]) <= 0.10 for row in rows),
        "mean_abs_error": sum(abs(row["error"]) for row in rows) / len(rows),
        "worst_abs_error": max(abs(row["error"]) for row in rows),
    }
    return bench_result(args, {"samples": SAMPLES}, summary=summary, rows=rows)


# --- BENCHMARKS.md's tables from this bench's results -------------------------


def estimate_table(data: dict | None) -> str:
    if data is None:
        return "Not measured yet."
    rows = []
    for row in data["rows"]:
        measured = [b / 1e6 for b in row["measured_bytes"]]
        errors = row["node_errors"]
        rows.append([
            row["model"], row["strategy"], f"{max(measured):.1f} MB",
            f"{min(measured):.1f}–{max(measured):.1f} MB",
            f"{row['estimated_bytes'] / 1e6:.1f} MB", f"{row['error']:+.1%}",
            f"{min(errors):+.1%} to {max(errors):+.1%}",
        ])  # fmt: skip
    summary = data["summary"]
    header = ["model", "strategy", "largest node's peak", "every node's", "estimated",
              "error", "error per node"]  # fmt: skip
    return (
        table(header, rows) + f"\n\nWithin 10 % of the largest node: "
        f"{summary['within_10_percent']} of {summary['points']}; mean error "
        f"{summary['mean_abs_error']:.1%}, the largest {summary['worst_abs_error']:.1%}."
    )


TABLES: dict[str, tuple[str, Renderer]] = {
    "estimate": ("bench_estimate.json", estimate_table),
}
"""BENCHMARKS.md block name: (result file, renderer); tables.py gathers them."""


if __name__ == "__main__":
    main()
