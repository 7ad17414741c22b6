"""An independent Guided Backprop for tests: plain autograd through a custom ReLU Function, no
Captum. Springenberg et al. 2015: at every ReLU only positive gradients pass, and only where the
ReLU's input was positive."""

import copy

import torch
from torch import nn


class GuidedReLUFunction(torch.autograd.Function):
    """ReLU whose backward passes only positive gradients at positive inputs."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad.clamp(min=0) * (x > 0).to(grad.dtype)


class GuidedReLU(nn.Module):
    def forward(self, x):
        return GuidedReLUFunction.apply(x)


def reference_guided_backprop(model: nn.Module, x: torch.Tensor, target: torch.Tensor):
    """Signed (N, C, H, W) Guided Backprop of ``model`` (eval mode) by plain autograd on a copy
    whose every nn.ReLU is replaced by :class:`GuidedReLU`."""
    guided = copy.deepcopy(model).eval()
    replaced = 0
    for module in list(guided.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(module, name, GuidedReLU())
                replaced += 1
    assert replaced == sum(isinstance(m, nn.ReLU) for m in model.modules()) > 0
    x = x.detach().clone().requires_grad_(True)
    guided(x).gather(1, target[:, None]).sum().backward()
    return x.grad


class FunctionalReLU(nn.Module):
    """A ReLU layer that calls ``torch.relu``: Captum's GuidedBackprop, which hooks nn.ReLU
    modules, would pass its gradient unguided."""

    def forward(self, x):
        return torch.relu(x)


def with_functional_relu(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose first nn.ReLU module is a :class:`FunctionalReLU`."""
    twin = copy.deepcopy(model)
    name = next(name for name, module in twin.named_modules() if isinstance(module, nn.ReLU))
    parent, _, child = name.rpartition(".")
    setattr(twin.get_submodule(parent), child, FunctionalReLU())
    return twin
