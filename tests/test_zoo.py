"""rvi.models.zoo: RobustBench model-zoo models as compared models, and gbp_safe_copy."""

import argparse
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rvi
from rvi.models import zoo
from rvi._core.checks import installed
from rvi.cli import main
from rvi.scoring.controls import randomization_steps
from rvi.attribution.preflight import check_guided_backprop_model

needs_robustbench = pytest.mark.skipif(
    not installed("robustbench"),
    reason='robustbench is not installed (pip install "rvi[robustbench]")')

X = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


# --- arguments and the missing package (no robustbench needed) --------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"dataset": "mnist"}, r"^dataset must be one of cifar10, cifar100, imagenet; got 'mnist'$"),
    ({"threat_model": "linf"}, r"^threat_model must be one of Linf, L2, .*; got 'linf'$"),
    ({"model_dir": 3}, r"^model_dir must be a file or folder path or None, got 3$"),
])
def test_bad_arguments_are_named_before_robustbench_is_imported(kwargs, message):
    with pytest.raises(ValueError, match=message):
        zoo.load_robustbench("Standard", **kwargs)


def test_a_missing_robustbench_names_the_extra(monkeypatch, tmp_path, capsys, hide_distribution):
    """A module named robustbench without RobustBench's distribution (torchattacks 3.5.1's wheel
    ships such a folder) is not RobustBench: rvi names the extra and imports nothing."""
    standin = tmp_path / "standin"
    (standin / "robustbench").mkdir(parents=True)
    (standin / "robustbench" / "__init__.py").write_text("raise AssertionError('imported')\n")
    monkeypatch.syspath_prepend(str(standin))
    for name in [n for n in sys.modules if n.split(".")[0] == "robustbench"]:
        monkeypatch.delitem(sys.modules, name)
    hide_distribution("robustbench")
    with pytest.raises(ImportError, match=r'pip install "rvi\[robustbench\]"'):
        zoo.load_robustbench("Standard")
    torch.save({"images": X, "labels": torch.tensor([0, 1])}, tmp_path / "images.pt")
    assert main(["compare", "--robustbench", "Standard", "--robustbench", "Carmon2019Unlabeled",
                 "--images", str(tmp_path / "images.pt"), "--out-dir", str(tmp_path / "out")]) == 2
    assert 'rvi compare: error: --robustbench Standard: RobustBench models need the robustbench ' \
        'package, which is not installed: pip install "rvi[robustbench]"' in capsys.readouterr().err


def test_cli_needs_two_models(tmp_path, capsys):
    torch.save({"images": X, "labels": torch.tensor([0, 1])}, tmp_path / "images.pt")
    args = ["compare", "--images", str(tmp_path / "images.pt"), "--out-dir", str(tmp_path / "o")]
    assert main(args + ["--robustbench", "Standard"]) == 2
    assert "needs two or more models (--model NAME=PATH, --robustbench NAME), got 1" \
        in capsys.readouterr().err
    assert main(args + ["--robustbench", "Standard", "--model", "Standard=x.pt"]) == 2
    assert "with distinct names, got 'Standard=x.pt'" in capsys.readouterr().err


# --- gbp_safe_copy and the pre-flight's message (no robustbench needed) ------------------------

class _SharedInplace(nn.Module):
    """One in-place ReLU object registered under two names, each name called once."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3), nn.Linear(4, 10)
        self.relu_a = self.relu_b = nn.ReLU(inplace=True)

    def forward(self, x):
        h = self.relu_b(self.b(self.relu_a(self.a(x))))
        return self.c(h.mean((2, 3)))


class _ReadAfterInplace(_SharedInplace):
    """Reads the in-place ReLU's input again: not the same function without in-place."""

    def forward(self, x):
        h = self.a(x)
        return self.c((self.relu_a(h) + h).mean((2, 3)))


def test_gbp_safe_copy_gives_each_relu_its_own_module_and_keeps_the_function():
    torch.manual_seed(0)
    model = _SharedInplace().eval()
    safe = rvi.gbp_safe_copy(model, X)
    assert model.relu_a is model.relu_b and model.relu_a.inplace  # the model is not changed
    assert safe.relu_a is not safe.relu_b
    assert not any(m.inplace for m in safe.modules() if isinstance(m, nn.ReLU))
    assert torch.equal(safe(X), model(X))
    check_guided_backprop_model(safe, X[:1])
    with pytest.raises(ValueError, match=r"gbp_safe_copy changes the output of this "
                                         r"_ReadAfterInplace \(an in-place ReLU's input is read"):
        rvi.gbp_safe_copy(_ReadAfterInplace().eval(), X)


def test_preflight_names_the_line_that_calls_an_activation_function():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = nn.Sequential(nn.Conv2d(3, 4, 3))
            self.fc = nn.Linear(4, 10)

        def forward(self, x):
            return self.fc(F.relu(self.block(x)).mean((2, 3)))

    line = Net.forward.__code__.co_firstlineno + 1
    with pytest.raises(ValueError, match=rf"calls 'relu' in module '<model>' \(Net\) at "
                                         rf"{__name__}:{line} \(.*Net\.forward\), which"):
        check_guided_backprop_model(Net(), X[:1])


# --- robustbench itself ------------------------------------------------------------------------

@needs_robustbench
def test_import_shims_pyautoattack_and_pkg_resources_and_leaves_nothing_behind(monkeypatch):
    for name in [n for n in sys.modules if n.split(".")[0] == "robustbench"]:
        monkeypatch.delitem(sys.modules, name)  # import it afresh (restored afterwards)
    monkeypatch.setitem(sys.modules, "autoattack", None)  # missing, whatever is installed
    monkeypatch.setitem(sys.modules, "pkg_resources", None)
    import pyautoattack.state
    shims = zoo.packaging_shims()
    assert shims["autoattack"] is pyautoattack and shims["autoattack.state"] is pyautoattack.state
    robustbench = zoo.import_robustbench()
    assert sys.modules["autoattack"] is None and sys.modules["pkg_resources"] is None
    assert "autoattack.state" not in sys.modules
    assert robustbench.eval.AutoAttack is pyautoattack.AutoAttack
    helper = robustbench.loaders.pkg_resources.resource_filename(
        "robustbench.loaders", "helper_files/imagenet_test_image_ids.txt")
    assert Path(helper).is_file()
    monkeypatch.setitem(sys.modules, "pyautoattack", None)
    with pytest.raises(ImportError, match="imports 'autoattack'.*pip install pyautoattack"):
        zoo.packaging_shims()


@needs_robustbench
def test_unknown_names_and_threat_models():
    with pytest.raises(ValueError, match=r"^name must be a RobustBench cifar10 Linf model \(did "
                                         r"you mean 'Standard'.*\), got 'Standrad'$"):
        zoo.load_robustbench("Standrad")
    with pytest.raises(ValueError, match=r"^threat_model 'L2' has no imagenet models"):
        zoo.load_robustbench("Standard_R50", "imagenet", "L2")


@needs_robustbench
def test_missing_and_unreadable_checkpoints(tmp_path, monkeypatch):
    robustbench = zoo.import_robustbench()

    def offline(gdrive_id, path):
        raise ConnectionError(f"no internet for {gdrive_id}")

    monkeypatch.setattr(robustbench.utils, "download_gdrive_new", offline)
    with pytest.raises(FileNotFoundError, match=r"checkpoint .*cifar10/L2/Standard\.pt is missing and "
                                                r"could not be downloaded \(ConnectionError: no "):
        zoo.load_robustbench("Standard", threat_model="L2", model_dir=tmp_path)
    (tmp_path / "cifar10" / "Linf").mkdir(parents=True)
    torch.save({"state_dict": {}, "args": argparse.Namespace(lr=0.1)},
               tmp_path / "cifar10/Linf/Standard.pt")
    with pytest.raises(ValueError, match=r"torch.load\(weights_only=True\) refuses the checkpoint "
                                         r"of 'Standard'"):
        zoo.load_robustbench("Standard", model_dir=tmp_path)


def _zoo_architectures():
    """Small instances of zoo architecture classes: WideResNet (Standard, Carmon2019Unlabeled:
    in-place ReLU modules), DMPreActResNet with ReLU, and PreActResNet (F.relu)."""
    zoo.import_robustbench()
    from robustbench.model_zoo.architectures.dm_wide_resnet import DMPreActResNet
    from robustbench.model_zoo.architectures.resnet import PreActBlock, PreActResNet
    from robustbench.model_zoo.architectures.wide_resnet import WideResNet
    return {"wrn": lambda: WideResNet(depth=10, widen_factor=2),
            "wrn-sub-block": lambda: WideResNet(depth=16, widen_factor=1, sub_block1=True),
            "dm-preact": lambda: DMPreActResNet(activation_fn=nn.ReLU),
            "preact": lambda: PreActResNet(PreActBlock, [1, 1, 1, 1])}


@needs_robustbench
@pytest.mark.parametrize("name", ["wrn", "wrn-sub-block", "dm-preact", "preact"])
def test_gbp_safe_copy_of_zoo_architectures(name):
    torch.manual_seed(0)
    model = _zoo_architectures()[name]().eval()
    safe = rvi.gbp_safe_copy(model, X)
    with torch.no_grad():
        assert torch.equal(safe(X), model(X))  # measured: bit-identical on CPU
    if name != "preact":
        check_guided_backprop_model(safe, X[:1])
        return
    with pytest.raises(ValueError, match=r"calls 'relu' in module 'layer1.0' \(PreActBlock\) at "
                                         r"robustbench\.model_zoo\.architectures\.resnet:\d+ "
                                         r"\(PreActBlock\.forward\)"):
        check_guided_backprop_model(safe, X[:1])


@needs_robustbench
def test_cli_compares_a_zoo_model_from_its_checkpoint_folder(tmp_path, monkeypatch, capsys):
    """Standard (WideResNet-28-10, seeded weights) from RobustBench's folder layout, without a
    download, against a small model of ours, through Guided Backprop."""
    robustbench = zoo.import_robustbench()
    monkeypatch.setattr(robustbench.utils, "download_gdrive_new",
                        lambda *args: pytest.fail(f"robustbench tried to download {args}"))
    entry = robustbench.model_zoo.model_dicts[robustbench.model_zoo.enums.BenchmarkDataset.cifar_10]
    torch.manual_seed(0)
    standard = entry[robustbench.model_zoo.enums.ThreatModel.Linf]["Standard"]["model"]()
    (tmp_path / "zoo" / "cifar10" / "Linf").mkdir(parents=True)
    torch.save({"state_dict": standard.state_dict()}, tmp_path / "zoo/cifar10/Linf/Standard.pt")
    loaded = zoo.load_robustbench("Standard", model_dir=tmp_path / "zoo")
    with torch.no_grad():
        assert not loaded.training and torch.equal(loaded(X), standard.eval()(X))

    torch.manual_seed(1)
    small = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 15 * 15, 10))
    torch.save(small, tmp_path / "small.pt")
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    torch.save({"images": images, "labels": torch.tensor([3, 7])}, tmp_path / "images.pt")
    args = ["compare", "--robustbench", "Standard", "--model", f"small={tmp_path / 'small.pt'}",
            "--trust-pickle", "--robustbench-dir", str(tmp_path / "zoo"),
            "--images", str(tmp_path / "images.pt"), "--methods", "guided_backprop",
            "--metrics", "cosine", "--controls", "image", "--eval-attacks", "fgsm",
            "--attack-steps", "1", "--bootstrap", "100", "--grid-images", "1", "--quiet",
            "--out-dir", str(tmp_path / "out")]
    assert main(args) == 0, capsys.readouterr().err
    result = rvi.BenchmarkResult.load(tmp_path / "out")
    info = result.model_info.set_index("model")
    assert info.loc["Standard", "source"] == "robustbench:cifar10/Linf/Standard"
    assert set(result.records["model"]) == {"Standard", "small"}


@needs_robustbench
def test_zoo_architectures_are_randomized_by_their_stages():
    """WideResNet-28-10 (Standard's architecture): 54 parameter modules, 6 block steps (the stem,
    three stages, the last BatchNorm, the classifier); RobustBench's PreActResNet-18 alike."""
    zoo.import_robustbench()
    from robustbench.model_zoo.architectures.resnet import PreActBlock, PreActResNet
    from robustbench.model_zoo.architectures.wide_resnet import WideResNet
    example = torch.rand(1, 3, 32, 32)
    wrn = WideResNet(depth=28, widen_factor=10)
    assert len(randomization_steps(wrn, example, "layers")) == 54
    assert [n for n, _ in randomization_steps(wrn, example, "auto")] == [
        "conv1", "block1", "block2", "block3", "bn1", "fc"]
    preact = PreActResNet(PreActBlock, [2, 2, 2, 2])
    assert [n for n, _ in randomization_steps(preact, example, "auto")] == [
        "conv1", "layer1", "layer2", "layer3", "layer4", "linear"]  # no bn: bn_before_fc=False
