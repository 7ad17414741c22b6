"""Every public entry point refuses bad arguments with a ValueError naming argument and value
(these all escaped before as AttributeError/TypeError/RuntimeError from deep inside)."""

import pytest
import torch

import rvi


@pytest.fixture
def model():
    torch.manual_seed(0)
    return rvi.build_model("lenet").eval()


X = torch.rand(4, 1, 28, 28)
Y = torch.tensor([0, 1, 2, 3])


@pytest.mark.parametrize("call, message", [
    (lambda m: rvi.attack("m", X, Y, rvi.AttackConfig()), "model must be a torch.nn.Module, got str"),
    (lambda m: rvi.attack(m, X, Y, {"eps": 0.3}), "config must be an AttackConfig, got {'eps': 0.3}"),
    (lambda m: rvi.attack(m, X, Y, rvi.AttackConfig(), seed=-1), "seed must be an integer >= 0, got -1"),
    (lambda m: rvi.attack(m, X, Y, rvi.AttackConfig(), num_classes=0),
     "num_classes must be an integer >= 2, got 0"),
    (lambda m: rvi.cleanliness(None, X, "alignment", model="m"), "model must be a torch.nn.Module"),
    (lambda m: rvi.evaluate("m", X, Y), "model must be a torch.nn.Module, got str"),
    (lambda m: rvi.evaluate(m, X, Y, "pgd"), "attacks must be a sequence of AttackConfig, got 'pgd'"),
    (lambda m: rvi.explain("m", X, "predicted", "saliency"), "model must be a torch.nn.Module"),
    (lambda m: rvi.load_checkpoint(5), "path must be a file or folder path, got 5"),
    (lambda m: rvi.load_checkpoint("/"), "path must be a checkpoint file, got the folder '/'"),
    (lambda m: rvi.load_dataset("synthetic", download="no"), "download must be True or False, got 'no'"),
    (lambda m: rvi.load_dataset("synthetic", synthetic_size=5), "synthetic_size must be a"),
    (lambda m: rvi.new_model("lenet", {"seed": 0}), "config must be a TrainConfig, got dict"),
    (lambda m: rvi.predict(m, X[0]), r"images must be a float tensor of shape \(N, C, H, W\)"),
    (lambda m: rvi.run_benchmark({"dataset": "synthetic"}), "config must be a BenchmarkConfig, got dict"),
    (lambda m: rvi.run_benchmark(rvi.BenchmarkConfig(dataset="synthetic"), data="x"),
     "data must be an rvi.data.Dataset or None, got str"),
    (lambda m: rvi.train_model("m", X, Y, rvi.TrainConfig()), "model must be a torch.nn.Module"),
    (lambda m: rvi.train_model(m, X, Y, rvi.TrainConfig(), checkpoint_path=5),
     "checkpoint_path must be a file or folder path or None, got 5"),
    (lambda m: rvi.BenchmarkResult.load(5), "folder must be a file or folder path, got 5"),
])
def test_bad_arguments_are_caught_at_the_door(model, call, message):
    with pytest.raises(ValueError, match=message):
        call(model)
