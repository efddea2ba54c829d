import os
import sys

import pytest
import torch
from PIL import Image
from torchvision import transforms

import raysim
from raysim.builtin.checks import check_data
from raysim.builtin.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataError,
    digit_scans,
    digits,
    eval_loader,
    image_folder,
    synthetic,
    train_loader,
)
from raysim.config import load_config
from raysim.rundir import raysim_home


def cache_dir():
    return raysim_home() / "cache"


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """Decoded caches go under the test's own RAYSIM_HOME, never ~/.raysim."""
    monkeypatch.setenv("RAYSIM_HOME", str(tmp_path / "home"))


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


def test_digits_are_read_without_importing_scikit_learn_and_equal_its_own():
    """A worker pays no scikit-learn import for them (seen in a fresh interpreter)."""
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    scans, targets = digit_scans()
    reference = load_digits()
    assert (scans == reference.images).all() and (targets == reference.target).all()
    probe = "import sys; from raysim.builtin.data import digits; digits(8); " + (
        "print('sklearn' in sys.modules)"
    )
    seen = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert seen.stdout.strip() == "False", seen.stderr


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


HUMMER = "AM General Hummer SUV 2000"


def _write_noise(path):
    """A textured image, so crops, flips and resizing show in the pixels."""
    noise = torch.randint(0, 256, (30, 40, 3), generator=torch.Generator().manual_seed(0))
    Image.fromarray(noise.to(torch.uint8).numpy()).save(path)


@pytest.fixture
def cars(tmp_path):
    """A tiny Stanford-Cars-layout folder; class names contain spaces."""
    root = tmp_path / "car_data"
    for split in ("train", "test"):
        _write_images(root / split / HUMMER, 3, color=(250, 0, 0))
        _write_images(root / split / "Acura RL Sedan 2012", 2, color=(0, 0, 250))
    return root


def test_image_folder_reads_the_stanford_cars_layout(cars):
    data = image_folder(cars, 16, cache_dir())
    assert data.num_classes == 2
    assert len(data.train) == 5 and len(data.test) == 5
    image, label = data.test[0]
    assert image.shape == (3, 16, 16) and label == 0
    red, blue = data.test[0][0], data.test[4][0]
    assert red[0].mean() > red[2].mean() and blue[2].mean() > blue[0].mean()


def test_missing_folder_names_the_path_and_the_fix(tmp_path):
    cfg = load_config(dataset="imagefolder", data_dir=str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"data_dir .*nowhere does not exist.*dataset: digits"):
        check_data(cfg, cache_dir())


def test_missing_test_split(cars):
    for path in (cars / "test").rglob("*.jpg"):
        path.unlink()
    for folder in (cars / "test").iterdir():
        folder.rmdir()
    (cars / "test").rmdir()
    with pytest.raises(DataError, match=r"missing folder .*test"):
        image_folder(cars, 16, cache_dir())


def test_empty_class_is_named(cars):
    (cars / "train" / "Empty Class 1999").mkdir()
    with pytest.raises(DataError, match=r"class folder .*Empty Class 1999 has no images"):
        image_folder(cars, 16, cache_dir())


def test_corrupt_image_fails_before_any_item_is_read_and_caches_nothing(cars):
    bad = cars / "test" / "Acura RL Sedan 2012" / "img_9.jpg"
    bad.write_bytes(b"not a jpeg at all")
    cfg = load_config(dataset="imagefolder", data_dir=str(cars), image_size=16)
    match = r"cannot read image .*img_9.jpg.*delete or replace the file"
    with pytest.raises(DataError, match=match):
        check_data(cfg, cache_dir())
    with pytest.raises(DataError, match=match):
        image_folder(cars, 16, cache_dir())
    assert not list(cache_dir().glob("*test*"))


def test_run_with_a_corrupt_image_fails_before_ray(cars, tmp_path):
    """The driver's check finds the file: no run directory, no metrics, no Ray."""
    (cars / "train" / "Acura RL Sedan 2012" / "broken.jpg").write_bytes(b"\x00 not an image")
    cfg = load_config(
        dataset="imagefolder", data_dir=str(cars), image_size=16, device="cpu",
        run_dir=str(tmp_path / "runs"), run_name="run",
    )  # fmt: skip
    with pytest.raises(DataError, match=r"cannot read image .*broken.jpg"):
        raysim.run(cfg, out=None)
    assert not list((tmp_path / "runs").rglob("metrics.jsonl"))


def test_an_unwritable_cache_names_the_folder_and_the_fix(cars, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("RAYSIM_HOME", str(blocker / "home"))
    with pytest.raises(DataError, match=r"cannot write the decoded-image cache .*RAYSIM_HOME"):
        image_folder(cars, 16, cache_dir())


def cache_files():
    return sorted(cache_dir().glob("*.pt"))


def test_the_cache_is_built_once_and_reused(cars):
    check_data(load_config(dataset="imagefolder", data_dir=str(cars), image_size=16), cache_dir())
    files = cache_files()
    assert [f.name.split("-")[1:3] for f in files] == [["test", "16px"], ["train", "18px"]]
    before = [(f.stat().st_ino, f.stat().st_mtime_ns) for f in files]
    data = image_folder(cars, 16, cache_dir())
    assert cache_files() == files
    assert [(f.stat().st_ino, f.stat().st_mtime_ns) for f in files] == before
    assert data.train.images.shape == (5, 3, 18, 18) and data.train.images.dtype == torch.uint8
    assert not list(cache_dir().glob("*.tmp"))


def test_a_changed_file_or_size_rebuilds(cars):
    image_folder(cars, 16, cache_dir())
    first = set(cache_files())
    changed = cars / "test" / "Acura RL Sedan 2012" / "img_0.jpg"
    Image.new("RGB", (30, 20), (0, 250, 0)).save(changed)
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    data = image_folder(cars, 16, cache_dir())
    rebuilt = set(cache_files()) - first
    assert [f.name.split("-")[1] for f in rebuilt] == ["test"], "train did not change"
    green = data.test[3][0]
    assert green[1].mean() > green[0].mean() and green[1].mean() > green[2].mean()
    image_folder(cars, 24, cache_dir())
    assert len(set(cache_files()) - first - rebuilt) == 2


def test_cached_test_images_equal_decoding_directly(cars):
    _write_noise(cars / "test" / HUMMER / "img_1.jpg")
    data = image_folder(cars, 16, cache_dir())
    direct = transforms.Compose(
        [
            transforms.Resize((16, 16)),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    paths = sorted((cars / "test").rglob("*.jpg"))
    assert len(paths) == len(data.test)
    for index, path in enumerate(paths):
        with Image.open(path) as img:
            expected = direct(img.convert("RGB"))
        image, label = data.test[index]
        assert label == (0 if HUMMER in str(path) else 1)
        assert torch.allclose(image, expected, rtol=0, atol=1 / 255)
    red, noise, blue = data.test[0][0], data.test[1][0], data.test[4][0]
    assert red[0].mean() > red[2].mean() and blue[2].mean() > blue[0].mean()
    assert noise.std() > 0.2, "the textured image stays textured"


def test_train_items_are_random_crops_and_flips_of_the_cached_image(cars):
    _write_noise(cars / "train" / HUMMER / "img_0.jpg")
    data = image_folder(cars, 16, cache_dir())
    stored = data.train.images[0].float() / 255
    candidates = {
        (top, left, flip): crop.flip(-1) if flip else crop
        for top in range(3)
        for left in range(3)
        for flip in (False, True)
        for crop in [stored[:, top : top + 16, left : left + 16]]
    }
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    seen = set()
    for seed in range(20):
        torch.manual_seed(seed)
        image, label = data.train[0]
        assert image.shape == (3, 16, 16) and label == 0
        raw = image * std + mean
        found = [key for key, crop in candidates.items() if torch.allclose(raw, crop, atol=1e-5)]
        assert len(found) == 1, "one 16×16 crop of the 18×18 cached image, maybe flipped"
        seen.update(found)
    assert len({(top, left) for top, left, _ in seen}) > 1
    assert {flip for *_, flip in seen} == {False, True}


def test_a_data_dir_that_the_data_set_never_reads_is_refused_before_ray(tmp_path, capsys):
    from raysim.cli import main

    runs = tmp_path / "runs"
    argv = ["run", "--num-nodes", "2", "--data-dir", str(tmp_path / "cars"), "--run-dir", str(runs)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"data_dir {tmp_path / 'cars'} is read only by dataset imagefolder" in err
    assert "add --dataset imagefolder" in err and "Traceback" not in err
    assert not runs.exists(), "refused before the run directory is made"
    # with the data set that reads it, the folder itself is checked instead
    assert main([*argv, "--dataset", "imagefolder"]) == 2
    assert "does not exist" in capsys.readouterr().err
    # raysim fit's trials share one Ray: refused before it starts, too
    assert main(["fit", "--data-dir", str(tmp_path / "cars")]) == 2
    assert "is read only by dataset imagefolder" in capsys.readouterr().err
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
