"""The built-in experiment: torchvision's ResNet18 on the configured data set.

A client of raysim.worker's public calls only, as a user's own function is: whatever
it needs from raysim, a user's function gets the same way.
"""

from __future__ import annotations

import random
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray.train
import torch
from torch import nn

from raysim import worker
from raysim.builtin.checkpoint import load_state, save_state
from raysim.builtin.data import eval_loader, load_data, train_loader
from raysim.builtin.model import adam, build_model, checkpoint_stages, parameter_checksum


@dataclass
class EpochStats:
    samples: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    steps: int = 0
    seconds: float = 0.0
    start_unix: float = 0.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Switches:
    """The config's memory-saving switches, ready for the training step."""

    amp_dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None
    channels_last: bool = False
    accumulate_steps: int = 1

    @classmethod
    def from_config(cls, cfg) -> Switches:
        return cls(
            amp_dtype={"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp or ""),
            scaler=torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None,
            channels_last=cfg.channels_last,
            accumulate_steps=cfg.accumulate_steps,
        )

    def autocast(self, device: torch.device):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device.type, dtype=self.amp_dtype)


def train_epoch(
    model, loader, optimizer, device, max_steps: int | None, on_step, before_step=None,
    switches: Switches | None = None,
) -> EpochStats:  # fmt: skip
    """One epoch; a step is one loader batch. With accumulation the optimizer steps every
    accumulate_steps batches, DDP all-reducing only then; batches after the epoch's last
    full accumulation are dropped (every rank drops the same number)."""
    switches = switches or Switches()
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    stats = EpochStats(start_unix=time.time())
    optimizer.zero_grad(set_to_none=True)
    start = time.perf_counter()
    for images, labels in loader:
        if before_step is not None:
            before_step(stats.steps + 1)
        images, labels = images.to(device), labels.to(device)
        if switches.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        syncs = (stats.steps + 1) % switches.accumulate_steps == 0
        no_sync = getattr(model, "no_sync", None)
        with nullcontext() if syncs or no_sync is None else no_sync():
            with switches.autocast(device):
                logits = model(images)
                loss = loss_fn(logits, labels)
            scaled = loss / switches.accumulate_steps
            (scaled if switches.scaler is None else switches.scaler.scale(scaled)).backward()
        if syncs:
            if switches.scaler is None:
                optimizer.step()
            else:
                switches.scaler.step(optimizer)
                switches.scaler.update()
            optimizer.zero_grad(set_to_none=True)
        stats.samples += len(labels)
        stats.loss_sum += loss.item() * len(labels)
        stats.correct += int((logits.argmax(1) == labels).sum())
        stats.steps += 1
        on_step(stats.steps)
        if max_steps is not None and stats.steps >= max_steps:
            break
    stats.seconds = time.perf_counter() - start
    return stats


@torch.no_grad()
def evaluate(model, loader, device, switches: Switches | None = None) -> tuple[int, int]:
    switches = switches or Switches()
    model.eval()
    correct = total = 0
    for images, labels in loader:
        images = images.to(device)
        if switches.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with switches.autocast(device):
            logits = model(images)
        correct += int((logits.argmax(1) == labels.to(device)).sum())
        total += len(labels)
    return correct, total


def epoch_metrics(epoch: int, stats: EpochStats, test: tuple[int, int], eval_s: float) -> dict:
    correct, total = test
    return {
        "epoch": epoch,
        "train_samples": stats.samples,
        "train_loss_sum": stats.loss_sum,
        "train_correct": stats.correct,
        "train_loss": stats.loss_sum / max(stats.samples, 1),
        "train_accuracy": stats.correct / max(stats.samples, 1),
        "test_correct": correct,
        "test_total": total,
        "steps": stats.steps,
        "epoch_time_s": stats.seconds,
        "eval_time_s": eval_s,
        "epoch_start_unix": stats.start_unix,
        "report_unix": time.time(),
    }


def resume_point(model, optimizer) -> tuple[int, int]:
    """(first epoch to run, global step): after the latest checkpoint, if Ray Train has one."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return 1, 0
    with checkpoint.as_directory() as directory:
        epoch, global_step = load_state(Path(directory), model, optimizer)
    return epoch + 1, global_step


def report_epoch(metrics: dict, save: bool, rank: int, model, optimizer, global_step: int):
    """Every rank reports; with a checkpoint due, rank 0 attaches the state."""
    if not save:
        worker.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="raysim-ckpt-") as directory:
        checkpoint = None
        if rank == 0:
            save_state(Path(directory), model, optimizer, metrics["epoch"], global_step)
            checkpoint = ray.train.Checkpoint.from_directory(directory)
        worker.report(metrics, checkpoint=checkpoint)


def resnet18_experiment(config: dict) -> None:
    """The built-in experiment, run on every simulated node."""
    ctx, cfg = worker.context(), worker.experiment_config()
    rank, device = ctx.rank, ctx.device
    seed_everything(cfg.seed)
    data = load_data(cfg, ctx.cache_dir)
    train = train_loader(
        data.train, cfg.batch_size, rank, ctx.world_size, cfg.seed, cfg.num_workers_per_loader
    )
    test = eval_loader(data.test, max(cfg.batch_size, 64), rank, ctx.world_size)
    model = build_model(data.num_classes, cfg.weights_path)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.activation_checkpointing:
        checkpoint_stages(model)
    model, train = worker.prepare(model, train)  # raysim times its steps from here on
    switches = Switches.from_config(cfg)
    optimizer = adam(model, cfg.learning_rate)
    start_epoch, global_step = resume_point(model, optimizer)
    steps_per_epoch = min(len(train), cfg.max_steps_per_epoch or len(train))
    for epoch in range(start_epoch, cfg.num_epochs + 1):
        train.sampler.set_epoch(epoch)

        def before_step(step: int, epoch: int = epoch) -> None:
            worker.inject_faults(epoch, step)

        def after_step(step: int, epoch: int = epoch) -> None:
            worker.progress(epoch, step, steps_per_epoch)

        stats = train_epoch(
            model, train, optimizer, device, cfg.max_steps_per_epoch, after_step, before_step,
            switches,
        )  # fmt: skip
        eval_start = time.perf_counter()
        test_counts = evaluate(model, test, device, switches)
        metrics = epoch_metrics(epoch, stats, test_counts, time.perf_counter() - eval_start)
        metrics["param_checksum"] = parameter_checksum(model)
        global_step += stats.steps
        due = cfg.checkpoint_every > 0 and epoch % cfg.checkpoint_every == 0
        report_epoch(metrics, due, rank, model, optimizer, global_step)
