"""A plain torchrun DDP script: no line of raysim in it. It runs unchanged under both

    torchrun --nproc-per-node 2 examples/torchrun_ddp.py --epochs 2
    raysim launch --num-nodes 2 examples/torchrun_ddp.py --epochs 2

The process group from the environment, its own DistributedDataParallel, a
DistributedSampler, argparse and sys.exit(0), as a torchrun script has them.
"""

import argparse
import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler


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
    parser.add_argument("--save", help="rank 0 saves the final weights here")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    dist.init_process_group(backend="gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    features = 32
    model = nn.Sequential(nn.Linear(features, args.hidden), nn.ReLU(), nn.Linear(args.hidden, 2))
    model = DDP(model)
    dataset = make_data(args.samples, features)
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=0)
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        total = 0.0
        for inputs, labels in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(inputs), labels)
            loss.backward()
            optimizer.step()
            total += loss.item()
        if rank == 0:
            print(f"epoch {epoch} loss {total / len(loader):.4f} (rank {rank} of {world})")
    if rank == 0 and args.save:
        torch.save(model.module.state_dict(), args.save)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
