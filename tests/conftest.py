"""Shared fixtures: a seeded synthetic dataset and small models."""

import pytest
import torch

import rvi
from rvi.data import make_synthetic

# Two cores: keep intra-op threads small so parallel work does not oversubscribe.
torch.set_num_threads(2)


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
