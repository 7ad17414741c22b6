import pytest
import torch

import rvi
from rvi.config import AttackConfig


class Constant(torch.nn.Module):
    """Predicts class 3 whatever the input (but depends on it, so attacks have a gradient)."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(1e-3))

    def forward(self, x):
        logits = torch.zeros(len(x), 10)
        logits[:, 3] = 100.0
        return logits + self.scale * x.flatten(1).sum(1, keepdim=True)


def test_known_accuracy_of_a_constant_classifier():
    images = torch.rand(20, 1, 28, 28)
    labels = torch.tensor([3] * 5 + [1] * 15)
    result = rvi.evaluate(Constant(), images, labels, [AttackConfig(name="fgsm", eps=0.1)])
    assert result == {"n": 20, "clean": 0.25, "FGSM eps=0.1": 0.25}


def test_subset_and_attack_keys(lenet, batch):
    images, labels = batch
    attacks = [AttackConfig(name="fgsm", eps=0.2), AttackConfig(eps=0.2, alpha=0.1, steps=2)]
    result = rvi.evaluate(lenet, images, labels, attacks, n=8, batch_size=3)
    assert result["n"] == 8
    assert set(result) == {"n", "clean", "FGSM eps=0.2", "PGD-2 eps=0.2 alpha=0.1"}
    assert all(0.0 <= result[key] <= 1.0 for key in result if key != "n")
    expected = float((rvi.predict(lenet, images[:8]) == labels[:8]).float().mean())
    assert result["clean"] == expected
    with pytest.raises(ValueError, match="n must be at most the 16 images given, got 17"):
        rvi.evaluate(lenet, images, labels, n=17)
    with pytest.raises(ValueError, match="n must be an integer >= 1, got 0"):
        rvi.evaluate(lenet, images, labels, n=0)
