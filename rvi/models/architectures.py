"""Named architectures for [0, 1] images.

Every activation is its own ``nn.ReLU`` module, which Captum's Guided Backprop needs: it only
rewrites the backward pass of ``nn.ReLU`` modules. LeNet and the Madry CNN see raw [0, 1] pixels;
the ResNet normalizes inside the model (:class:`Normalize`), so attacks and attributions still
work on [0, 1] images.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from .._core.catalog import MODELS
from .._core.checks import check_int
from .._core.modelstate import prefer_channels_last

#: Per-channel mean and std of the CIFAR-10 training images (the ResNet's default normalization
#: for 3-channel inputs; other channel counts use 0.5 and 0.25 per channel).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
#: Channels of the four stages of :func:`resnet18` in units of ``width``.
RESNET_STAGES = (1, 2, 4, 8)


def lenet(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """The seed study's LeNet for 28x28 inputs: (N, C, 28, 28) -> (N, num_classes) logits.
    Marked for channels-last on the CPU (:func:`rvi.prefer_channels_last`)."""
    return prefer_channels_last(nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, num_classes),
    ))


def madry_cnn(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """Madry et al. (2018)'s MNIST CNN for 28x28 inputs: 2 conv(5x5)+maxpool blocks, FC 1024.
    Marked for channels-last on the CPU, as :func:`lenet`."""
    return prefer_channels_last(nn.Sequential(
        nn.Conv2d(in_channels, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(7 * 7 * 64, 1024), nn.ReLU(),
        nn.Linear(1024, num_classes),
    ))


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with mean and std as buffers (not parameters, so
    layer randomization and optimizers leave them alone).

    Shape:
        (N, C, H, W) float in [0, 1] -> (N, C, H, W).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or any(v <= 0 for v in std):
            raise ValueError(f"std must be positive and as long as mean, got mean {mean!r} "
                             f"and std {std!r}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class PreActBlock(nn.Module):
    """A pre-activation basic block (He et al. 2016, "Identity mappings"):
    ``BN-ReLU-conv3x3-BN-ReLU-conv3x3`` plus the block input (identity), or, where the shape
    changes, a 1x1 convolution of the pre-activated input (as in the paper).

    Guided Backprop stays exact: each ReLU is its own module, used once, and its input (a
    batch-norm output) feeds nothing else; the skip path takes the block input or the ReLU's
    *output*, whose gradients are summed before the ReLU's backward runs.

    Shape:
        (N, in_planes, H, W) -> (N, planes, H / stride, W / stride).
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut: Optional[nn.Conv2d] = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu1(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv2(self.relu2(self.bn2(self.conv1(pre))))
        return out + skip


class PreActResNet(nn.Module):
    """Normalization, a 3x3 stem, four stages of :class:`PreActBlock`, then BN-ReLU, global
    average pooling and a linear classifier.

    Shape:
        (N, C, H, W) float in [0, 1] (H, W >= 8; 32x32 for CIFAR-10) -> (N, num_classes) logits.
    """

    def __init__(self, blocks: Sequence[int], in_channels: int, num_classes: int, width: int,
                 mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        stages, planes = [], width
        for index, (count, factor) in enumerate(zip(blocks, RESNET_STAGES)):
            out = width * factor
            layers = [PreActBlock(planes, out, 1 if index == 0 else 2)]
            layers += [PreActBlock(out, out) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layers))
            planes = out
        self.stages = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stages(self.stem(self.normalize(x)))
        return self.fc(self.flatten(self.pool(self.relu(self.bn(h)))))


def resnet18(in_channels: int = 3, num_classes: int = 10, width: int = 64) -> PreActResNet:
    """Pre-activation ResNet-18 (He et al. 2016) for 32x32 images: 2-2-2-2 basic blocks with
    ``width``, 2, 4 and 8 times ``width`` channels (64: the standard 11.2M-parameter network; a
    width of 4-8 makes a tiny one for tests). Normalizes inside: CIFAR-10 statistics for 3
    channels, mean 0.5 and std 0.25 per channel otherwise.

    Shape:
        (N, in_channels, H, W) float in [0, 1] -> (N, num_classes) logits.
    """
    if in_channels == 3:
        mean, std = CIFAR10_MEAN, CIFAR10_STD
    else:
        mean, std = (0.5,) * in_channels, (0.25,) * in_channels
    return PreActResNet((2, 2, 2, 2), in_channels, num_classes, width, mean, std)


_BUILDERS = {"lenet": lenet, "madry-cnn": madry_cnn, "resnet18": resnet18}
#: Architectures whose size ``build_model(..., width=)`` sets.
WIDTH_MODELS = ("resnet18",)


def build_model(name: str, in_channels: int = 1, num_classes: int = 10, *,
                width: Optional[int] = None) -> nn.Module:
    """Build a freshly initialized model by name (one of :data:`rvi.MODELS`).

    Args:
        name: ``lenet``, ``madry-cnn`` or ``resnet18``.
        in_channels: input channels.
        num_classes: classes (the width of the output).
        width: channels of the first stage, for ``resnet18`` only (default 64).

    Initialization uses the global torch RNG; seed it (``torch.manual_seed``) for repeatability.

    Raises:
        ValueError: an unknown name, a bad count, or ``width`` for a model without one.
    """
    if name not in _BUILDERS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}; got {name!r}")
    for arg, value in (("in_channels", in_channels), ("num_classes", num_classes)):
        check_int(arg, value, 1)
    if width is None:
        return _BUILDERS[name](in_channels, num_classes)
    if name not in WIDTH_MODELS:
        raise ValueError(f"width applies to {', '.join(WIDTH_MODELS)} only, got width={width!r} "
                         f"for model {name!r}")
    check_int("width", width, 1)
    return _BUILDERS[name](in_channels, num_classes, width)
