"""The pre-activation ResNet-18: its structure, and Guided Backprop maps checked against an
independent implementation (a custom autograd function at every ReLU, no Captum)."""


import pytest
import torch
from captum.attr import GuidedBackprop
from torch import nn

import rvi
from rvi.models.architectures import CIFAR10_MEAN, PreActBlock, PreActResNet, resnet18
from reference_gbp import reference_guided_backprop, with_functional_relu


def tiny_resnet(seed=0, width=4, in_channels=3):
    """A width-4 ResNet-18 in float64 with non-trivial batch-norm statistics, in eval mode."""
    torch.manual_seed(seed)
    model = resnet18(in_channels, 10, width=width).double()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model.eval()


def test_resnet18_structure():
    model = rvi.build_model("resnet18", in_channels=3)
    assert isinstance(model, PreActResNet)
    # He et al.'s pre-activation ResNet-18 (with the final BN-ReLU) for 10 classes
    assert sum(p.numel() for p in model.parameters()) == 11_172_170
    blocks = [m for m in model.modules() if isinstance(m, PreActBlock)]
    assert len(blocks) == 8
    assert [b.conv2.out_channels for b in blocks] == [64, 64, 128, 128, 256, 256, 512, 512]
    # a 1x1 projection only where a stage starts with a stride of 2
    assert [b.shortcut is not None for b in blocks] == [False, False] + [True, False] * 3
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) + 1 == 18  # 17 3x3 convolutions and the classifier
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == 17 and len({id(m) for m in relus}) == 17
    assert not any(m.inplace for m in relus)
    assert model.normalize.mean.flatten().tolist() == pytest.approx(CIFAR10_MEAN)
    assert not any("normalize" in name for name, _ in model.named_parameters())


def test_resnet18_shapes_and_width():
    model = rvi.build_model("resnet18", in_channels=3, width=4).eval()
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert model(torch.rand(2, 3, 16, 16)).shape == (2, 10)
    assert rvi.build_model("resnet18", in_channels=1, num_classes=7, width=4)(
        torch.rand(1, 1, 28, 28)).shape == (1, 7)


def test_normalization_is_inside_the_model():
    model = tiny_resnet()
    x = torch.rand(3, 3, 32, 32, dtype=torch.float64)
    mean = torch.tensor(CIFAR10_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    expected = model.stages(model.stem((x - mean) / model.normalize.std))
    assert torch.allclose(model.stages(model.stem(model.normalize(x))), expected)


def test_resnet_passes_the_guided_backprop_preflight_and_its_functional_twin_does_not():
    model, x = tiny_resnet().float(), torch.rand(1, 3, 32, 32)
    rvi.attribution.saliency.check_guided_backprop_model(model, x)
    with pytest.raises(ValueError, match="nn.ReLU module.*calls 'relu'"):
        rvi.attribution.saliency.check_guided_backprop_model(with_functional_relu(model), x)


@pytest.mark.parametrize("absolute", [False, True])
def test_guided_backprop_equals_an_independent_implementation(absolute):
    model = tiny_resnet()
    x = torch.rand(4, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 3, 7, 9])
    reference = reference_guided_backprop(model, x, target)
    expected = reference.abs().sum(1, keepdim=True) if absolute else reference.sum(1, keepdim=True)
    maps = rvi.explain(model, x, target, "guided_backprop", absolute=absolute).maps
    assert maps.shape == (4, 1, 32, 32)
    assert expected.abs().max() > 0
    torch.testing.assert_close(maps, expected, rtol=1e-9, atol=1e-12)
    # not vacuous: the plain gradient differs from Guided Backprop on this network
    plain = rvi.explain(model, x, target, "saliency", absolute=absolute).maps
    assert not torch.allclose(plain, expected, rtol=1e-3, atol=1e-6)


class _SkipFromReLUInput(PreActBlock):
    """A wrong block for Guided Backprop: the skip path reuses the first ReLU's input."""

    def forward(self, x):
        normed = self.bn1(x)
        pre = self.relu1(normed)
        skip = normed if self.shortcut is None else self.shortcut(pre)
        return self.conv2(self.relu2(self.bn2(self.conv1(pre)))) + skip


def test_reused_relu_input_is_refused_and_would_be_wrong():
    model = tiny_resnet()
    block = model.stages[0][1]
    wrong = _SkipFromReLUInput(4, 4)
    wrong.load_state_dict(block.state_dict())
    model.stages[0][1] = wrong.double().eval()
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    target = torch.tensor([1, 5])
    with pytest.raises(ValueError, match="input of nn.ReLU 'stages.0.1.relu1' is also used"):
        rvi.explain(model, x, target, "guided_backprop")
    # what the pre-flight prevents: Captum's map is then not Guided Backprop
    with pytest.warns(UserWarning, match="Setting backward hooks on ReLU"):
        captum_map = GuidedBackprop(model).attribute(x.clone().requires_grad_(True), target=target)
    assert not torch.allclose(captum_map, reference_guided_backprop(model, x, target),
                              rtol=1e-6, atol=1e-9)


def test_readme_cifar10_command_parses_to_the_stated_study():
    import re
    import shlex
    from pathlib import Path

    from rvi.cli import _build_parser, _merged_config

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    (command,) = [b for b in re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
                  if "--dataset cifar10" in b]
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[:2] == ["rvi", "bench"]
    args = _build_parser().parse_args(argv[1:])
    config = _merged_config(rvi.BenchmarkConfig, args, file_path=args.config)
    assert (config.dataset, config.model) == ("cifar10", "resnet18")
    for attack in (config.attack, config.robust.attack):
        assert attack.name == "pgd" and attack.steps == 10
        assert attack.eps == pytest.approx(8 / 255, abs=1e-6)
        assert attack.alpha == pytest.approx(2 / 255, abs=1e-6)
    assert config.robust.adversarial and not config.natural.adversarial
    assert "autoattack" in config.eval_attacks
