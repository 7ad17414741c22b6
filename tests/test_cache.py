"""The model cache key (rvi/models/cache.py): it fingerprints everything that shapes a model."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import rvi
from rvi.models import cache, train
from rvi.data import Dataset, make_synthetic


def test_same_name_different_content_gives_different_keys_and_paths(tmp_path):
    small, large = make_synthetic(40, 20), make_synthetic(60, 20)
    assert small.name == large.name == "synthetic"
    config = rvi.TrainConfig(epochs=1)
    assert cache.cache_key(small, "lenet", config) != cache.cache_key(large, "lenet", config)
    assert cache.cached_model_path(tmp_path, small, "lenet", config) \
        != cache.cached_model_path(tmp_path, large, "lenet", config)


def test_a_user_subset_named_like_a_builtin_dataset_gets_its_own_key():
    real = make_synthetic(40, 20)
    user = Dataset("synthetic", real.train_images[:30], real.train_labels[:30],
                   real.test_images, real.test_labels)
    relabelled = dataclasses.replace(real, train_labels=(real.train_labels + 1) % 10)
    config = rvi.TrainConfig(epochs=1)
    keys = {cache.cache_key(d, "lenet", config) for d in (real, user, relabelled)}
    assert len(keys) == 3
    assert user.info()["split"] == "user" and real.info()["split"]["n_train"] == 40


def test_key_changes_with_split_architecture_recipe_and_training_version(monkeypatch):
    data = make_synthetic(40, 20)
    config = rvi.TrainConfig(epochs=1)
    base = cache.cache_key(data, "lenet", config)
    assert cache.cache_key(dataclasses.replace(data, split={"other": 1}), "lenet", config) != base
    assert cache.cache_key(data, "madry-cnn", config) != base
    assert cache.cache_key(data, "lenet", dataclasses.replace(config, lr=0.01)) != base
    assert cache.cache_key(data, "lenet", config) == base  # deterministic
    assert cache.cache_key(data, "lenet", dataclasses.replace(
        config, adversarial=True, eps_warmup_epochs=0.5)) != cache.cache_key(
        data, "lenet", dataclasses.replace(config, adversarial=True))
    assert cache.cache_key(data, "lenet", dataclasses.replace(config, lr_warmup_share=0.15)) != base
    assert cache.cache_key(data, "lenet", dataclasses.replace(
        config, adversarial=True, threshold_start_epochs=1)) != cache.cache_key(
        data, "lenet", dataclasses.replace(config, adversarial=True))
    monkeypatch.setattr(cache, "TRAINING_VERSION", train.TRAINING_VERSION + 1)
    assert cache.cache_key(data, "lenet", config) != base


def test_fingerprint_is_content_hash():
    data = make_synthetic(40, 20)
    same = make_synthetic(40, 20)
    assert data.fingerprint() == same.fingerprint()
    images = data.train_images.clone()
    images[0, 0, 0, 0] = 1.0 - images[0, 0, 0, 0]
    assert dataclasses.replace(data, train_images=images).fingerprint() != data.fingerprint()
    # the test split does not shape the model
    assert dataclasses.replace(data, test_images=torch.zeros(20, 1, 28, 28)).fingerprint() \
        == data.fingerprint()


def test_cached_checkpoint_records_the_dataset(tmp_path):
    data = make_synthetic(40, 20)
    config = rvi.TrainConfig(epochs=1, batch_size=20)
    _, _, path = cache.get_trained_model(data, "lenet", config, tmp_path, quiet=True)
    recorded = rvi.load_checkpoint(path)["dataset"]
    assert recorded == data.info()


@pytest.mark.parametrize("call, message", [
    (lambda: cache.cache_key("mnist", "lenet", rvi.TrainConfig()), "data must be a Dataset"),
    (lambda: cache.cache_key(make_synthetic(20, 10), "lenet", {}), "config must be a TrainConfig"),
    (lambda: cache.cached_model_path(".", make_synthetic(20, 10), "vgg", rvi.TrainConfig()),
     "architecture must be one of lenet, madry-cnn, resnet18; got 'vgg'"),
])
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_the_automatic_recipe_shares_the_key_of_the_same_recipe_written_out():
    # one step an epoch: the automatic epochs rise to 4x the base
    data = {**make_synthetic(64, 16).info(), "name": "mnist-5k"}
    auto = rvi.TrainConfig(adversarial=True)
    key = cache.cache_key(data, "lenet", auto)  # LeNet on MNIST takes the threshold start: 12 x 4
    written = dataclasses.replace(auto, epochs=48, eps_warmup_epochs=12.0, threshold_start_epochs=24)
    assert key == cache.cache_key(data, "lenet", written)
    # 12 and 12.0 epochs of warm-up train alike
    assert key == cache.cache_key(data, "lenet", dataclasses.replace(written, eps_warmup_epochs=12))
    for other in ({"threshold_start_epochs": 0}, {"eps_warmup_epochs": 0.0}, {"epochs": 49}):
        assert key != cache.cache_key(data, "lenet", dataclasses.replace(written, **other))
    # the 40-epoch recipe without a start, x 4: for ResNet-18 (its first convolution has no
    # bias) and for data other than MNIST
    without = dataclasses.replace(auto, epochs=160, eps_warmup_epochs=20.0, threshold_start_epochs=0)
    assert cache.cache_key(data, "resnet18", auto) == cache.cache_key(data, "resnet18", without)
    fashion = {**data, "name": "fashion-mnist"}
    assert cache.cache_key(fashion, "lenet", auto) == cache.cache_key(fashion, "lenet", without)


def test_keys_of_models_cached_before_the_eps_warmup_field_are_unchanged():
    # computed by rvi 0.5.0, whose TrainConfig had neither eps_warmup_epochs nor lr_warmup_share
    data = make_synthetic(40, 20)
    assert cache.cache_key(data, "lenet", rvi.TrainConfig(epochs=1)) == "bdad3db7c6de0762"
    # rvi 0.5's automatic adversarial recipe: 80 epochs on 40 images, no warm-up
    assert cache.cache_key(data, "lenet", rvi.TrainConfig(adversarial=True, epochs=80)) == \
        "2086b8a9578bc762"


def test_keys_of_the_models_cached_for_the_committed_studies_are_pinned():
    """Every checkpoint in the model caches behind the committed studies and README's example
    (rvi 0.10-0.15's recipes; 31 files, the 6 Fashion-MNIST LeNets of rvi 0.15's fashion_study
    among them: tests/data/cached_model_keys.json holds each one's file name and the dataset
    info, architecture and recipe it records) keeps its key, so a change
    to how a recipe is resolved or keyed cannot orphan a trained model silently."""
    pinned = json.loads((Path(__file__).parent / "data" / "cached_model_keys.json").read_text())
    assert len(pinned) == 31
    for entry in pinned:
        key = entry["file"][:-len(".pt")].rsplit("-", 1)[1]
        config = rvi.TrainConfig.from_dict(entry["config"])
        assert cache.cache_key(entry["dataset"], entry["architecture"], config) == key, entry["file"]
        assert cache.cached_model_path("cache", entry["dataset"], entry["architecture"],
                                       config).name == entry["file"]
