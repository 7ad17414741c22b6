import dataclasses

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


def test_attack_labels_are_unique_per_attack():
    base = AttackConfig()
    variants = [base, dataclasses.replace(base, random_start=False),
                dataclasses.replace(base, restarts=2), dataclasses.replace(base, steps=8),
                dataclasses.replace(base, alpha=0.1000001), dataclasses.replace(base, eps=0.2),
                dataclasses.replace(base, name="fgsm"), dataclasses.replace(base, name="autoattack")]
    assert len({v.label for v in variants}) == len(variants)
    assert "no random start" in variants[1].label


def test_evaluate_keeps_both_or_refuses_duplicates(lenet, batch):
    images, labels = batch
    a = AttackConfig(steps=1)
    b = dataclasses.replace(a, random_start=False)
    result = rvi.evaluate(lenet, images, labels, [a, b])
    assert {a.label, b.label} <= set(result) and len(result) == 4
    with pytest.raises(ValueError, match="attacks entries 0 and 1 make the same attack"):
        rvi.evaluate(lenet, images, labels, [a, a])
    with pytest.raises(ValueError, match="attacks entry 0 must be an AttackConfig, got 'pgd'"):
        rvi.evaluate(lenet, images, labels, ["pgd"])


@pytest.mark.parametrize("call, message", [
    (lambda m, x: rvi.predict(m, x * 2), r"images must be in \[0, 1\]"),
    (lambda m, x: rvi.predict(m, x, batch_size=0), "batch_size must be an integer >= 1, got 0"),
    (lambda m, x: rvi.predict("model", x), "model must be a torch.nn.Module, got str"),
])
def test_predict_bad_arguments(lenet, batch, call, message):
    with pytest.raises(ValueError, match=message):
        call(lenet, batch[0])
