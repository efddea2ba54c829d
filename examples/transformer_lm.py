"""A second workload: a small causal transformer language model, plain PyTorch, on raysim.

    python examples/transformer_lm.py [--epochs 2] [--out runs/lm]    # 1 node, then 4, compared
    raysim run --train-fn examples.transformer_lm:train_fn --num-nodes 4 --num-epochs 2
    raysim project runs/lm/scaling/n4-b16 --network 10gbe           # its own gradients

The data is synthetic and learnable, made on every node from the seed (no download):
sequences drawn from a fixed random bigram table, so the model can learn to predict the
next token. Hyperparameters come from the YAML's `train_config:` block (or
`--train-config key=value`); raysim measures the steps, memory and communication
through `worker.prepare`, as for the built-in experiment.
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import raysim
from raysim import worker

DEFAULTS = {"vocab": 256, "context": 32, "width": 128, "layers": 2, "heads": 4, "sequences": 2048}


def bigram_corpus(vocab: int, context: int, sequences: int, seed: int) -> TensorDataset:
    """Token sequences from a random, peaked bigram table: next-token entropy well below
    log(vocab), so a falling loss shows learning."""
    gen = torch.Generator().manual_seed(seed)
    table = torch.softmax(4 * torch.randn(vocab, vocab, generator=gen), dim=1)
    tokens = torch.empty(sequences, context + 1, dtype=torch.long)
    tokens[:, 0] = torch.randint(0, vocab, (sequences,), generator=gen)
    for t in range(context):
        tokens[:, t + 1] = torch.multinomial(table[tokens[:, t]], 1, generator=gen).squeeze(1)
    return TensorDataset(tokens[:, :-1], tokens[:, 1:])


class TinyLM(nn.Module):
    """Token and position embeddings, a causal TransformerEncoder, a tied output layer."""

    def __init__(self, vocab: int, context: int, width: int, layers: int, heads: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        nn.init.normal_(self.embed.weight, std=0.02)  # tied output: keeps the first logits small
        self.position = nn.Parameter(torch.zeros(context, width))
        layer = nn.TransformerEncoderLayer(
            width, heads, dim_feedforward=4 * width, dropout=0.0, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        mask = nn.Transformer.generate_square_subsequent_mask(context)
        self.register_buffer("causal_mask", mask, persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        steps = tokens.shape[1]
        hidden = self.embed(tokens) + self.position[:steps]
        hidden = self.encoder(hidden, mask=self.causal_mask[:steps, :steps], is_causal=True)
        return self.norm(hidden) @ self.embed.weight.T


def train_fn(config: dict) -> None:
    """Runs on every simulated node; `config` is the resolved raysim config as a dict."""
    settings = {**DEFAULTS, **config["train_config"]}
    torch.manual_seed(config["seed"])
    data = bigram_corpus(settings["vocab"], settings["context"], settings["sequences"], 0)
    loader = DataLoader(data, batch_size=config["batch_size"], shuffle=True)
    model = TinyLM(settings["vocab"], settings["context"], settings["width"],
                   settings["layers"], settings["heads"])  # fmt: skip
    model, loader = worker.prepare(model, loader)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["learning_rate"])
    loss_fn = nn.CrossEntropyLoss()
    steps_cap = config["max_steps_per_epoch"] or len(loader)
    for epoch in range(1, config["num_epochs"] + 1):
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        loss_sum, count = 0.0, 0
        for step, (inputs, targets) in enumerate(loader, 1):
            worker.inject_faults(epoch, step)
            logits = model(inputs)
            loss = loss_fn(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum, count = loss_sum + loss.item(), count + 1
            worker.progress(epoch, step, min(steps_cap, len(loader)))
            if step >= steps_cap:
                break
        mean = loss_sum / count
        worker.report({"epoch": epoch, "loss": mean, "perplexity": math.exp(mean)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", default="runs/lm")
    args = parser.parse_args()
    base = raysim.load_config(
        num_epochs=args.epochs, batch_size=16, learning_rate=1e-3, gpu_fraction=0.25,
        memory_fraction=0.25, run_dir=args.out, run_name="scaling",
    )  # fmt: skip
    comparison = raysim.sweep(base, [1, 4], train_fn=train_fn)  # runs n1-b16, n4-b16
    print(f"report: {comparison['report_dir']}/report.md")


if __name__ == "__main__":
    main()
