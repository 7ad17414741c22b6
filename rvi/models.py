"""Named architectures for [0, 1] images (no normalization anywhere).

Every activation is its own ``nn.ReLU`` module, which Captum's Guided Backprop needs: it only
rewrites the backward pass of ``nn.ReLU`` modules.
"""

from __future__ import annotations

from torch import nn

from ._checks import MODELS, check_int


def lenet(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """The seed study's LeNet for 28x28 inputs: (N, C, 28, 28) -> (N, num_classes) logits."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, num_classes),
    )


def madry_cnn(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """Madry et al. (2018)'s MNIST CNN for 28x28 inputs: 2 conv(5x5)+maxpool blocks, FC 1024."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(7 * 7 * 64, 1024), nn.ReLU(),
        nn.Linear(1024, num_classes),
    )


_BUILDERS = {"lenet": lenet, "madry-cnn": madry_cnn}


def build_model(name: str, in_channels: int = 1, num_classes: int = 10) -> nn.Module:
    """Build a freshly initialized model by name (``lenet`` or ``madry-cnn``).

    Initialization uses the global torch RNG; seed it (``torch.manual_seed``) for repeatability.
    """
    if name not in _BUILDERS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}; got {name!r}")
    for arg, value in (("in_channels", in_channels), ("num_classes", num_classes)):
        check_int(arg, value, 1)
    return _BUILDERS[name](in_channels, num_classes)
