"""Data sets and their distributed loading.

digits: scikit-learn's 1,797 real 8×8 handwritten digit scans (bundled with the
package, no download), upsampled to RGB images. imagefolder: a user's folder in
the Stanford Cars layout (train/<class>/*.jpg, test/<class>/*.jpg). synthetic:
procedural, learnable, any size, for benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset, TensorDataset

from raysim.config import ExperimentConfig

SPLIT_SEED = 1234
"""Fixed, independent of the run seed, so every run sees the same test set."""
DIGITS_TEST_SHARE = 0.2
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class DataError(ValueError):
    """The data set cannot be read; the message names the path and the fix."""


@dataclass
class DataSplits:
    train: Dataset
    test: Dataset
    num_classes: int
    class_names: list[str]


def load_data(cfg: ExperimentConfig) -> DataSplits:
    if cfg.dataset == "digits":
        return digits(cfg.image_size)
    if cfg.dataset == "imagefolder":
        return image_folder(Path(cfg.data_dir), cfg.image_size)
    return synthetic(cfg.synthetic_samples, cfg.num_classes, cfg.image_size)


def check_data(cfg: ExperimentConfig) -> None:
    """Find a missing folder or an empty class before Ray starts (scans, decodes nothing)."""
    if cfg.dataset == "imagefolder":
        image_folder(Path(cfg.data_dir), cfg.image_size)


def digits(image_size: int) -> DataSplits:
    from sklearn.datasets import load_digits

    raw = load_digits()
    pixels = torch.tensor(raw.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = torch.nn.functional.interpolate(
        pixels, size=(image_size, image_size), mode="bilinear", align_corners=False
    )
    images = ((images - 0.5) / 0.5).expand(-1, 3, -1, -1).contiguous()
    labels = torch.tensor(raw.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_test = int(len(labels) * DIGITS_TEST_SHARE)
    test_idx, train_idx = order[:n_test], order[n_test:]
    return DataSplits(
        train=TensorDataset(images[train_idx], labels[train_idx]),
        test=TensorDataset(images[test_idx], labels[test_idx]),
        num_classes=10,
        class_names=[str(d) for d in range(10)],
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
        class_names=[f"class_{i}" for i in range(num_classes)],
    )


class _ImageFiles(Dataset):
    """Image files with their class index; a file that cannot be decoded names itself."""

    def __init__(self, samples: list[tuple[Path, int]], transform):
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        from PIL import Image, UnidentifiedImageError

        path, label = self.samples[index]
        try:
            with Image.open(path) as img:
                image = img.convert("RGB")
        except (OSError, UnidentifiedImageError) as err:
            raise DataError(
                f"cannot read image {path}: {err}; delete or replace the file"
            ) from None
        return self.transform(image), label


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


def image_folder(root: Path, image_size: int) -> DataSplits:
    from torchvision import transforms

    if not root.is_dir():
        raise DataError(
            f"data_dir {root} does not exist; put the data set there (see data/README.md) "
            "or use dataset: digits"
        )
    train_samples, classes = _scan_split(root, "train", None)
    test_samples, _ = _scan_split(root, "test", classes)
    normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train_tf = transforms.Compose(
        [
            transforms.Resize((image_size + image_size // 8, image_size + image_size // 8)),
            transforms.RandomCrop(image_size),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            normalize,
        ]
    )
    test_tf = transforms.Compose(
        [transforms.Resize((image_size, image_size)), transforms.ToTensor(), normalize]
    )
    return DataSplits(
        train=_ImageFiles(train_samples, train_tf),
        test=_ImageFiles(test_samples, test_tf),
        num_classes=len(classes),
        class_names=classes,
    )


def train_loader(
    data: Dataset, batch_size: int, rank: int, world_size: int, seed: int, workers: int
) -> DataLoader:
    """Shuffled shard per rank; call loader.sampler.set_epoch(epoch) each epoch."""
    sampler = DistributedSampler(
        data, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=False
    )
    return DataLoader(data, batch_size=batch_size, sampler=sampler, num_workers=workers)


def eval_loader(data: Dataset, batch_size: int, rank: int, world_size: int) -> DataLoader:
    """Disjoint, unpadded shard per rank, so summed counts cover the test set exactly once."""
    shard = Subset(data, range(rank, len(data), world_size))
    return DataLoader(shard, batch_size=batch_size, shuffle=False)
