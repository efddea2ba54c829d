"""The built-in experiment: torchvision's ResNet18 on the configured data set.

A client of raysim.worker's public calls only, as a user's own function is: whatever
it needs from raysim, a user's function gets the same way.
"""

from __future__ import annotations

import random
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import ray.train
import torch
from torch import nn

from raysim import worker
from raysim.builtin.checkpoint import load_state, restore_rng, save_progress, save_state
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
    resumed_unix: float = 0.0
    """When a preempted epoch went on from its just-in-time checkpoint (0: it did not)."""


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
    switches: Switches | None = None, stats: EpochStats | None = None,
) -> EpochStats:  # fmt: skip
    """One epoch; a step is one loader batch. With accumulation the optimizer steps every
    accumulate_steps batches, DDP all-reducing only then; batches after the epoch's last
    full accumulation are dropped (every rank drops the same number). stats: the sums of
    an epoch resumed part-way (its loader starts where it stopped), added to."""
    switches = switches or Switches()
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    stats = stats or EpochStats(start_unix=time.time())
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
    stats.seconds += time.perf_counter() - start
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


@dataclass
class Resume:
    """Where a (re)started run picks up."""

    epoch: int
    """The first epoch to run."""
    global_step: int
    """Steps done before that epoch."""
    step: int = 0
    """Steps of that epoch done before a preemption's just-in-time checkpoint."""
    stats: EpochStats | None = None
    """That epoch's sums up to there."""
    rng: dict | None = None
    """The RNG state its loader had there."""


def resume_point(model, optimizer, rank: int) -> Resume:
    """After the latest checkpoint, if Ray Train has one: the next epoch, or the rest of the
    epoch a preemption interrupted."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return Resume(1, 0)
    with checkpoint.as_directory() as directory:
        saved = load_state(Path(directory), model, optimizer, rank)
    if not saved.step:
        return Resume(saved.epoch + 1, saved.global_step)
    stats = EpochStats(**saved.partial)
    return Resume(saved.epoch, saved.global_step - saved.step, saved.step, stats, saved.rng)


def checkpoint_on_notice(rank: int, model, optimizer, epoch: int, stats: EpochStats,
                         global_step: int) -> None:  # fmt: skip
    """A node is being drained: the just-in-time checkpoint after this step (rank 0 saves
    the state, every rank its own sums and RNG into the same checkpoint), then no more
    training until Ray Train restarts the group from it."""
    with tempfile.TemporaryDirectory(prefix="raysim-ckpt-") as directory:
        if rank == 0:
            save_state(Path(directory), model, optimizer, epoch, global_step + stats.steps,
                       stats.steps)  # fmt: skip
        save_progress(Path(directory), rank, asdict(stats))
        checkpoint = ray.train.Checkpoint.from_directory(directory)
        worker.report_preemption_checkpoint(epoch, stats.steps, checkpoint)
    worker.hold_for_preemption()


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
    resume = resume_point(model, optimizer, rank)
    steps_per_epoch = min(len(train), cfg.max_steps_per_epoch or len(train))
    global_step = resume.global_step
    for epoch in range(resume.epoch, cfg.num_epochs + 1):
        stats = epoch_start(train, epoch, resume, cfg.batch_size)

        def before_step(step: int, epoch: int = epoch) -> None:
            worker.inject_faults(epoch, step)

        def after_step(step: int, epoch: int = epoch, stats: EpochStats = stats,
                       before: int = global_step) -> None:  # fmt: skip
            worker.progress(epoch, step, steps_per_epoch)
            if asks_for_notice(step, steps_per_epoch, switches) and worker.preemption_notice():
                checkpoint_on_notice(rank, model, optimizer, epoch, stats, before)

        stats = train_epoch(
            model, train, optimizer, device, cfg.max_steps_per_epoch, after_step, before_step,
            switches, stats,
        )  # fmt: skip
        eval_start = time.perf_counter()
        test_counts = evaluate(model, test, device, switches)
        metrics = epoch_metrics(epoch, stats, test_counts, time.perf_counter() - eval_start)
        metrics["param_checksum"] = parameter_checksum(model)
        if epoch == resume.epoch and resume.step:
            metrics.update(resumed_at_step=resume.step, resumed_unix=stats.resumed_unix)
        global_step += stats.steps
        due = cfg.checkpoint_every > 0 and epoch % cfg.checkpoint_every == 0
        report_epoch(metrics, due, rank, model, optimizer, global_step)


def asks_for_notice(step: int, steps_per_epoch: int, switches: Switches) -> bool:
    """Whether to ask for a preemption notice after this step: every rank asks at the same
    steps (the notice is agreed there), only where the optimizer just stepped (no
    accumulated gradient is left out of the checkpoint), and not after an epoch's last
    step (its report and checkpoint come next; a notice then is taken after the next
    epoch's first step)."""
    return step % switches.accumulate_steps == 0 and step < steps_per_epoch


def epoch_start(train, epoch: int, resume: Resume, batch_size: int) -> EpochStats:
    """The epoch's sums to add to: new ones, or for the epoch a preemption interrupted its
    sums so far, with the loader set to start after its done steps and with their RNG."""
    train.sampler.set_epoch(epoch)
    if epoch != resume.epoch or not resume.step:
        return EpochStats(start_unix=time.time())
    train.sampler.resume_at(resume.step * batch_size, lambda: restore_rng(resume.rng))
    resume.stats.resumed_unix = time.time()
    return resume.stats
