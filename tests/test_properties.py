"""Property-based tests (hypothesis): metric invariants, config validation and batch sizes."""

import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rvi.metrics import basic as metrics
from rvi.config import AttackConfig, BenchmarkConfig, TrainConfig
from rvi._core.registry import METHOD_REGISTRY, METRIC_REGISTRY
from rvi.attribution.saliency import images_per_call

FAST = settings(max_examples=50, deadline=None)

pixels = st.lists(st.floats(0.0, 1.0, allow_nan=False, width=32), min_size=16, max_size=16)
scales = st.floats(1e-3, 1e3, allow_nan=False)


def _tensor(values):
    return torch.tensor(values, dtype=torch.float32).reshape(1, 1, 4, 4)


@FAST
@given(pixels, pixels, scales)
def test_cosine_and_foreground_mass_are_scale_invariant_and_bounded(s, x, scale):
    s, x = _tensor(s), _tensor(x)
    for metric in (metrics.cosine, metrics.foreground_mass):
        value = metric(s, x)
        assert 0.0 <= float(value) <= 1.0 + 1e-6
        assert torch.allclose(metric(s * scale, x), value, atol=1e-5)


@FAST
@given(pixels, pixels, scales)
def test_inner_is_linear_in_the_maps_scale(s, x, scale):
    s, x = _tensor(s), _tensor(x)
    assert torch.allclose(metrics.inner(s * scale, x), scale * metrics.inner(s, x),
                          rtol=1e-4, atol=1e-4)
    assert float(metrics.inner(s, x)) >= 0.0


@FAST
@given(pixels)
def test_zero_maps_score_zero(x):
    x = _tensor(x)
    zero = torch.zeros_like(x)
    for kind in ("inner", "cosine", "foreground_mass"):
        assert float(metrics.cleanliness(zero, x, kind)) == 0.0


FIELD_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 50),
                         st.floats(-2.0, 20.0), st.just(math.nan), st.text(max_size=8),
                         st.sampled_from(["pgd", "fgsm", "autoattack", "adam", "sgd", "onecycle",
                                          "cosine", "constant", "lenet", "synthetic", "true"]),
                         st.tuples(st.integers(-1, 3)))


def _check_construct_or_named_error(cls, name, value):
    try:
        cls(**{name: value})
    except ValueError as err:
        # the message names the field (nested configs: the field or its "attack" prefix)
        words = {name, name.replace("_", " "), f"{name} entry", f"attack {name}"}
        assert any(word in str(err) for word in words), (name, value, str(err))


@pytest.mark.parametrize("cls", [AttackConfig, TrainConfig, BenchmarkConfig])
@FAST
@given(data=st.data())
def test_random_field_values_construct_or_name_the_field(cls, data):
    name = data.draw(st.sampled_from([f.name for f in dataclasses.fields(cls)]))
    _check_construct_or_named_error(cls, name, data.draw(FIELD_VALUES))


@FAST
@given(eps=st.floats(allow_nan=True, allow_infinity=True))
def test_eps_outside_the_unit_interval_is_refused(eps):
    ok = not math.isnan(eps) and 0.0 < eps <= 1.0
    if ok:
        AttackConfig(eps=eps)
    else:
        with pytest.raises(ValueError, match="eps must be in"):
            AttackConfig(eps=eps)


@FAST
@given(batch_size=st.integers(1, 5000))
def test_images_per_call_fill_but_never_overfill_a_batch(batch_size):
    """A model call holds at most max(batch_size, expansion) inputs, and the next image would
    not fit; metrics without their own block contribute batch_size to shard alignment."""
    for name, method in METHOD_REGISTRY.items():
        per_call = images_per_call(name, batch_size)
        assert per_call == method.images_per_call(batch_size) >= 1
        assert per_call * method.expansion <= max(batch_size, method.expansion)
        assert (per_call + 1) * method.expansion > batch_size
    for name, metric in METRIC_REGISTRY.items():
        block = metrics.metric_images_per_call(name, batch_size)
        assert 1 <= block <= batch_size
        assert block == (metric.images_per_call(batch_size) if metric.align_shards else batch_size)
        if metric.expansion:
            assert metric.images_per_call(batch_size) * metric.expansion \
                <= max(batch_size, metric.expansion)
