import pytest
import torch
from PIL import Image

from raysim.config import load_config
from raysim.data import (
    DataError,
    check_data,
    digits,
    eval_loader,
    image_folder,
    synthetic,
    train_loader,
)


def test_digits_is_the_real_bundled_set_with_a_fixed_split():
    data = digits(16)
    assert len(data.train) + len(data.test) == 1797
    assert len(data.test) == 359
    image, label = data.train[0]
    assert image.shape == (3, 16, 16)
    assert image.min() >= -1.0 and image.max() <= 1.0
    again = digits(16)
    assert torch.equal(data.test.tensors[1], again.test.tensors[1])
    assert set(data.test.tensors[1].tolist()) == set(range(10))


def test_synthetic_has_the_requested_shape_and_classes():
    data = synthetic(100, 5, 12)
    assert len(data.train) + len(data.test) == 100
    assert data.train[0][0].shape == (3, 12, 12)
    assert data.num_classes == 5


def test_train_shards_are_disjoint_and_reshuffle_each_epoch():
    data = synthetic(64, 4, 8)
    loaders = [train_loader(data.train, 4, r, 2, seed=0, workers=0) for r in range(2)]
    shards = [set(iter(loader.sampler)) for loader in loaders]
    assert not shards[0] & shards[1]
    assert len(shards[0] | shards[1]) == len(data.train)
    first = list(iter(loaders[0].sampler))
    loaders[0].sampler.set_epoch(1)
    assert list(iter(loaders[0].sampler)) != first


def test_eval_shards_cover_the_test_set_exactly_once():
    data = synthetic(103, 4, 8)
    sizes = [len(eval_loader(data.test, 8, r, 3).dataset) for r in range(3)]
    assert sum(sizes) == len(data.test)


def _write_images(folder, count, size=20, color=(200, 10, 10)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", (size + i, size), color).save(folder / f"img_{i}.jpg")


@pytest.fixture
def cars(tmp_path):
    """A tiny Stanford-Cars-layout folder; class names contain spaces."""
    root = tmp_path / "car_data"
    for split in ("train", "test"):
        _write_images(root / split / "AM General Hummer SUV 2000", 3, color=(250, 0, 0))
        _write_images(root / split / "Acura RL Sedan 2012", 2, color=(0, 0, 250))
    return root


def test_image_folder_reads_the_stanford_cars_layout(cars):
    data = image_folder(cars, 16)
    assert data.class_names == ["AM General Hummer SUV 2000", "Acura RL Sedan 2012"]
    assert len(data.train) == 5 and len(data.test) == 5
    image, label = data.test[0]
    assert image.shape == (3, 16, 16) and label == 0
    red, blue = data.test[0][0], data.test[4][0]
    assert red[0].mean() > red[2].mean() and blue[2].mean() > blue[0].mean()


def test_missing_folder_names_the_path_and_the_fix(tmp_path):
    cfg = load_config(dataset="imagefolder", data_dir=str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"data_dir .*nowhere does not exist.*dataset: digits"):
        check_data(cfg)


def test_missing_test_split(cars):
    for path in (cars / "test").rglob("*.jpg"):
        path.unlink()
    for folder in (cars / "test").iterdir():
        folder.rmdir()
    (cars / "test").rmdir()
    with pytest.raises(DataError, match=r"missing folder .*test"):
        image_folder(cars, 16)


def test_empty_class_is_named(cars):
    (cars / "train" / "Empty Class 1999").mkdir()
    with pytest.raises(DataError, match=r"class folder .*Empty Class 1999 has no images"):
        image_folder(cars, 16)


def test_corrupt_image_names_the_file(cars):
    bad = cars / "test" / "Acura RL Sedan 2012" / "img_9.jpg"
    bad.write_bytes(b"not a jpeg at all")
    data = image_folder(cars, 16)
    with pytest.raises(DataError, match=r"cannot read image .*img_9.jpg"):
        for i in range(len(data.test)):
            data.test[i]
