import numpy as np
import pytest
import torch
from torch import nn

import rvi
from rvi.attacks import adversarial as attacks
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


@pytest.mark.parametrize("config", [
    AttackConfig(name="fgsm", eps=0.1), AttackConfig(eps=0.1, alpha=0.05, steps=3),
    AttackConfig(eps=0.02, alpha=0.01, steps=3, restarts=3),
    AttackConfig(eps=0.5, alpha=0.2, steps=2, norm="L2"),
    AttackConfig(eps=0.5, alpha=0.2, steps=2, restarts=2, norm="L2")])
def test_attacking_in_parts_equals_one_call(lenet, batch, config):
    """How a rank attacks its shard (rvi.evaluate and the benchmark under torchrun): the parts,
    joined, are one call's images. With restarts (noise for the survivors only) and L2 (noise
    drawn per batch, which rvi.attack cannot skip: it refuses an offset) the later parts attack
    from image 0."""
    images, labels = batch
    whole = rvi.attack(lenet, images, labels, config, batch_size=5, seed=3)
    parts = [attacks.attack_part(lenet, images, labels, part, config, batch_size=5, seed=3)
             for part in (slice(0, 10), slice(10, 10), slice(10, len(images)))]
    assert [len(p) for p in parts] == [10, 0, len(images) - 10]
    assert torch.equal(torch.cat(parts), whole)


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

    monkeypatch.setattr(rvi.attacks.adversarial, "build_attack", failing_attack)
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


def _tiny_autoattack_setup(n: int = 20):
    """A 10-class MLP on 8x8 images and ``n`` images labelled with its own predictions."""
    generator = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator))
    images = torch.rand(n, 1, 8, 8, generator=generator)
    with torch.no_grad():
        labels = model(images).argmax(1)
    return model, images, labels


def _check_autoattack_repeatable(monkeypatch, n: int, chunk: int, eps: float, batch_sizes):
    monkeypatch.setattr(attacks, "AUTOATTACK_CHUNK", chunk)
    model, images, labels = _tiny_autoattack_setup(n)
    config = AttackConfig(name="autoattack", eps=eps)
    np.random.seed(123)
    numpy_state = np.random.get_state()
    torch_state = torch.get_rng_state()
    first = attacks.attack(model, images, labels, config, batch_size=batch_sizes[0], seed=1)
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1]) \
        and after[2:] == numpy_state[2:]
    second = attacks.attack(model, images, labels, config, batch_size=batch_sizes[1], seed=1)
    assert torch.equal(first, second)
    assert float((first - images).abs().max()) <= eps + 1e-6
    with torch.no_grad():
        return int((model(first).argmax(1) != labels).sum())


def test_autoattack_seeded_independent_of_batch_size_and_leaves_rngs(monkeypatch):
    # 12 images in chunks of 6; eps so large that APGD-CE fools all, so the rest never runs
    fooled = _check_autoattack_repeatable(monkeypatch, 12, 6, 0.4, (4, 100))
    assert fooled == 12


@pytest.mark.slow
def test_autoattack_with_every_sub_attack_is_repeatable(monkeypatch):
    # 20 images in chunks of 8, 8, 4; some survive, so APGD-T, FAB-T and Square run too
    # (Square's 5000 queries: seconds on an idle CPU, minutes on a loaded one)
    fooled = _check_autoattack_repeatable(monkeypatch, 20, 8, 0.15, (5, 100))
    assert 0 < fooled < 20


def test_build_attack_passes_seed_to_autoattack():
    model, _, _ = _tiny_autoattack_setup()
    config = AttackConfig(name="autoattack", eps=0.1)
    atk = attacks.build_attack(model, config, seed=7)
    assert {sub.seed for sub in atk._autoattack.attacks} == {7}
    assert attacks.autoattack_seed(7, 0) != attacks.autoattack_seed(7, 1)
    with pytest.raises(ValueError, match="seed"):
        attacks.build_attack(model, config, seed=-1)


@pytest.mark.parametrize("config", [AttackConfig(eps=1.0, alpha=0.4, steps=5, norm="L2"),
                                    AttackConfig(name="fgsm", eps=1.0, norm="L2"),
                                    AttackConfig(eps=1.0, alpha=0.4, steps=2, restarts=2,
                                                 norm="L2"),
                                    AttackConfig(name="autoattack", eps=0.5, norm="L2")])
def test_l2_adversarial_images_stay_in_their_ball_and_range(lenet, batch, config):
    """torchattacks' PGDL2 (PGD, and one step for the fast gradient method) and AutoAttack with
    norm L2 move each image at most eps in Euclidean length, and PGD uses most of it; an L-inf
    bound of 0.1 would not hold them (L2 eps 1.0 lets one pixel move by up to 1)."""
    images, labels = batch
    adversarial = rvi.attack(lenet, images[:6], labels[:6], config, batch_size=4)
    lengths = (adversarial - images[:6]).flatten(1).norm(dim=1)
    assert float(lengths.max()) <= config.eps * (1 + 1e-5)
    assert float(adversarial.min()) >= 0.0 and float(adversarial.max()) <= 1.0
    if config.name == "pgd":  # its steps reach the ball's edge
        assert float(lengths.max()) > 0.9 * config.eps
    if config.name == "fgsm":  # one step of length eps, shortened where pixels hit 0 or 1
        assert float(lengths.min()) > 0.5 * config.eps
    if config.name != "autoattack":
        assert float((adversarial - images[:6]).abs().max()) > 0.1  # not an L-inf 0.1 ball


def test_l2_attacks_are_built_by_torchattacks_and_labelled_apart(lenet):
    l2 = AttackConfig(eps=2.0, alpha=0.5, norm="L2")
    assert type(attacks.build_attack(lenet, l2)).__name__ == "PGDL2"
    assert type(attacks.build_attack(lenet, AttackConfig())).__name__ == "PGD"
    built = attacks.build_attack(lenet, AttackConfig(name="autoattack", eps=2.0, norm="L2"))
    assert (built.norm, built.eps) == ("L2", 2.0)
    assert l2.label == "PGD-7 L2 eps=2 alpha=0.5"
    assert AttackConfig().label == "PGD-7 eps=0.3 alpha=0.1"  # L-inf labels as before
    fgm = attacks.build_attack(lenet, AttackConfig(name="fgsm", eps=2.0, norm="L2"))
    assert (type(fgm).__name__, fgm.steps, fgm.alpha, fgm.random_start) == \
        ("PGDL2", 1, 2.0, False)
    assert AttackConfig(name="fgsm", eps=2.0, norm="L2").label == "FGM L2 eps=2"
    with pytest.raises(ValueError, match=r"eps must be in \(0.0, 1.0\], got 2.0"):
        AttackConfig(eps=2.0)  # an L-inf budget above the pixel range
    with pytest.raises(ValueError, match="sharding PGD-7 L2 eps=2 alpha=0.5 with a random start"):
        attacks.skip_random_starts(l2, 4, (1, 28, 28), "cpu")
