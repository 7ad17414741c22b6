import pytest
import torch

import rvi
from rvi.config import AttackConfig


@pytest.mark.parametrize("config", [AttackConfig(name="fgsm", eps=0.1),
                                    AttackConfig(eps=0.1, alpha=0.05, steps=3),
                                    AttackConfig(eps=0.1, alpha=0.05, steps=2, restarts=2)])
def test_adversarial_images_stay_in_budget_and_range(lenet, batch, config):
    images, labels = batch
    adversarial = rvi.attack(lenet, images, labels, config, batch_size=5)
    assert adversarial.shape == images.shape
    assert float((adversarial - images).abs().max()) <= config.eps + 1e-6
    assert float(adversarial.min()) >= 0.0 and float(adversarial.max()) <= 1.0
    assert not torch.equal(adversarial, images)


def test_attack_works_under_no_grad_and_restores_mode(lenet, batch):
    images, labels = batch
    lenet.train()
    with torch.no_grad():
        adversarial = rvi.attack(lenet, images, labels, AttackConfig(eps=0.1, steps=2))
    assert lenet.training and all(m.training for m in lenet.modules())
    assert float((adversarial - images).abs().max()) > 0


def test_seeded_random_start_is_repeatable_and_leaves_global_rng(lenet, batch):
    images, labels = batch
    config = AttackConfig(eps=0.2, alpha=0.05, steps=1)
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = rvi.attack(lenet, images, labels, config, seed=7)
    assert torch.equal(torch.rand(1), expected_next)
    assert torch.equal(first, rvi.attack(lenet, images, labels, config, seed=7))
    assert not torch.equal(first, rvi.attack(lenet, images, labels, config, seed=8))


def test_mode_restored_when_attack_fails(lenet, batch, monkeypatch):
    images, labels = batch

    def failing_attack(model, config, num_classes=10):
        def run(x, y):
            model.eval()  # as torchattacks does, then fails before switching back
            raise RuntimeError("attack failed")
        return run

    monkeypatch.setattr(rvi.attacks, "build_attack", failing_attack)
    lenet.train()
    with pytest.raises(RuntimeError, match="attack failed"):
        rvi.attack(lenet, images, labels, AttackConfig(steps=1))
    assert lenet.training


@pytest.mark.parametrize("bad", [99, -1])
def test_labels_outside_the_models_classes_are_refused_at_the_door(lenet, batch, bad):
    images, labels = batch
    labels = labels.clone()
    labels[1] = bad
    low, high = min(int(labels.min()), bad), max(int(labels.max()), bad)
    with pytest.raises(ValueError, match=rf"labels must be in \[0, 10\), got values in \[{low}, {high}\]"):
        rvi.attack(lenet, images, labels, AttackConfig(steps=1))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\)"):
        rvi.evaluate(lenet, images, labels)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\)"):
        rvi.train_model(lenet, images, labels, rvi.TrainConfig(epochs=1), quiet=True)


@pytest.mark.parametrize("images, labels, message", [
    (torch.rand(4, 1, 28, 28) * 2, torch.zeros(4, dtype=torch.long), "images must be in [0, 1]"),
    (torch.full((4, 1, 28, 28), float("nan")), torch.zeros(4, dtype=torch.long),
     "images must be finite"),
    (torch.rand(4, 28, 28), torch.zeros(4, dtype=torch.long), "images must be a float tensor of shape"),
    (torch.rand(0, 1, 28, 28), torch.zeros(0, dtype=torch.long), "images must hold at least one"),
    (torch.rand(4, 1, 28, 28), torch.zeros(3, dtype=torch.long), "labels must be an int64 tensor"),
    (torch.rand(4, 1, 28, 28), torch.zeros(4), "labels must be an int64 tensor"),
])
def test_bad_inputs(lenet, images, labels, message):
    with pytest.raises(ValueError) as err:
        rvi.attack(lenet, images, labels, AttackConfig())
    assert message in str(err.value)


def test_bad_batch_size(lenet, batch):
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        rvi.attack(lenet, *batch, AttackConfig(), batch_size=0)
