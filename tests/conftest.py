"""Shared fixtures: a seeded synthetic dataset and small models."""

import importlib.metadata

import pytest
import torch

import rvi
from rvi.data import make_synthetic

# Two cores: keep intra-op threads small so parallel work does not oversubscribe; fewer when
# asked (OMP_NUM_THREADS=1 runs the suite on one thread, as CI does once).
torch.set_num_threads(min(2, torch.get_num_threads()))


def pytest_collection_modifyitems(config, items):
    """Slow (real-data) tests may take 4x the per-test time limit of setup.cfg."""
    limit = float(config.getini("timeout") or 0)
    for item in items:
        if limit and item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(4 * limit))


@pytest.fixture(scope="session")
def synthetic():
    """The seeded 10-class synthetic dataset (512 train, 256 test, 1x28x28 in [0, 1])."""
    return make_synthetic(512, 256)


@pytest.fixture
def lenet():
    """A LeNet with fixed random weights (seed 0), in eval mode."""
    torch.manual_seed(0)
    return rvi.build_model("lenet").eval()


@pytest.fixture
def batch(synthetic):
    """16 synthetic test images and their labels."""
    return synthetic.test_images[:16].clone(), synthetic.test_labels[:16].clone()


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory):
    """A finished 2-eps x 2-seed sweep on synthetic data (1 epoch each, 32 test images), run in
    this process with one torch thread; its models stay cached for other backends to load."""
    root = tmp_path_factory.mktemp("sweep")
    config = rvi.SweepConfig(
        dataset="synthetic", eps=(0.0, 0.1), seeds=(0, 1), epochs=1, n_test=32, eval_n=8,
        faithfulness_n=4, methods=("saliency",), metrics=("cosine", "deletion", "alignment_logit"),
        eval_attacks=("pgd", "fgsm"), robustness="pgd", bootstrap=100, workers=1, threads=1,
        cache_dir=str(root / "cache"), out_dir=str(root / "local"))
    return config, rvi.run_sweep(config)


@pytest.fixture
def hide_distribution(monkeypatch):
    """``hide_distribution(name)``: from then on ``importlib.metadata`` finds no distribution
    ``name``, as on a machine without it, whatever module of that name can be imported."""
    real, hidden = importlib.metadata.distribution, set()

    def distribution(name):
        if name in hidden:
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    return hidden.add
