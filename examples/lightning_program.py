"""A PyTorch Lightning program: no line of raysim in it. It runs unchanged under both

    torchrun --nproc-per-node 2 examples/lightning_program.py --epochs 2
    raysim launch --num-nodes 2 examples/lightning_program.py --epochs 2

Lightning finds torchrun's environment (it spawns nothing); its devices and nodes come
from that environment, as a multi-node Lightning job reads them: torchrun's one machine
with two processes, or raysim's two nodes with one device each.
"""

import argparse
import os
import sys

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class Classifier(L.LightningModule):
    def __init__(self, features: int, hidden: int, lr: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, 2))
        self.lr = lr

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
        inputs, labels = batch
        loss = nn.functional.cross_entropy(self.net(inputs), labels)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def make_data(samples: int, features: int, seed: int = 0) -> TensorDataset:
    """A linear rule over random features: learnt in seconds."""
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn(samples, features, generator=gen)
    labels = (inputs @ torch.randn(features, generator=gen) > 0).long()
    return TensorDataset(inputs, labels)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32, help="per rank")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--samples", type=int, default=2048)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    L.seed_everything(0, verbose=False)
    features = 32
    devices = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    trainer = L.Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        devices=devices,
        num_nodes=int(os.environ.get("WORLD_SIZE", 1)) // devices,
        strategy="ddp",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=8,
    )
    loader = DataLoader(make_data(args.samples, features), batch_size=args.batch_size, shuffle=True)
    trainer.fit(Classifier(features, args.hidden, args.lr), loader)
    if trainer.is_global_zero:
        print(f"final loss {trainer.callback_metrics['train_loss_epoch']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
