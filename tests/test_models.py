import pytest
import torch
from torch import nn

import rvi


def test_lenet_is_exactly_the_seed_architecture():
    model = rvi.build_model("lenet")
    expected = [
        (nn.Conv2d, dict(in_channels=1, out_channels=6, kernel_size=(5, 5), padding=(2, 2))),
        (nn.ReLU, {}), (nn.AvgPool2d, dict(kernel_size=2)),
        (nn.Conv2d, dict(in_channels=6, out_channels=16, kernel_size=(5, 5), padding=(0, 0))),
        (nn.ReLU, {}), (nn.AvgPool2d, dict(kernel_size=2)),
        (nn.Flatten, {}),
        (nn.Linear, dict(in_features=400, out_features=120)), (nn.ReLU, {}),
        (nn.Linear, dict(in_features=120, out_features=84)), (nn.ReLU, {}),
        (nn.Linear, dict(in_features=84, out_features=10)),
    ]
    layers = list(model.children())
    assert len(layers) == len(expected)
    for layer, (cls, attrs) in zip(layers, expected):
        assert type(layer) is cls
        for name, value in attrs.items():
            assert getattr(layer, name) == value, (layer, name)
    assert sum(p.numel() for p in model.parameters()) == 61706


@pytest.mark.parametrize("name", rvi.MODELS)
def test_models_map_images_to_logits_with_distinct_relu_modules(name):
    model = rvi.build_model(name)
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert len(relus) >= 3 and len({id(m) for m in relus}) == len(relus)


def test_madry_cnn_layers():
    model = rvi.build_model("madry-cnn")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [c.out_channels for c in convs] == [32, 64]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(3136, 1024), (1024, 10)]


def test_bad_model_arguments():
    with pytest.raises(ValueError,
                       match="model must be one of lenet, madry-cnn, resnet18; got 'resnet'"):
        rvi.build_model("resnet")
    with pytest.raises(ValueError, match="num_classes must be an integer >= 1, got 0"):
        rvi.build_model("lenet", num_classes=0)
    with pytest.raises(ValueError, match="width must be an integer >= 1, got 0"):
        rvi.build_model("resnet18", 3, width=0)
    with pytest.raises(ValueError, match="width applies to resnet18 only, got width=8 for "
                                         "model 'lenet'"):
        rvi.build_model("lenet", width=8)
