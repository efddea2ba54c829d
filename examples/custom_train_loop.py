"""Your own model and data on the simulated cluster: 1 node, then 4, then a comparison.

    python examples/custom_train_loop.py [--epochs 3] [--out runs/custom]

The training function is plain PyTorch plus three raysim calls: `worker.context()`
(who am I), `worker.prepare(model, loader)` (DDP, sampler, device, network emulation,
memory budget) and `worker.report(metrics)` (recorded with raysim's own measurements
in metrics.jsonl and TensorBoard). Run it with raysim.run(cfg, train_fn=...) or
`raysim run --train-fn examples.custom_train_loop:train_fn`.
"""

import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import raysim
from raysim import worker


def make_data(samples: int = 2048, features: int = 32, seed: int = 0) -> TensorDataset:
    """A linear rule over random features: learnt in seconds, so the curves show quickly."""
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn(samples, features, generator=gen)
    weights = torch.randn(features, generator=gen)
    labels = (inputs @ weights > 0).long()
    return TensorDataset(inputs, labels)


class SmallMLP(nn.Module):
    def __init__(self, features: int = 32, hidden: int = 64):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, 2)
        )  # fmt: skip

    def forward(self, inputs):
        return self.layers(inputs)


def train_fn(config: dict) -> None:
    """Runs on every simulated node; `config` is the resolved raysim config as a dict."""
    ctx = worker.context()
    torch.manual_seed(config["seed"])
    loader = DataLoader(make_data(), batch_size=config["batch_size"], shuffle=True)
    model, loader = worker.prepare(SmallMLP(), loader)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"])
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(1, config["num_epochs"] + 1):
        if ctx.world_size > 1:
            loader.sampler.set_epoch(epoch)
        total, correct, loss_sum = 0, 0, 0.0
        for inputs, labels in loader:
            optimizer.zero_grad()
            logits = model(inputs)
            loss = loss_fn(logits, labels)
            loss.backward()
            optimizer.step()
            worker.sample_memory()
            total += len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            loss_sum += loss.item() * len(labels)
        worker.report({"epoch": epoch, "loss": loss_sum / total, "accuracy": correct / total})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default="runs/custom")
    args = parser.parse_args()
    base = raysim.load_config(
        num_epochs=args.epochs, batch_size=32, learning_rate=1e-3, gpu_fraction=0.25,
        memory_fraction=0.25, run_dir=args.out, run_name="scaling",
    )  # fmt: skip
    comparison = raysim.sweep(base, [1, 4], train_fn=train_fn)  # runs n1-b32, n4-b32
    print(f"report: {comparison['report_dir']}/report.md")


if __name__ == "__main__":
    main()
