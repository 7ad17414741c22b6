"""The first-layer mechanism: threshold channels found from weights and responses, and maps
split by first-layer channel into parts that sum to the whole map."""

import math

import pytest
import torch
from torch import nn

import rvi
from rvi.metrics import mechanism

THRESHOLD = 0.3


def planted_lenet(seed=0):
    """A LeNet whose first-layer channel 0 is a single-pixel threshold opening at 0.3 (centre
    weight 1.2, bias -0.36), channel 1 a smooth 5x5 blur with bias -0.1, the others as
    initialized (random)."""
    torch.manual_seed(seed)
    model = rvi.build_model("lenet").eval()
    conv = mechanism.first_convolution(model)
    with torch.no_grad():
        conv.weight[0].zero_()
        conv.weight[0, 0, 2, 2] = 1.2
        conv.bias[0] = -THRESHOLD * 1.2
        grid = torch.arange(5, dtype=torch.float32) - 2
        blur = torch.exp(-(grid.view(-1, 1) ** 2 + grid.view(1, -1) ** 2) / 4)
        conv.weight[1, 0] = blur / blur.sum()
        conv.bias[1] = -0.1
    return model


def test_a_planted_threshold_is_found_and_random_or_smooth_filters_are_not(synthetic):
    model = planted_lenet()
    by_weights = mechanism.threshold_channels(model)
    assert by_weights["is_threshold"].tolist() == [True] + [False] * 5
    assert by_weights.loc[0, "threshold"] == pytest.approx(THRESHOLD, abs=1e-6)
    assert by_weights.loc[0, "dominant_share"] == 1.0
    assert by_weights.loc[1, "dominant_share"] < 0.2  # the blur spreads its weight
    by_responses = mechanism.threshold_channels(model, synthetic.test_images[:32])
    assert by_responses["is_threshold"].tolist() == [True] + [False] * 5
    assert by_responses.loc[0, "agreement"] == 1.0  # it passes exactly the pixels above 0.3


def test_a_single_tap_that_does_not_threshold_in_the_pixel_range_is_not_a_threshold():
    model = planted_lenet()
    conv = mechanism.first_convolution(model)
    with torch.no_grad():
        conv.bias[0] = 0.5  # passes every pixel: a copy, not a threshold
    assert not mechanism.threshold_channels(model)["is_threshold"].any()
    with torch.no_grad():
        conv.bias[0] = -1.5 * 1.2  # would open at 1.5: never, on [0, 1] images
    assert not mechanism.threshold_channels(model)["is_threshold"].any()


@pytest.mark.parametrize("method", ["guided_backprop", "saliency"])
def test_channel_parts_sum_to_the_whole_map(synthetic, method):
    model = planted_lenet()
    images, labels = synthetic.test_images[:8], synthetic.test_labels[:8]
    parts = mechanism.channel_maps(model, images, "true", labels=labels, method=method)
    whole = rvi.explain(model, images, "true", method, labels=labels, absolute=False).maps
    assert parts.shape == (6, 8, 1, 28, 28)
    # float32 sums in another order: measured max |difference| 2.5e-7 and 3.3e-7 of the map's max
    assert torch.allclose(parts.sum(0), whole, rtol=1e-5, atol=1e-6 * float(whole.abs().max()))
    assert (parts.abs().flatten(1).sum(1) > 0).sum() >= 2  # several channels carry mass


def test_the_share_through_threshold_channels(synthetic):
    """With every first-layer channel but the planted threshold silenced, all the mass flows
    through it, and it lands where the image is bright (its ReLU is open there only)."""
    model = planted_lenet()
    images, labels = synthetic.test_images[:16], synthetic.test_labels[:16]
    summary = mechanism.mechanism_summary(model, images, labels)
    assert summary["threshold_channels"] == 1 and summary["thresholds"] == [THRESHOLD]
    assert 0 < summary["threshold_share"] < 1
    conv = mechanism.first_convolution(model)
    with torch.no_grad():
        conv.weight[1:].zero_()
        conv.bias[1:] = -1.0  # closed everywhere: no gradient through them
    only = mechanism.mechanism_summary(model, images, labels)
    assert only["threshold_share"] == pytest.approx(1.0)
    assert only["foreground_share"] > 0.5


def test_a_model_without_threshold_channels_or_convolutions():
    images = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    natural = rvi.build_model("lenet").eval()  # freshly initialized: no single-tap filter
    summary = mechanism.mechanism_summary(natural, images, torch.arange(4))
    assert summary["threshold_channels"] == 0 and summary["threshold_share"] == 0.0
    assert math.isnan(summary["foreground_share"])
    with pytest.raises(ValueError, match="has no nn.Conv2d"):
        mechanism.first_convolution(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)))


def test_the_mechanism_control_in_a_benchmark_and_a_compare(tmp_path, synthetic):
    """``controls`` holding ``mechanism``: one row per seed and trained model, a table, the
    first-layer figure, kept through save, load and combine_seeds; a compared model without a
    convolution reads "no convolution"."""
    from test_benchmark import tiny_config

    parts = [rvi.run_benchmark(tiny_config(tmp_path, seeds=(seed,), controls=("mechanism",),
                                           metrics=("cosine",), methods=("guided_backprop",),
                                           eval_attacks=())) for seed in (0, 1)]
    combined = rvi.report.result.combine_seeds(parts)
    assert list(zip(combined.mechanism["seed"], combined.mechanism["model"])) == [
        (0, "natural"), (0, "robust"), (1, "natural"), (1, "robust")]
    assert (combined.mechanism["n"] == 8).all()  # the cascade_n images
    folder = combined.save(tmp_path / "out")
    loaded = rvi.BenchmarkResult.load(folder)
    assert loaded.mechanism.equals(combined.mechanism)
    assert "## First-layer mechanism" in (folder / "tables.md").read_text()
    assert (folder / "first_layer.png").stat().st_size > 0
    assert set(loaded.examples["first_layer"]) == {"natural", "robust"}

    flat = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    images, labels = synthetic.test_images[:8], synthetic.test_labels[:8]
    result = rvi.compare({"lenet": planted_lenet(), "flat": flat}, images, labels,
                         rvi.BenchmarkConfig(methods=("saliency",), metrics=("cosine",),
                                             controls=("mechanism",), eval_attacks=(),
                                             bootstrap=100))
    table = rvi.report.tables.mechanism_table(result).set_index("model")
    assert table.loc["flat", "threshold channels"] == "no convolution"
    assert table.loc["lenet", "threshold channels"] == "1"  # the planted threshold
