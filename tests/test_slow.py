"""Slow real-data checks (``python -m pytest -m slow``): the README's main job end to end."""

import pytest

import rvi


@pytest.mark.slow
def test_default_benchmark_on_mnist_5k(tmp_path):
    config = rvi.BenchmarkConfig(cache_dir=str(tmp_path / "cache"))
    result = rvi.run_benchmark(config)
    accuracy = result.accuracy.set_index(["model", "attack"])["accuracy"]
    pgd = config.attack.label
    assert accuracy["natural", "clean"] > 0.95 and accuracy["robust", "clean"] > 0.95
    assert accuracy["natural", pgd] < 0.02 and accuracy["robust", pgd] > 0.8
    assert result.meta["n_test"] == 1000
    diffs = result.differences.set_index(["input", "explainer", "metric", "reference"])
    row = diffs.loc[("natural", "guided_backprop", "foreground_mass", "clean")]
    assert row["ci_low"] > 0  # robust maps put more mass on the strokes, as on full MNIST
    folder = result.save(tmp_path / "out")
    assert (folder / "saliency_grid.png").stat().st_size > 10_000
