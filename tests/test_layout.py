"""Channels-last weights while rvi runs a CPU model: same values back, same results as the plain
(contiguous) path within float-rounding tolerance."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import rvi
from rvi._core.modelstate import channels_last, wants_channels_last

WORKER = Path(__file__).with_name("fragile_layout_worker.py")


def _trained_ish_lenet(in_channels=1):
    torch.manual_seed(0)
    return rvi.build_model("lenet", in_channels=in_channels).eval()


@pytest.fixture
def plain_path(monkeypatch):
    """Switch the channels-last context off (rvi 0.3's layout)."""
    return lambda: monkeypatch.setattr(rvi._core.modelstate, "CPU_CHANNELS_LAST", False)


def test_weights_come_back_as_they_were():
    model = _trained_ish_lenet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with channels_last(model):
        assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
        assert not model[3].weight.is_contiguous()
    for key, value in model.state_dict().items():
        assert value.is_contiguous()
        assert torch.equal(value, before[key])


def test_restored_when_the_body_raises():
    model = _trained_ish_lenet()
    with pytest.raises(RuntimeError):
        with channels_last(model):
            raise RuntimeError("boom")
    assert model[3].weight.is_contiguous()


def test_a_caller_chosen_layout_is_left_alone():
    model = _trained_ish_lenet().to(memory_format=torch.channels_last)
    with channels_last(model):
        pass
    assert not model[3].weight.is_contiguous()
    assert model[3].weight.is_contiguous(memory_format=torch.channels_last)


def test_disabled_does_nothing():
    model = _trained_ish_lenet()
    with channels_last(model, enabled=False):
        assert model[3].weight.is_contiguous()


@pytest.mark.parametrize("in_channels", [1, 3])
def test_results_match_the_plain_path(plain_path, in_channels):
    model = _trained_ish_lenet(in_channels)
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(40, in_channels, 28, 28, generator=gen)
    labels = torch.randint(0, 10, (40,), generator=gen)
    config = rvi.AttackConfig(eps=0.3, alpha=0.1, steps=7)

    def run():
        maps = rvi.explain(model, images, "true", "guided_backprop", labels=labels,
                           batch_size=16).maps
        return {"maps": maps,
                "deletion": rvi.metrics.faithfulness.deletion(model, images, maps, labels, batch_size=64),
                "alignment": rvi.metrics.basic.alignment(model, images, batch_size=16),
                "pgd": rvi.attack(model, images, labels, config, batch_size=16),
                "predicted": rvi.predict(model, images)}

    fast = run()
    plain_path()
    plain = run()
    assert fast["maps"].is_contiguous()
    torch.testing.assert_close(fast["maps"], plain["maps"], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fast["deletion"], plain["deletion"], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fast["alignment"], plain["alignment"], rtol=1e-4, atol=1e-5)
    assert torch.equal(fast["predicted"], plain["predicted"])
    # PGD steps by the sign of the gradient: a component within rounding of 0 may flip
    differs = (fast["pgd"] - plain["pgd"]).abs() > 1e-6
    assert differs.float().mean() < 0.01
    assert ((fast["pgd"] - images).abs() <= 0.3 + 1e-6).all()


def test_only_rvis_measured_architectures_prefer_channels_last():
    assert wants_channels_last(rvi.build_model("lenet"))
    assert wants_channels_last(rvi.build_model("madry-cnn"))
    assert not wants_channels_last(rvi.build_model("resnet18", 3, width=4))
    user_model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(),
                                     torch.nn.Flatten(), torch.nn.LazyLinear(10))
    assert not wants_channels_last(user_model)
    assert wants_channels_last(rvi.prefer_channels_last(user_model))  # the user's opt-in


def test_training_follows_the_models_layout(synthetic):
    """A user's model trains in its own layout: plain unless its weights are channels-last."""
    formats = []

    def record(module, inputs, output):  # a 4-channel output shows the layout (1 channel can't)
        formats.append(output.is_contiguous())

    config = rvi.TrainConfig(epochs=1, batch_size=64)
    for to_channels_last in (False, True):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(),
                                    torch.nn.Conv2d(4, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                    torch.nn.Linear(4 * 24 * 24, 10))
        if to_channels_last:
            model.to(memory_format=torch.channels_last)
        model[2].register_forward_hook(record)
        formats.clear()
        rvi.train_model(model, synthetic.train_images[:128], synthetic.train_labels[:128], config,
                        quiet=True)
        assert formats and all(f == (not to_channels_last) for f in formats)
        assert model[2].weight.is_contiguous() != to_channels_last  # the layout it came with


@pytest.mark.parametrize("threads", [1, 2])
def test_a_channels_last_fragile_user_model_runs_through_rvi(threads):
    """torch's minimal crash case (a strided 1x1 convolution with 4 input channels, see
    fragile_layout_worker.py) through train_model, attack, explain, score and compare, in a
    subprocess. oneDNN's AVX2 kernels are forced (ONEDNN_MAX_CPU_ISA), where the bug shows on
    every x86-64 CPU: with rvi 0.4's layout this aborted with one thread and fed the layer
    channels-last inputs (wrong weight gradients) with two."""
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2", PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, str(WORKER), str(threads)], env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ok")
