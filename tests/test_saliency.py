"""Tests for rvi/attribution/saliency.py: known answers, an independent Guided Backprop, guards, bad
inputs."""

import inspect
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rvi.attacks.accuracy import predict
from rvi.models.architectures import build_model
from rvi.attribution import saliency
from rvi._core.registry import METHOD_REGISTRY
from rvi.attribution.saliency import (IG_STEPS, METHODS, SMOOTHGRAD_SAMPLES, Attribution,
                                      check_guided_backprop_model, explain, images_per_call)
from reference_gbp import GuidedReLUFunction, reference_guided_backprop, with_functional_relu


# --- a hand-set network whose maps are computed by hand --------------------------------------

def hand_net() -> nn.Sequential:
    """Flatten -> Linear(4, 2) -> ReLU -> Linear(2, 2), no biases, weights set by hand."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False), nn.ReLU(),
                        nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0, -1.0, 0.0, 2.0], [-1.0, 1.0, 1.0, 0.0]]))
        net[3].weight.copy_(torch.tensor([[1.0, 2.0], [-1.0, 1.0]]))
    return net


# Image A: hidden pre-activations h = W1 x = (1.75, 0.75), both active.
# Image B: h = (1.4, -0.6), the second unit is off.
HAND_X = torch.tensor([[0.5, 0.25, 1.0, 0.75], [0.9, 0.1, 0.2, 0.3]]).reshape(2, 1, 2, 2)


def test_guided_backprop_known_answer_class_1():
    # Class 1: dlogit/dh = (-1, 1). GBP keeps positive gradients on active units.
    # A: (0, 1) -> W1^T (0, 1) = (-1, 1, 1, 0).  B: (0, 1) * (1, 0) = 0 -> an all-zero map.
    result = explain(hand_net(), HAND_X, torch.tensor([1, 1]), absolute=False)
    expected = torch.tensor([[-1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]).reshape(2, 1, 2, 2)
    torch.testing.assert_close(result.maps, expected)
    assert result.n_zero == 1 and result.zero_maps.tolist() == [False, True]
    absolute = explain(hand_net(), HAND_X, torch.tensor([1, 1]))
    torch.testing.assert_close(absolute.maps, expected.abs())


def test_plain_gradient_known_answer_differs_from_guided():
    # Plain gradient, class 1: A: W1^T (-1, 1) = (-2, 2, 1, -2); B: W1^T (-1, 0) = (-1, 1, 0, -2).
    result = explain(hand_net(), HAND_X, torch.tensor([1, 1]), "saliency", absolute=False)
    expected = torch.tensor([[-2.0, 2.0, 1.0, -2.0], [-1.0, 1.0, 0.0, -2.0]]).reshape(2, 1, 2, 2)
    torch.testing.assert_close(result.maps, expected)


def test_guided_backprop_known_answer_class_0():
    # Class 0: dlogit/dh = (1, 2). A: (1, 2) -> W1^T (1, 2) = (-1, 1, 2, 2).
    # B: (1, 0) -> W1^T (1, 0) = (1, -1, 0, 2).
    result = explain(hand_net(), HAND_X, torch.tensor([0, 0]), absolute=False)
    expected = torch.tensor([[-1.0, 1.0, 2.0, 2.0], [1.0, -1.0, 0.0, 2.0]]).reshape(2, 1, 2, 2)
    torch.testing.assert_close(result.maps, expected)


def test_guided_backprop_matches_independent_reference_on_lenet(lenet, batch):
    images, labels = batch
    result = explain(lenet, images, "true", labels=labels, absolute=False)
    reference = reference_guided_backprop(lenet, images, labels).sum(1, keepdim=True)
    torch.testing.assert_close(result.maps, reference, rtol=1e-4, atol=1e-7)
    assert result.target_kind == "true" and torch.equal(result.target, labels)
    # and differs from the plain gradient
    plain = explain(lenet, images, "true", "saliency", labels=labels, absolute=False)
    assert not torch.allclose(plain.maps, result.maps)


def test_reused_relu_module_gives_same_maps_as_distinct_ones(lenet, batch):
    images, _ = batch
    shared_relu = nn.ReLU()
    shared = nn.Sequential(*[shared_relu if isinstance(m, nn.ReLU) else m for m in lenet]).eval()
    assert sum(isinstance(m, nn.ReLU) for m in shared.modules()) == 1
    distinct = explain(lenet, images, "predicted")
    reused = explain(shared, images, "predicted")
    torch.testing.assert_close(reused.maps, distinct.maps)


def test_inplace_relu_gives_same_maps(lenet, batch):
    images, _ = batch
    inplace = nn.Sequential(*[nn.ReLU(inplace=True) if isinstance(m, nn.ReLU) else m
                              for m in lenet]).eval()
    torch.testing.assert_close(explain(inplace, images, "predicted").maps,
                               explain(lenet, images, "predicted").maps)


# --- the Guided Backprop pre-flight check -----------------------------------------------------

class _Functional(nn.Module):
    def __init__(self, activation):
        super().__init__()
        self.a, self.b = nn.Linear(16, 8), nn.Linear(8, 3)
        self.activation = activation

    def forward(self, x):
        return self.b(self.activation(self.a(x.flatten(1))))


class _Skip(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.relu, self.b = nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)

    def forward(self, x):
        h = self.a(x.flatten(1))
        return self.b(self.relu(h) + h)


class _CloneSkip(_Skip):
    def forward(self, x):
        h = self.a(x.flatten(1))
        return self.b(self.relu(h.clone()) + h)


SMALL_X = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("activation, name", [
    (F.relu, "'relu'"), (torch.relu, "'relu'"), (lambda t: t.relu(), "'relu'"),
    (nn.GELU(), "'gelu'"), (nn.SiLU(), "'silu'"), (torch.sigmoid, "'sigmoid'"),
    (nn.LeakyReLU(), "'leaky_relu'"), (torch.tanh, "'tanh'"),
])
def test_guided_backprop_refuses_non_module_relu(activation, name):
    torch.manual_seed(0)
    model = _Functional(activation)
    with pytest.raises(ValueError, match=f"nn.ReLU module.*calls {name}"):
        explain(model, SMALL_X, "predicted")
    # other methods do not depend on nn.ReLU modules
    assert explain(model, SMALL_X, "predicted", "saliency").maps.shape == (3, 1, 4, 4)


def test_guided_backprop_refuses_relu_input_used_twice():
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="also used by another operation"):
        explain(_Skip(), SMALL_X, "predicted")
    # with the ReLU given its own input, Captum's GBP equals the per-path definition
    model = _CloneSkip()
    result = explain(model, SMALL_X, torch.tensor([0, 1, 2]), absolute=False)
    inputs = SMALL_X.clone().requires_grad_(True)
    h = model.a(inputs.flatten(1))
    out = model.b(GuidedReLUFunction.apply(h.clone()) + h)
    (grad,) = torch.autograd.grad(out.gather(1, torch.tensor([[0], [1], [2]])).sum(), inputs)
    torch.testing.assert_close(result.maps, grad)


# --- methods, targets, batching -----------------------------------------------------------------

def test_every_method_shapes_and_result_fields(lenet, batch):
    images, labels = batch
    for method in METHODS:
        result = explain(lenet, images[:4], "predicted", method, ig_steps=8, smoothgrad_samples=4)
        assert isinstance(result, Attribution)
        assert result.maps.shape == (4, 1, 28, 28) and result.maps.dtype == torch.float32
        assert (result.maps >= 0).all() and torch.isfinite(result.maps).all()
        assert result.method == method and result.absolute is True
        assert result.target_kind == "predicted"
        assert torch.equal(result.target, predict(lenet, images[:4]))
        assert torch.equal(result.predicted, result.target) and len(result) == 4


def test_methods_are_the_registered_objects():
    assert METHODS == METHOD_REGISTRY.names() == ("guided_backprop", "saliency",
                                                  "integrated_gradients", "smoothgrad")
    for name, method in METHOD_REGISTRY.items():
        assert method.attribute.__module__ == "rvi.attribution.saliency", name
        assert method.signed
        assert method.random_draws == (name == "smoothgrad")
    assert METHOD_REGISTRY["guided_backprop"].preflight is check_guided_backprop_model


def test_expansions_follow_explains_defaults():
    """Changing explain()'s IG steps or SmoothGrad samples default changes the expansion."""
    defaults = {k: p.default for k, p in inspect.signature(explain).parameters.items()}
    assert defaults["ig_steps"] == IG_STEPS == METHOD_REGISTRY["integrated_gradients"].expansion
    assert defaults["smoothgrad_samples"] == SMOOTHGRAD_SAMPLES \
        == METHOD_REGISTRY["smoothgrad"].expansion
    assert defaults["smoothgrad_noise"] == saliency.SMOOTHGRAD_NOISE
    for name, method in METHOD_REGISTRY.items():
        option = method.expansion_option
        assert option is None or defaults[option] == method.expansion, name
        assert option is None or getattr(saliency.Options(), option) == method.expansion, name
    assert [images_per_call(m, 250) for m in METHODS] == [250, 250, 5, 5]
    assert images_per_call("smoothgrad", 30) == 1 and images_per_call("saliency", 30) == 30
    with pytest.raises(ValueError, match="method must be one of guided_backprop, .*; got 'lrp'"):
        images_per_call("lrp", 250)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        images_per_call("saliency", 0)


@pytest.mark.parametrize("method, captum, kwargs, sizes", [
    ("integrated_gradients", "IntegratedGradients", {}, [2, 2, 1]),
    ("integrated_gradients", "IntegratedGradients", {"ig_steps": 20}, [5]),
    ("smoothgrad", "NoiseTunnel", {"smoothgrad_samples": 40}, [2, 2, 1]),
    ("saliency", "Saliency", {}, [5]),
])
def test_captum_calls_take_the_methods_images_per_call(lenet, batch, monkeypatch, method, captum,
                                                       kwargs, sizes):
    cls = getattr(saliency, captum)
    seen = []

    def spy(self, inputs, *args, **kw):
        seen.append(len(inputs))
        return torch.zeros_like(inputs)

    monkeypatch.setattr(cls, "attribute", spy)
    explain(lenet, batch[0][:5], "predicted", method, batch_size=100, **kwargs)
    assert seen == sizes
    spec = METHOD_REGISTRY[method]
    options = saliency.Options(**kwargs)
    assert min(5, spec.images_per_call(100, spec.expansion_for(options))) == sizes[0]


def test_given_target_kind(lenet, batch):
    images, _ = batch
    target = torch.arange(16) % 10
    result = explain(lenet, images, target)
    assert result.target_kind == "given" and torch.equal(result.target, target)


@pytest.mark.parametrize("method", ["guided_backprop", "saliency", "integrated_gradients"])
def test_batching_does_not_change_maps(lenet, batch, method):
    images, labels = batch[0][:8], batch[1][:8]
    whole = explain(lenet, images, "true", method, labels=labels, ig_steps=8)
    pieces = explain(lenet, images, "true", method, labels=labels, ig_steps=8, batch_size=24)
    torch.testing.assert_close(pieces.maps, whole.maps, rtol=1e-4, atol=1e-7)


def test_channel_reduction_on_color_images():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 5 * 5, 3)).eval()
    x = torch.rand(2, 3, 5, 5)
    target = torch.tensor([0, 2])
    inputs = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(inputs).gather(1, target[:, None]).sum(), inputs)
    signed = explain(model, x, target, "saliency", absolute=False).maps
    absolute = explain(model, x, target, "saliency").maps
    torch.testing.assert_close(signed, grad.sum(1, keepdim=True))
    torch.testing.assert_close(absolute, grad.abs().sum(1, keepdim=True))


def test_smoothgrad_seeded_small_noise_and_rng_untouched(lenet, batch):
    images, _ = batch
    state = torch.get_rng_state()
    first = explain(lenet, images[:4], "predicted", "smoothgrad", smoothgrad_samples=8)
    second = explain(lenet, images[:4], "predicted", "smoothgrad", smoothgrad_samples=8)
    assert torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(first.maps, second.maps)
    assert first.settings == {"smoothgrad_noise": 0.15, "smoothgrad_samples": 8, "seed": 0}
    tiny = explain(lenet, images[:4], "predicted", "smoothgrad", smoothgrad_noise=1e-7,
                   smoothgrad_samples=4, absolute=False)
    plain = explain(lenet, images[:4], "predicted", "saliency", absolute=False)
    torch.testing.assert_close(tiny.maps, plain.maps, rtol=1e-3, atol=1e-6)
    other = explain(lenet, images[:4], "predicted", "smoothgrad", smoothgrad_samples=8, seed=1)
    assert not torch.allclose(other.maps, first.maps)


def test_integrated_gradients_completeness(lenet, batch):
    images, labels = batch
    result = explain(lenet, images[:4], "true", "integrated_gradients", labels=labels[:4],
                     absolute=False, ig_steps=64)
    with torch.no_grad():
        gain = lenet(images[:4]).gather(1, labels[:4, None]).squeeze(1) \
            - lenet(torch.zeros_like(images[:4])).gather(1, labels[:4, None]).squeeze(1)
    torch.testing.assert_close(result.maps.flatten(1).sum(1), gain, rtol=0.02, atol=1e-3)
    assert result.settings == {"ig_steps": 64, "baseline": 0.0}


def test_integrated_gradients_baseline_equal_to_input_gives_zero(lenet, batch):
    images, _ = batch
    result = explain(lenet, images[:2], "predicted", "integrated_gradients", ig_steps=4,
                     baseline=images[:2])
    assert result.n_zero == 2


# --- model state --------------------------------------------------------------------------------

def _mixed_state(model):
    model.train()
    model[0].weight.requires_grad_(False)
    model[3].training = False
    return [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()]


def _state(model):
    return [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()]


@pytest.mark.parametrize("method", METHODS)
def test_model_state_restored(lenet, batch, method):
    before = _mixed_state(lenet)
    explain(lenet, batch[0][:2], "predicted", method, ig_steps=4, smoothgrad_samples=2)
    assert _state(lenet) == before
    assert all(p.grad is None for p in lenet.parameters())


def test_model_state_restored_after_error(lenet, batch):
    before = _mixed_state(lenet)
    with pytest.raises(ValueError, match="target"):
        explain(lenet, batch[0], torch.full((16,), 10))
    assert _state(lenet) == before

    class Exploding(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = lenet
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            if self.calls > 2:  # 1: predict, 2: pre-flight, 3: inside Captum with hooks set
                raise RuntimeError("boom")
            return self.net(x)

    wrapper = Exploding().train()
    wrapper.net[3].training = False
    before = _state(wrapper)
    with pytest.raises(RuntimeError, match="boom"):
        explain(wrapper, batch[0][:2], "predicted")
    assert _state(wrapper) == before
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in wrapper.modules())


def test_explain_uses_eval_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(16, 3)).train()
    first = explain(model, SMALL_X, "predicted", "saliency").maps
    second = explain(model, SMALL_X, "predicted", "saliency").maps
    torch.testing.assert_close(first, second)
    assert model.training


# --- warnings -------------------------------------------------------------------------------------

def test_only_captums_hook_warning_is_filtered(lenet):
    class Warns(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = lenet

        def forward(self, x):
            warnings.warn("a warning from the user's model", UserWarning)
            return self.net(x)

    with pytest.warns(UserWarning, match="from the user's model"):
        explain(Warns(), torch.rand(1, 1, 28, 28), "predicted")


# --- bad inputs -------------------------------------------------------------------------------

@pytest.mark.parametrize("x, message", [
    (torch.rand(2, 28, 28), "x must be a float tensor of shape"),
    (torch.rand(2, 1, 28, 28).long(), "x must be a float tensor of shape"),
    ("image", "x must be a float tensor of shape"),
    (torch.full((1, 1, 28, 28), math.nan), "x must be finite"),
    (torch.full((1, 1, 28, 28), 1.5), r"x must be in \[0, 1\]"),
    (torch.full((1, 1, 28, 28), -0.1), r"x must be in \[0, 1\]"),
    (torch.zeros(0, 1, 28, 28), "at least one image"),
])
def test_bad_images(lenet, x, message):
    with pytest.raises(ValueError, match=message):
        explain(lenet, x, "predicted")


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "gradcam"}, "method must be one of guided_backprop, .*; got 'gradcam'"),
    ({"target": "label"}, "target must be one of true, predicted .*; got 'label'"),
    ({"target": 3}, "target must be one of .*; got 3"),
    ({"target": "true"}, "target='true' needs labels"),
    ({"target": torch.zeros(4)}, r"target must be an int64 tensor of shape \(4,\)"),
    ({"target": torch.zeros(3, dtype=torch.int64)}, r"target must be an int64 tensor of shape"),
    ({"target": torch.full((4,), 10)}, r"target must be classes in \[0, 10\), got .*10"),
    ({"target": torch.full((4,), -1)}, r"target must be classes in \[0, 10\)"),
    ({"target": "true", "labels": torch.full((4,), 12)}, r"labels must be classes in \[0, 10\)"),
    ({"target": "true", "labels": torch.zeros(3, dtype=torch.int64)}, "labels must be"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ({"ig_steps": 1.5}, "ig_steps must be an integer >= 1, got 1.5"),
    ({"smoothgrad_samples": 0}, "smoothgrad_samples must be"),
    ({"smoothgrad_noise": 0.0}, "smoothgrad_noise must be a positive finite number, got 0.0"),
    ({"smoothgrad_noise": math.inf}, "smoothgrad_noise must be"),
    ({"absolute": "yes"}, "absolute must be True or False, got 'yes'"),
    ({"seed": -1}, "seed must be an integer >= 0, got -1"),
    ({"baseline": 2.0}, r"baseline must be in \[0, 1\], got 2.0"),
    ({"baseline": torch.zeros(1, 2, 2)}, "baseline must have shape"),
    ({"baseline": torch.full((1, 28, 28), math.nan)}, "baseline must be finite"),
])
def test_bad_arguments(lenet, kwargs, message):
    kwargs = {"target": "predicted", **kwargs}
    with pytest.raises(ValueError, match=message):
        explain(lenet, torch.rand(4, 1, 28, 28), **kwargs)


def test_model_must_return_2d_logits():
    model = nn.Sequential(nn.Conv2d(1, 2, 3)).eval()
    with pytest.raises(ValueError, match=r"model must return \(N, K\) logits"):
        explain(model, torch.rand(2, 1, 8, 8), "predicted", "saliency")


@pytest.mark.parametrize("name", ["lenet", "madry-cnn", "hand"])
def test_the_preflight_accepts_each_model_and_refuses_its_functional_relu_twin(name):
    """Each built model passes the preflight; the same model with one ReLU called as a function
    (Guided Backprop would be wrong there) is refused, so passing is not vacuous."""
    torch.manual_seed(0)
    if name == "hand":
        model, x = hand_net(), HAND_X[:1]
    else:
        model, x = build_model(name), torch.rand(1, 1, 28, 28)
    check_guided_backprop_model(model, x)
    with pytest.raises(ValueError, match="nn.ReLU module.*calls 'relu'"):
        check_guided_backprop_model(with_functional_relu(model), x)
