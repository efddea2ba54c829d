"""Data sets and their distributed loading.

digits: scikit-learn's 1,797 real 8×8 handwritten digit scans (bundled with the
package, no download), upsampled to RGB images. imagefolder: a user's folder in
the Stanford Cars layout (train/<class>/*.jpg, test/<class>/*.jpg). synthetic:
procedural, learnable, any size, for benchmarks.

imagefolder images are decoded once into a cache of resized uint8 tensors
($RAYSIM_HOME/cache, default ~/.raysim/cache), one file per split, which every
worker memory-maps: the simulated nodes share one copy in the page cache and no
epoch pays for JPEG decoding again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset, TensorDataset

from raysim.builtin.checks import DIGITS_TEST_SHARE
from raysim.worker import ExperimentConfig

SPLIT_SEED = 1234
"""Fixed, independent of the run seed, so every run sees the same test set."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
CACHE_FORMAT = 1
"""Part of every cache key: bump it when the decoding recipe changes, so old caches rebuild."""


class DataError(ValueError):
    """The data set cannot be read; the message names the path and the fix."""


@dataclass
class DataSplits:
    train: Dataset
    test: Dataset
    num_classes: int


def load_data(cfg: ExperimentConfig, cache: Path) -> DataSplits:
    """cache: the folder of decoded imagefolder splits ($RAYSIM_HOME/cache)."""
    if cfg.dataset == "digits":
        return digits(cfg.image_size)
    if cfg.dataset == "imagefolder":
        return image_folder(Path(cfg.data_dir), cfg.image_size, cache)
    return synthetic(cfg.synthetic_samples, cfg.num_classes, cfg.image_size)


def digit_scans() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits (images 8×8 in 0..16, labels), read from the file it ships:
    importing scikit-learn costs each worker ~1 s of CPU before its first step."""
    package = importlib.util.find_spec("sklearn")  # found, not imported
    csv = Path(package.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    if not csv.is_file():  # a scikit-learn that keeps it elsewhere: ask it
        from sklearn.datasets import load_digits

        raw = load_digits()
        return raw.images, raw.target
    table = np.loadtxt(csv, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)


def digits(image_size: int) -> DataSplits:
    scans, targets = digit_scans()
    pixels = torch.tensor(scans, dtype=torch.float32).unsqueeze(1) / 16.0
    images = torch.nn.functional.interpolate(
        pixels, size=(image_size, image_size), mode="bilinear", align_corners=False
    )
    images = ((images - 0.5) / 0.5).expand(-1, 3, -1, -1).contiguous()
    labels = torch.tensor(targets, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_test = int(len(labels) * DIGITS_TEST_SHARE)
    test_idx, train_idx = order[:n_test], order[n_test:]
    return DataSplits(
        train=TensorDataset(images[train_idx], labels[train_idx]),
        test=TensorDataset(images[test_idx], labels[test_idx]),
        num_classes=10,
    )


def synthetic(num_samples: int, num_classes: int, image_size: int) -> DataSplits:
    """Each class is a fixed random pattern; samples are that pattern plus noise."""
    gen = torch.Generator().manual_seed(SPLIT_SEED)
    prototypes = torch.randn(num_classes, 3, image_size, image_size, generator=gen)
    labels = torch.arange(num_samples) % num_classes
    noise = torch.randn(num_samples, 3, image_size, image_size, generator=gen)
    images = prototypes[labels] + 1.5 * noise
    n_test = max(num_classes, num_samples // 5)
    return DataSplits(
        train=TensorDataset(images[n_test:], labels[n_test:]),
        test=TensorDataset(images[:n_test], labels[:n_test]),
        num_classes=num_classes,
    )


class _CachedImages(Dataset):
    """Decoded uint8 images (memory-mapped) with their labels, augmented per access.

    train: a random crop×crop window of the larger cached image, flipped with p=0.5, drawn
    with the same RNG calls as torchvision's RandomCrop + RandomHorizontalFlip (so a seed
    gives the same items as those transforms would); test: as cached. Then /255 and normalize.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, crop: int | None):
        self.images = images
        self.labels = labels
        self.crop = crop
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        image = self.images[index]
        if self.crop is not None:
            top = int(torch.randint(0, image.shape[1] - self.crop + 1, (1,)))
            left = int(torch.randint(0, image.shape[2] - self.crop + 1, (1,)))
            image = image[:, top : top + self.crop, left : left + self.crop]
            if torch.rand(1) < 0.5:
                image = image.flip(-1)
        return (image.float() / 255 - self.mean) / self.std, int(self.labels[index])


def _scan_split(root: Path, split: str, classes: list[str] | None) -> tuple[list, list[str]]:
    split_dir = root / split
    if not split_dir.is_dir():
        raise DataError(
            f"missing folder {split_dir}: an imagefolder data set needs {root}/train/<class>/ "
            f"and {root}/test/<class>/ with images (see data/README.md)"
        )
    found = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
    if not found:
        raise DataError(f"{split_dir} has no class folders; put images in {split_dir}/<class>/")
    if classes is not None and found != classes:
        raise DataError(
            f"{split_dir} has classes {found[:5]}... that differ from train's {classes[:5]}...; "
            "train and test must hold the same class folders"
        )
    samples = []
    for index, name in enumerate(found):
        files = sorted(
            p for p in (split_dir / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise DataError(f"class folder {split_dir / name} has no images; add some or remove it")
        samples.extend((path, index) for path in files)
    return samples, found


def image_folder(root: Path, image_size: int, cache: Path) -> DataSplits:
    """The folder's splits from the decoded cache, built first if missing or out of date.

    Train images are cached at (s + s//8)² so the random s×s crop still augments; test at s².
    """
    if not root.is_dir():
        raise DataError(
            f"data_dir {root} does not exist; put the data set there (see data/README.md) "
            "or use dataset: digits"
        )
    train_samples, classes = _scan_split(root, "train", None)
    test_samples, _ = _scan_split(root, "test", classes)
    train = _cached_split(root, "train", image_size + image_size // 8, train_samples, cache)
    test = _cached_split(root, "test", image_size, test_samples, cache)
    return DataSplits(
        train=_CachedImages(*train, crop=image_size),
        test=_CachedImages(*test, crop=None),
        num_classes=len(classes),
    )


def _cache_path(
    root: Path, split: str, side: int, samples: list[tuple[Path, int]], cache: Path
) -> Path:
    """Named by a hash of everything the cache depends on, so any change means a new file."""
    stats = [(str(path.relative_to(root)), path.stat()) for path, _ in samples]
    files = sorted((name, stat.st_size, stat.st_mtime_ns) for name, stat in stats)
    key = json.dumps([CACHE_FORMAT, str(root.resolve()), split, side, files])
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return cache / f"imagefolder-{split}-{side}px-{digest}.pt"


def _cached_split(
    root: Path, split: str, side: int, samples: list[tuple[Path, int]], cache: Path
) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images [N,3,side,side], labels [N]), memory-mapped from the cache.

    The driver builds it in checks.check_data; a worker whose disk lacks it builds it the same way.
    The file appears whole or not at all (temp file + rename), so concurrent builders and
    readers never see half a file, and a failed decode leaves nothing behind.
    """
    path = _cache_path(root, split, side, samples, cache)
    if not path.exists():
        images = torch.empty(len(samples), 3, side, side, dtype=torch.uint8)
        for index, (file, _) in enumerate(samples):
            images[index] = _decode(file, side)
        labels = torch.tensor([label for _, label in samples], dtype=torch.long)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        except OSError as err:
            raise DataError(
                f"cannot write the decoded-image cache in {path.parent} ({err.strerror}); "
                "set RAYSIM_HOME to a writable folder"
            ) from None
        os.close(handle)
        try:
            torch.save({"images": images, "labels": labels}, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    cached = torch.load(path, mmap=True, weights_only=True)
    return cached["images"], cached["labels"]


def _decode(path: Path, side: int) -> torch.Tensor:
    """One file as uint8 [3,side,side]: RGB, bilinear resize (as transforms.Resize on PIL)."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.functional import pil_to_tensor

    try:
        with Image.open(path) as img:
            image = img.convert("RGB")
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"cannot read image {path}: {err}; delete or replace the file") from None
    return pil_to_tensor(image.resize((side, side), Image.Resampling.BILINEAR))


class ResumableSampler(DistributedSampler):
    """DistributedSampler whose next pass can start part-way, where an interrupted pass
    stopped: its order is a function of (seed, epoch), so skipping what was done is exact.

    A loader draws its base seed from torch's RNG when a pass's iterator is made, then
    asks the sampler for its first indices before it loads (and augments) the first
    batch: `on_start` runs there, so a resumed pass can put back the RNG state the
    interrupted pass had at that point."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.start = 0
        self.on_start: Callable[[], None] | None = None

    def resume_at(self, start: int, on_start: Callable[[], None] | None = None) -> None:
        """The next pass skips its first `start` indices; on_start runs as it begins."""
        self.start, self.on_start = start, on_start

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        start, on_start = self.start, self.on_start
        self.start, self.on_start = 0, None  # one pass only
        if on_start is not None:
            on_start()
        yield from indices[start:]

    def __len__(self) -> int:
        return super().__len__() - self.start


def train_loader(
    data: Dataset, batch_size: int, rank: int, world_size: int, seed: int, workers: int
) -> DataLoader:
    """Shuffled shard per rank; call loader.sampler.set_epoch(epoch) each epoch."""
    sampler = ResumableSampler(
        data, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=False
    )
    return DataLoader(data, batch_size=batch_size, sampler=sampler, num_workers=workers)


def eval_loader(data: Dataset, batch_size: int, rank: int, world_size: int) -> DataLoader:
    """Disjoint, unpadded shard per rank, so summed counts cover the test set exactly once."""
    shard = Subset(data, range(rank, len(data), world_size))
    return DataLoader(shard, batch_size=batch_size, shuffle=False)
