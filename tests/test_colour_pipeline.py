"""The whole study on 3x32x32 colour images with a (tiny) pre-activation ResNet-18: training,
attacks, Guided Backprop and plain-gradient maps, every default metric, and every control,
including cascading and independent randomization over the ResNet's blocks."""

import math

import pytest
import torch

import rvi
from rvi.models import architectures as models
from rvi.config import AttackConfig, BenchmarkConfig, TrainConfig
from rvi.scoring.controls import parameter_layers

ATTACK = AttackConfig(eps=8 / 255, alpha=2 / 255, steps=2)
WIDTH = 4


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("colour")
    data = rvi.data.make_synthetic(64, 20, channels=3, size=32)
    config = BenchmarkConfig(
        dataset="synthetic", model="resnet18", natural=TrainConfig(epochs=1, batch_size=32),
        robust=TrainConfig(adversarial=True, epochs=1, batch_size=32, attack=ATTACK),
        attack=ATTACK, n_test=4, faithfulness_n=2, cascade_n=2, randomization_draws=2,
        grid_images=2, bootstrap=100,
        cache_dir=str(folder / "cache"), out_dir=str(folder / "out"))
    # the registered resnet18 at width 4 (the library builds it by name, also for the
    # random-weights control and when loading the cached checkpoints)
    # random-weights control and when loading the cached checkpoints). One intra-op thread: the
    # width-4 convolutions are tiny, and with two threads on busy cores they ran ~20x slower.
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with pytest.MonkeyPatch.context() as patch:
            patch.setitem(models._BUILDERS, "resnet18",
                          lambda c, k: models.resnet18(c, k, width=WIDTH))
            result = rvi.run_benchmark(config, data=data)
            layers = parameter_layers(rvi.build_model("resnet18", 3), data.test_images[:1])
    finally:
        torch.set_num_threads(threads)
    return config, result, layers, folder


def test_every_default_metric_is_scored_on_colour_images(colour_run):
    config, result, _, _ = colour_run
    records = result.records
    assert records.groupby(["model", "input"]).size().eq(4).all()
    for method in config.methods:
        for metric in config.metrics:
            info = rvi.metrics.METRICS[metric]
            explainer = method if info.uses_map else "model"  # alignment scores the model
            column = records[f"{explainer}/{metric}/clean"]
            if info.needs_model:  # scored at the input the model was given
                column = column.combine_first(records[f"{explainer}/{metric}/perturbed"])
            if info.family == "faithfulness":
                column = column.dropna()  # scored on the first faithfulness_n images only
                # 2 images x the 4 cells of trained models: a random-weights model's own output
                # is not scored (it is no control for faithfulness)
                assert len(column) == 2 * 4, (method, metric)
                assert records.loc[column.index, "model"].isin(["natural", "robust"]).all()
            assert column.notna().all() and column.map(math.isfinite).all(), (method, metric)
            if info.high < math.inf:
                assert column.between(info.low, info.high).all(), (method, metric)
    natural = records.query("model == 'natural' and input == 'natural'")  # stored once
    for control in ("image", "edge", "noise"):
        assert natural[f"{control}/cosine/clean"].notna().all()
    # the image itself is compared with its own channel mean: cosine 1
    assert natural["image/cosine/clean"].sub(1).abs().max() < 1e-5


def test_randomization_runs_over_every_resnet_block(colour_run):
    """40 parameter layers (more than LAYER_STEPS_UP_TO), so the default steps are the blocks:
    the stem, the four stages, the final BatchNorm and the classifier, from the output down."""
    _, result, layers, _ = colour_run
    assert len(layers) == 1 + 8 * 4 + 3 + 2  # stem, 8 blocks x (bn, conv, bn, conv), 3 shortcuts,
    #                                          final bn and classifier
    blocks = ["fc", "bn", "stages.3", "stages.2", "stages.1", "stages.0", "stem"]
    cascading = result.cascading
    for mode in ("cascading", "independent"):
        for draw in (0, 1):
            rows = cascading[(cascading["mode"] == mode) & (cascading["kind"] == "score")
                             & (cascading["model"] == "robust") & (cascading["metric"] == "cosine")
                             & (cascading["draw"] == draw)]
            assert rows["layer"].tolist() == ["none"] + blocks
            assert rows["mean"].map(math.isfinite).all()


def test_tables_and_example_images(colour_run):
    config, result, _, _ = colour_run
    assert "guided_backprop" in result.to_markdown()
    # figures show colour images as their channel mean (grey), like the metrics compare them
    data = rvi.data.make_synthetic(64, 20, channels=3, size=32)
    clean = torch.tensor(result.examples["clean"])
    assert clean.shape == (2, 32, 32)
    torch.testing.assert_close(clean, data.test_images[:2].mean(1), atol=1e-4, rtol=0)
    assert torch.tensor(result.examples["maps"]["robust/natural"]).shape == (2, 32, 32)


def test_one_channel_metrics_and_controls_on_colour_images():
    from rvi.scoring.controls import edge_map, image_map
    from rvi.metrics.basic import cosine, foreground_mass, inner

    generator = torch.Generator().manual_seed(3)
    grey = torch.rand(3, 1, 8, 8, generator=generator)
    maps = torch.rand(3, 1, 8, 8, generator=generator)
    tint = torch.tensor([0.9, 1.0, 1.1]).view(1, 3, 1, 1)
    colour = (grey * tint).clamp(0, 1)  # channel mean = grey wherever nothing was clipped
    mean = colour.mean(1, keepdim=True)
    # the foreground mask and every one-channel score use the channel mean
    torch.testing.assert_close(foreground_mass(maps, colour), foreground_mass(maps, mean))
    torch.testing.assert_close(inner(maps, colour), inner(maps, mean))
    # a pixel bright in one channel only is not foreground (its mean is 0.3)
    red = torch.zeros(1, 3, 2, 2)
    red[0, 0, 0, 0] = 0.9
    assert float(foreground_mass(torch.ones(1, 1, 2, 2), red)) == 0.0
    # trivial explainers: the image (channel sum) scores cosine 1 against its own colour image
    torch.testing.assert_close(cosine(image_map(colour), colour), torch.ones(3))
    # edges of a grey image repeated over 3 channels: three times the one-channel edge map
    torch.testing.assert_close(edge_map(grey.repeat(1, 3, 1, 1)), 3 * edge_map(grey))
