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


def test_synthetic_is_seeded_and_sized():
    data = rvi.load_dataset("synthetic", synthetic_size=(40, 20))
    _check_splits(data, 40, 20)
    assert torch.equal(data.train_images, rvi.load_dataset("synthetic",
                                                           synthetic_size=(40, 20)).train_images)
    with pytest.raises(ValueError, match="n_train must be an integer >= 10, got 3"):
        rvi.load_dataset("synthetic", synthetic_size=(3, 20))


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="dataset must be one of .*; got 'cifar10'"):
        rvi.load_dataset("cifar10")


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
