"""rvi.metrics.quantus: Quantus metrics requested as quantus:NAME, against rvi's own metrics.

Each Quantus metric that rvi also implements is compared with rvi's on the same maps and model:
equal, or related by the exact difference docs/metrics.md ("Quantus metrics") states. The direct
comparisons of Quantus' PixelFlipping curve and Sparseness with rvi's functions (without the
wrapper) are in test_faithfulness.py.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from captum.metrics import infidelity as captum_infidelity
from torch import nn

import rvi
from rvi.metrics import faithfulness as F
from rvi.metrics import quantus as Q
from rvi._core.checks import installed
from rvi.metrics.basic import METRICS, gini, score
from rvi.attribution.saliency import explain

NAMES = tuple(Q.PREFIX + name for name in Q.SUPPORTED)
needs_quantus = pytest.mark.skipif(not installed("quantus"),
                                   reason='Quantus is not installed (pip install "rvi[quantus]")')


def _linear(generator, classes=10, pixels=28 * 28) -> nn.Module:
    """(N, 1, 28, 28) -> (N, K) logits W x, weights large enough for a confident softmax."""
    layer = nn.Linear(pixels, classes, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(classes, pixels, generator=generator) * 0.3)
    return nn.Sequential(nn.Flatten(), layer).eval()


@pytest.fixture
def case(batch):
    """A seeded linear model, 8 synthetic images, their predicted classes and tie-free maps."""
    generator = torch.Generator().manual_seed(0)
    model = _linear(generator)
    images = batch[0][:8]
    targets = model(images).argmax(1)
    maps = torch.rand(8, 1, 28, 28, generator=generator)  # no ties: Quantus' argsort is unstable
    return model, images, targets, maps


def test_registered_up_front_without_importing_quantus():
    """import rvi registers quantus:NAME without Quantus; scoring then names the extra."""
    code = ("import importlib.metadata as md, sys\n"  # as if Quantus were not installed
            "sys.modules['quantus'] = None\n"
            "def hidden(name):\n"
            "    raise md.PackageNotFoundError(name)\n"
            "md.distribution = hidden\n"
            "import torch, rvi\n"
            "rvi.BenchmarkConfig(metrics=('cosine', 'quantus:Sparseness'))\n"
            "try:\n"
            "    rvi.score('quantus:Sparseness', torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4))\n"
            "except ImportError as error:\n"
            "    print(error)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=120)
    assert 'pip install "rvi[quantus]"' in out.stdout


def test_registry_entries():
    assert tuple(m for m in METRICS if m.startswith(Q.PREFIX)) == NAMES
    assert METRICS["quantus:Sparseness"].family == "cleanliness"
    assert not METRICS["quantus:Sparseness"].needs_model
    assert {m for m in NAMES if METRICS[m].verdict} == {
        "quantus:Sparseness", "quantus:MaxSensitivity", "quantus:RandomLogit"}
    assert [m for m in NAMES if METRICS[m].higher_is_better] == ["quantus:Sparseness"]


def test_unknown_names_list_the_supported_ones():
    with pytest.raises(ValueError, match="Sparseness, PixelFlipping, Infidelity"):
        Q.quantus_scores("Bogus", torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match="quantus:Sparseness, quantus:PixelFlipping"):
        rvi.BenchmarkConfig(metrics=("quantus:Bogus",))


@needs_quantus
def test_sparseness_is_gini_of_the_map_plus_1e7(lenet, batch):
    """Quantus adds 1e-7 to every |s|, so Sparseness = gini * S / (S + n 1e-7), S = sum |s|."""
    images, labels = batch
    maps = explain(lenet, images, "true", "saliency", labels=labels).maps
    got = score("quantus:Sparseness", maps, images).double()
    ours = gini(maps).double()
    total, n = maps.double().flatten(1).sum(1), maps[0].numel()
    torch.testing.assert_close(got, ours * total / (total + n * 1e-7), rtol=2e-6, atol=0)
    # not scale-free: on these small gradient maps (sum |s| ~ 0.05) the offset costs 8.4e-4
    assert 5e-4 < float((got - ours).abs().max()) < 1e-3


@needs_quantus
def test_pixel_flipping_is_deletion_without_the_trapezoid_ends(case):
    """PixelFlipping's curve is rvi's deletion curve after its first step (28 steps of 28
    pixels on 28x28 images); its mean differs from rvi's trapezoid AUC by (p_0 - p_S) / 2S."""
    model, images, targets, maps = case
    steps = 28 * 28 // Q.pixel_flipping_step(images.shape)
    assert steps == 28
    got = score("quantus:PixelFlipping", maps, images, model=model, targets=targets).double()
    _, probs = F.perturbation_curves(model, images, maps, targets, steps=steps)
    auc = F.deletion(model, images, maps, targets, steps=steps).double()
    ends = (probs[:, 0] - probs[:, -1]).double() / (2 * steps)
    torch.testing.assert_close(got + ends, auc, rtol=0, atol=1e-6)
    assert float((auc - got).abs().min()) > 1e-3  # the ends matter: p_0 in [0.30, 0.74], p_S 0.1


def _patch_perturbation(patch=Q.INFIDELITY_PATCH):
    """Captum perturb_func: the k-th of n_k copies of an image gets I_k = x on its first k + 1
    patches (row-major), i.e. x - I_k is Quantus' cumulatively occluded image."""
    def perturb(inputs):
        count = (inputs.shape[-2] // patch) * (inputs.shape[-1] // patch)
        rows, cols = torch.meshgrid(torch.arange(inputs.shape[-2]), torch.arange(inputs.shape[-1]),
                                    indexing="ij")
        block = (rows // patch) * (inputs.shape[-1] // patch) + cols // patch
        k = torch.arange(len(inputs)) % count
        mask = (block[None] <= k[:, None, None]).to(inputs)[:, None]
        return inputs * mask, inputs * (1 - mask)
    return perturb


@needs_quantus
def test_infidelity_is_captums_unnormalized_with_patch_occlusion(lenet, case):
    """Quantus' Infidelity = the Captum infidelity rvi's `infidelity` calls, with normalize=False
    (no beta) and cumulative 4x4-patch occlusions to 0 instead of Gaussian noise."""
    _, images, _, maps = case
    with torch.no_grad():  # a LeNet whose logits move: scale its random output layer
        lenet[-1].weight.mul_(50)
    targets = lenet(images).argmax(1)
    got = score("quantus:Infidelity", maps, images, model=lenet, targets=targets)
    reference = captum_infidelity(lenet, _patch_perturbation(), images, maps, target=targets,
                                  n_perturb_samples=49, normalize=False)
    torch.testing.assert_close(got, reference, rtol=1e-5, atol=0)  # measured 2e-7
    assert float(got.min()) > 1e-3


@needs_quantus
def test_infidelity_of_a_scaled_gradient_linear_model(case):
    """For logits W x and the map c w_t: rvi's (normalized) infidelity is 0 for any c, Quantus'
    (1 - c)^2 mean_k <I_k, w_t>^2."""
    model, images, targets, _ = case
    weight = model[1].weight.detach()[targets].reshape(8, 1, 28, 28)
    occluded = _patch_perturbation()(images.repeat_interleave(49, 0))[0]
    expected = ((occluded * weight.repeat_interleave(49, 0)).flatten(1).sum(1) ** 2)
    expected = expected.reshape(8, 49).mean(1)
    for c in (1.0, 3.0):
        got = score("quantus:Infidelity", c * weight, images, model=model, targets=targets)
        torch.testing.assert_close(got, (1 - c) ** 2 * expected, rtol=1e-4, atol=1e-4)
        assert float(F.infidelity(model, images, c * weight, targets).abs().max()) < 1e-4


@needs_quantus
def test_max_sensitivity_equals_rvis_with_the_same_draws(lenet, batch):
    """Given rvi's draws (uniform in +-0.02, clipped to [0, 1]), Quantus' MaxSensitivity is rvi's
    (Captum's) sensitivity_max of the same method; the wrapper draws from NumPy instead."""
    import quantus

    def explain_func(model, inputs, targets, **_):
        return explain(model, torch.as_tensor(inputs, dtype=torch.float32),
                       torch.as_tensor(targets), "saliency").maps.double().numpy()

    images = batch[0][:4]
    targets = lenet(images).argmax(1)
    rvi_scores = F.sensitivity_max(lenet, images, targets, "saliency", seed=3)
    for i in range(len(images)):
        draws = F.per_image_draws(3, i, 1, F.PERTURB_SAMPLES, images.shape[1:], "uniform")
        steps = iter((2 * draws.flatten(1).double().numpy() - 1) * F.SENSITIVITY_RADIUS)
        metric = quantus.MaxSensitivity(
            nr_samples=F.PERTURB_SAMPLES, abs=False, normalise=False, disable_warnings=True,
            perturb_func=lambda arr, indices, **_: np.clip(arr + next(steps), 0.0, 1.0))
        maps = explain(lenet, images[i:i + 1], targets[i:i + 1], "saliency").maps
        ref = metric(model=lenet, x_batch=images[i:i + 1].numpy(), y_batch=targets[i:i + 1].numpy(),
                     a_batch=maps.double().numpy(), channel_first=True,
                     explain_func=explain_func)
        assert float(rvi_scores[i]) == pytest.approx(float(ref[0]), rel=1e-5)  # measured 2e-7
    # the wrapper's draws differ; its mean over images varies with the seed as rvi's does
    # (measured on 16 images, seeds 0-4: 0.231-0.237 against rvi's 0.230-0.241)
    images, targets = batch[0], lenet(batch[0]).argmax(1)
    wrapped = [float(score("quantus:MaxSensitivity", None, images, model=lenet, targets=targets,
                           method="saliency", seed=seed).mean()) for seed in range(3)]
    own = [float(F.sensitivity_max(lenet, images, targets, "saliency", seed=seed).mean())
           for seed in range(3)]
    assert abs(np.mean(wrapped) - np.mean(own)) < 2 * (np.std(own) + np.std(wrapped))


@needs_quantus
def test_uses_sign_says_whether_a_signed_map_scores_differently(case):
    """(test_metrics.py checks rvi's own metrics the same way.)"""
    model, images, targets, maps = case
    kwargs = dict(model=model, targets=targets, method="saliency")
    for name in NAMES:
        signed = score(name, maps - 0.5, images, **kwargs)
        absolute = score(name, (maps - 0.5).abs(), images, **kwargs)
        assert torch.equal(signed, absolute) != METRICS[name].uses_sign, name


@needs_quantus
@pytest.mark.parametrize("name", NAMES)
def test_per_image_scores_ignore_batching_and_restore_state(lenet, batch, name):
    images, labels = batch
    images, labels = images[:5], labels[:5]
    maps = explain(lenet, images, "true", "saliency", labels=labels).maps
    maps[1] = 0.0  # Quantus refuses constant maps: NaN
    kwargs = dict(model=lenet, method="saliency", seed=1)
    lenet.train()
    numpy_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state()
    whole = score(name, maps, images, targets=labels, batch_size=64, **kwargs)
    assert lenet.training and (np.random.get_state()[1] == numpy_state).all()
    assert torch.equal(torch.get_rng_state(), torch_state)
    parts = torch.cat([score(name, maps[:3], images[:3], targets=labels[:3], batch_size=2, **kwargs),
                       score(name, maps[3:], images[3:], targets=labels[3:], batch_size=2, offset=3,
                             **kwargs)])
    torch.testing.assert_close(parts, whole, equal_nan=True, rtol=1e-5, atol=1e-6)
    info = METRICS[name]  # MaxSensitivity and RandomLogit recompute the maps
    assert whole.shape == (5,) and bool(torch.isnan(whole[1])) != info.needs_method
    kept = whole[[0, 2, 3, 4]]
    assert bool(((kept >= info.low - 1e-6) & (kept <= info.high + 1e-6)).all())


@needs_quantus
def test_benchmark_reports_a_quantus_metric_with_intervals_and_a_verdict(tmp_path):
    """The done-criterion of issue 21: --metrics quantus:NAME appears in a saved result with
    intervals and a verdict line."""
    from test_benchmark import tiny_config

    config = tiny_config(tmp_path, n_test=12, cascade_n=4, metrics=("cosine", "quantus:Sparseness"))
    result = rvi.run_benchmark(config)
    result.save(tmp_path / "saved", figures=False)
    loaded = rvi.BenchmarkResult.load(tmp_path / "saved")
    rows = loaded.to_frame().query("metric == 'quantus:Sparseness'")
    assert len(rows) and rows[["mean", "ci_low", "ci_high"]].notna().all().all()
    assert (rows["ci_low"] <= rows["mean"] + 1e-12).all()
    lines = [line for line in loaded.verdicts if line.startswith("quantus:Sparseness ")]
    summary = json.loads((tmp_path / "saved" / "summary.json").read_text())
    assert len(lines) == 1 and lines[0] in summary["verdicts"]
    assert "quantus:Sparseness" in (tmp_path / "saved" / "tables.md").read_text()
