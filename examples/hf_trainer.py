"""A Hugging Face Trainer program: no line of raysim in it. It runs unchanged under both

    torchrun --nproc-per-node 2 examples/hf_trainer.py --epochs 2
    raysim launch --num-nodes 2 examples/hf_trainer.py --epochs 2

A tiny GPT-2 built from its config (nothing is downloaded) learns arithmetic token
sequences; the Trainer finds torchrun's environment, wraps the model in DDP and logs
its loss every few steps.
"""

import argparse
import sys

import torch
from torch.utils.data import Dataset
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments


class Sequences(Dataset):
    """Token sequences counting up from a random start by a random stride: learnt fast."""

    def __init__(self, samples: int, length: int, vocab: int, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        starts = torch.randint(0, vocab, (samples, 1), generator=gen)
        strides = torch.randint(1, 4, (samples, 1), generator=gen)
        self.ids = (starts + strides * torch.arange(length)) % vocab

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index], "labels": self.ids[index]}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--batch-size", type=int, default=16, help="per rank")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--logging-steps", type=int, default=4)
    parser.add_argument("--output-dir", default="hf_trainer_output")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    vocab, length = 64, 16
    config = GPT2Config(
        vocab_size=vocab, n_positions=length, n_embd=32, n_layer=2, n_head=2,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    training = TrainingArguments(
        output_dir=args.output_dir,
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        logging_steps=args.logging_steps,
        save_strategy="no",
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        ddp_find_unused_parameters=False,
        seed=0,
    )
    trainer = Trainer(
        model=model, args=training, train_dataset=Sequences(args.samples, length, vocab)
    )
    result = trainer.train()
    if trainer.is_world_process_zero():
        print(f"final loss {result.training_loss:.4f} after {result.global_step} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
