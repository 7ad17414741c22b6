"""Guided Backprop's pre-flight: refuse a model that Captum's ``GuidedBackprop`` would explain
wrongly (an activation outside an ``nn.ReLU`` module, or a ReLU whose input tensor is used
elsewhere), naming the module and the problem. :func:`rvi.attribution.saliency.explain` runs it."""

from __future__ import annotations

import sys

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

#: Activation functions (by ``__name__``, trailing ``_`` removed) that Guided Backprop would pass
#: plain gradients through when they run outside an ``nn.ReLU`` module.
ACTIVATION_NAMES = frozenset({
    "relu", "relu6", "gelu", "silu", "elu", "selu", "celu", "leaky_relu", "prelu", "rrelu",
    "hardtanh", "hardswish", "hardsigmoid", "mish", "softplus", "sigmoid", "tanh", "logsigmoid",
    "glu", "threshold", "softsign", "tanhshrink", "softshrink", "hardshrink",
})


class _ActivationRecorder(TorchFunctionMode):
    """Records activation functions called while no ``nn.ReLU`` module is running."""

    def __init__(self, stack: list, found: list) -> None:
        super().__init__()
        self.stack, self.found = stack, found

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "").rstrip("_")
        if name in ACTIVATION_NAMES and not any(isinstance(m, nn.ReLU) for _, m in self.stack):
            where = self.stack[-1] if self.stack else ("<model>", None)
            self.found.append((name, where[0], type(where[1]).__name__ if where[1] is not None
                               else "forward", _call_site()))
        return func(*args, **(kwargs or {}))


def _call_site() -> str:
    """``module:line (function)`` of the innermost frame outside torch and this module: the code
    that called the activation function."""
    frame = sys._getframe(1)
    while frame is not None and (frame.f_globals.get("__name__") == __name__ or
                                 str(frame.f_globals.get("__name__")).split(".")[0] == "torch"):
        frame = frame.f_back
    if frame is None:
        return "an unknown place"
    return f"{frame.f_globals.get('__name__')}:{frame.f_lineno} ({_qualified_name(frame)})"


def _qualified_name(frame) -> str:
    """The qualified name of ``frame``'s function (``Net.forward``). Python 3.10's code objects
    lack ``co_qualname``: there a method's class is found in its ``self`` argument's MRO."""
    code = frame.f_code
    if hasattr(code, "co_qualname"):
        return code.co_qualname
    owner = frame.f_locals.get("self") if code.co_argcount else None
    for cls in type(owner).__mro__ if owner is not None else ():
        if getattr(cls.__dict__.get(code.co_name), "__code__", None) is code:
            return f"{cls.__qualname__}.{code.co_name}"
    return code.co_name


def check_guided_backprop_model(model: nn.Module, example: torch.Tensor) -> None:
    """Refuse models whose Guided Backprop map Captum would compute wrongly, without a warning.

    One forward pass on ``example`` records (a) every activation function (``relu``, ``gelu``,
    ``sigmoid``, ... see :data:`ACTIVATION_NAMES`) that runs outside an ``nn.ReLU`` module, and
    (b) every ``nn.ReLU`` call whose input tensor is also used by another operation (Captum then
    clamps the gradient summed over all uses). Detection is by the functions called, so a
    nonlinearity written as arithmetic (``x * (x > 0)``, ``torch.maximum``, ``clamp``) is not
    seen. The model's mode and flags are left as they are.

    Shape:
        example: (n, C, H, W) float, already on the model's device (one image is enough).

    Raises:
        ValueError: naming the first offending function or module (for an activation function:
            the module and the line of code that calls it) and what to change.
    """
    stack: list = []
    found: list = []
    relu_inputs: list = []
    handles = []

    def push(name):
        def hook(module, args):
            stack.append((name, module))
            if isinstance(module, nn.ReLU) and args and isinstance(args[0], torch.Tensor):
                relu_inputs.append((name, args[0].grad_fn, args[0].output_nr))
        return hook

    def pop(module, args, output):
        if stack:
            stack.pop()

    try:
        for name, module in model.named_modules():
            handles.append(module.register_forward_pre_hook(push(name or "<model>")))
            handles.append(module.register_forward_hook(pop))
        with torch.enable_grad(), _ActivationRecorder(stack, found):
            start = example.detach().clone().requires_grad_(True)
            output = model(start * 1.0)
    finally:
        for handle in handles:
            handle.remove()
    if found:
        func, name, kind, site = found[0]
        others = list(dict.fromkeys(s for *_, s in found if s != site))
        others = f"; other calls at {', '.join(others)}" if others else ""
        raise ValueError(
            f"method 'guided_backprop' needs every nonlinearity to be an nn.ReLU module: Captum's "
            f"GuidedBackprop only rewrites the backward pass of nn.ReLU modules, but this model "
            f"calls {func!r} in module {name!r} ({kind}) at {site}{others}, which would silently "
            f"get the plain gradient. Replace F.relu/torch.relu/Tensor.relu calls with nn.ReLU "
            f"modules and other activations with nn.ReLU, or use method='saliency'")
    consumers = _count_consumers(output)
    for name, node, index in relu_inputs:
        if node is not None and consumers.get((node, index), 0) > 1:
            raise ValueError(
                f"method 'guided_backprop': the input of nn.ReLU {name!r} is also used by another "
                f"operation (a skip connection or a second ReLU). Captum clamps the gradient "
                f"summed over all uses of that tensor, which is not Guided Backprop; give the ReLU "
                f"its own input (e.g. relu(h.clone())) or use method='saliency'")


def _count_consumers(output) -> dict:
    """How many autograd edges point at each (grad_fn node, output index) of the graph."""
    roots = [t.grad_fn for t in (output if isinstance(output, (tuple, list)) else [output])
             if isinstance(t, torch.Tensor) and t.grad_fn is not None]
    counts: dict = {}
    seen = set()
    todo = list(roots)
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        for parent, index in node.next_functions:
            if parent is None:
                continue
            counts[(parent, index)] = counts.get((parent, index), 0) + 1
            todo.append(parent)
    return counts
