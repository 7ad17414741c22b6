"""Run a user's model with a channels-last-fragile layer through rvi's public functions.

Run as ``python fragile_layout_worker.py THREADS``; it prints ``ok`` when every call returned.
The layer is torch's minimal crash case on the CPU: ``nn.Conv2d(4, 8, kernel_size=1, stride=2)``
on 32x32 inputs, whose channels-last backward pass crashes (one thread) or returns wrong weight
gradients or hangs (two threads) in oneDNN's 1x1 kernel on some CPUs (``docs/usage.md``, "Speed
on the CPU"). A forward pre-hook records the memory format of every input the layer sees; the
worker fails if rvi ever handed it a channels-last tensor.
"""

import sys

import torch
from torch import nn

import rvi
from rvi.config import AttackConfig, BenchmarkConfig, TrainConfig

ATTACK = AttackConfig(eps=8 / 255, alpha=2 / 255, steps=2)


def fragile_model(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(4, 8, kernel_size=1, stride=2), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10))


def main(threads: int) -> None:
    torch.set_num_threads(threads)
    seen = []

    def record(module, inputs):
        x = inputs[0]
        seen.append(x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())

    data = rvi.data.make_synthetic(64, 16, channels=3, size=32)
    models = {}
    for name, adversarial in (("natural", False), ("robust", True)):
        model = fragile_model(len(models))
        model[2].register_forward_pre_hook(record)
        config = TrainConfig(adversarial=adversarial, attack=ATTACK, epochs=1, batch_size=32)
        rvi.train_model(model, data.train_images, data.train_labels, config, quiet=True)
        models[name] = model.eval()
    x, y = data.test_images[:8], data.test_labels[:8]
    x_adv = rvi.attack(models["robust"], x, y, ATTACK)
    maps = rvi.explain(models["robust"], x_adv, "true", labels=y).maps
    rvi.score("cosine", maps, x)
    rvi.score("deletion", maps, x_adv, model=models["robust"], targets=y)
    config = BenchmarkConfig(attack=ATTACK, methods=("guided_backprop",),
                             metrics=("cosine", "deletion"), eval_attacks=("fgsm",),
                             controls=("random_weights",), bootstrap=100, faithfulness_n=4,
                             grid_images=2)
    rvi.compare(models, data.test_images, data.test_labels, config)
    if not seen or any(seen):
        raise SystemExit(f"the fragile layer saw channels-last inputs in {sum(seen)} of "
                         f"{len(seen)} calls")
    print("ok", len(seen), "calls")


if __name__ == "__main__":
    main(int(sys.argv[1]))
