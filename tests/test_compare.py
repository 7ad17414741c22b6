"""rvi.compare: models the user brings, through the benchmark's scoring path."""

import gzip
import importlib
import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rvi
from rvi.scoring import records
from rvi.analysis import stats
from rvi.studies.benchmark import weights_fingerprint
from rvi.cli import main
from rvi.config import AttackConfig, BenchmarkConfig
from rvi.scoring.controls import random_weights_model
from rvi.scoring.cell import score_model

ATTACK = AttackConfig(eps=0.1, alpha=0.05, steps=2)
METRICS = ("cosine", "alignment_logit")


class Normalize(nn.Module):
    """Per-channel (x - mean) / std, as users put normalization inside their models."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


def small_cnn(seed, channels=3, classes=10):
    """A CNN defined outside rvi, with its own normalization layer; any H, W."""
    torch.manual_seed(seed)
    return nn.Sequential(Normalize([0.4] * channels, [0.3] * channels),
                         nn.Conv2d(channels, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(32, classes))


def config(**changes):
    fields = dict(attack=ATTACK, methods=("guided_backprop",), metrics=METRICS,
                  eval_attacks=("fgsm",), bootstrap=200, cascade_n=4, randomization_draws=2, grid_images=2,
                  controls=("random_weights", "image", "cascading"), batch_size=64)
    fields.update(changes)
    return BenchmarkConfig(**fields)


@pytest.fixture(scope="module")
def colour(synthetic_module):
    """20 three-channel 20x24 images (not square, not 28x28) and their labels."""
    images = synthetic_module.test_images[:20, :, 4:24, 2:26]
    images = torch.cat([images, images.flip(-1), 1 - images], 1).contiguous()
    return images, synthetic_module.test_labels[:20].clone()


@pytest.fixture(scope="module")
def synthetic_module():
    return rvi.data.make_synthetic(10, 40)


@pytest.fixture(scope="module")
def three():
    return {"natural": small_cnn(0), "robust_a": small_cnn(1), "robust_b": small_cnn(2)}


@pytest.fixture(scope="module")
def result(three, colour):
    images, labels = colour
    return rvi.compare(three, images, labels, config())


def test_three_named_models_on_colour_images_fill_every_cell(result):
    cells = set(zip(result.records["model"], result.records["input"]))
    names = ("natural", "robust_a", "robust_b")
    assert cells == {(m, i) for m in names for i in ("natural", "adversarial")} | {
        (f"random_weights:{m}", "natural") for m in names}
    assert result.records.groupby(["model", "input"]).size().eq(20).all()
    assert result.model_set == records.ModelSet(
        names, "natural", {m: f"random_weights:{m}" for m in names})
    assert set(result.accuracy["model"]) == set(names)
    assert set(result.cascading["model"]) == set(names)


def test_each_model_is_compared_with_the_reference_on_the_same_images(result):
    diffs = result.differences
    assert set(zip(diffs["model"], diffs["versus"])) == {("robust_a", "natural"),
                                                         ("robust_b", "natural")}
    column = "guided_backprop/cosine/clean"
    records = result.records.query("input == 'natural'")
    natural = records[records["model"] == "natural"].set_index("image")[column]
    for model in ("robust_a", "robust_b"):
        own = records[records["model"] == model].set_index("image")[column]
        row = diffs.query(f"model == '{model}' and input == 'natural' and metric == 'cosine' "
                          "and reference == 'clean'").iloc[0]
        assert row["difference"] == pytest.approx(float((own - natural).mean()), rel=1e-6)
        assert row["interval"] == stats.IMAGES_INTERVAL and row["seeds"] == 1


def test_holm_runs_over_every_model_at_once(result):
    """One intersection-union p per (compared model, metric): the largest p of its main
    difference and required controls; Holm across those verdicts, all models in one family."""
    diffs, controls = result.differences, result.control_differences
    main = diffs.query("input == 'natural' and reference == 'clean'")
    main = main[main["explainer"].isin(["guided_backprop", "model"])]
    required = controls[controls["model"].isin(["robust_a", "robust_b"])
                        & (controls["role"] == "required") & controls["p"].notna()]
    assert controls.query("model == 'natural'")["p_holm"].isna().all()  # the reference's own
    verdicts = main.set_index(["model", "metric"])
    largest = verdicts["p"].copy()
    for (model, metric), group in required.groupby(["model", "metric"]):
        largest[(model, metric)] = max(largest[(model, metric)], group["p"].max())
    expected = pd.Series(stats.holm(largest.to_numpy()), index=largest.index)
    assert verdicts["p_holm"].to_numpy() == pytest.approx(expected.to_numpy())
    for _, row in required.iterrows():  # each condition carries its verdict's adjusted p
        assert row["p_holm"] == pytest.approx(expected[(row["model"], row["metric"])])
    assert int(np.isfinite(diffs["p_holm"]).sum()) == len(main)


def test_verdicts_and_tables_say_this_is_one_set_of_models(result):
    lines = result.verdicts
    assert len(lines) == 2 * len(METRICS)
    assert sum(line.count("robust_a") > 0 for line in lines) == len(METRICS)
    assert all("about the given models only" in line for line in lines)
    text = result.to_markdown()
    assert "a result for this one set of models on these images, not a claim about the " \
        "training methods" in text
    for name in ("natural", "robust_a", "robust_b", "random weights of robust_b"):
        assert name in text
    assert "## Each model - natural" in text


def test_each_models_random_weights_control_is_its_reset_copy(result, three, colour):
    images, labels = colour
    control = random_weights_model(three["robust_b"], 0)
    scores, _ = score_model(control, images, references={"clean": images},
                            methods=("guided_backprop",), metrics=("cosine",), labels=labels)
    stored = result.records.query("model == 'random_weights:robust_b'")
    np.testing.assert_allclose(stored["guided_backprop/cosine/clean"].to_numpy(),
                               next(iter(scores.values())), rtol=1e-6)
    rows = result.control_differences.query("model == 'robust_b' and control == "
                                            "'random weights' and metric == 'cosine'")
    assert len(rows) == 1


def test_models_are_described_and_left_unchanged(result, three):
    info = result.model_info.set_index("model")
    for name, model in three.items():
        assert info.loc[name, "parameters"] == sum(p.numel() for p in model.parameters())
        assert info.loc[name, "fingerprint"] == weights_fingerprint(model)
        assert info.loc[name, "class"] == "Sequential"
        assert model.training  # compare restores the mode it found
    assert info["fingerprint"].nunique() == 3


def test_fingerprint_follows_the_weights_only():
    a, b = small_cnn(0), small_cnn(0)
    assert weights_fingerprint(a) == weights_fingerprint(b)
    assert len(weights_fingerprint(a)) == 64
    b.train()  # the mode is not part of the weights
    b[1].weight.requires_grad_(False)
    assert weights_fingerprint(a) == weights_fingerprint(b)
    with torch.no_grad():
        b[1].weight[0, 0, 0, 0] += 1e-3
    assert weights_fingerprint(a) != weights_fingerprint(b)
    with torch.no_grad():
        b[0].mean[0, 0] += 1e-3  # buffers (the normalization) count too
        b[1].weight[0, 0, 0, 0] = a[1].weight[0, 0, 0, 0]
    assert weights_fingerprint(a) != weights_fingerprint(b)


def test_save_load_round_trip_keeps_the_models(result, tmp_path):
    folder = result.save(tmp_path / "out", figures=False)
    loaded = rvi.BenchmarkResult.load(folder)
    assert loaded.models == json.loads(json.dumps(result.models))
    assert loaded.model_set == result.model_set
    assert loaded.to_markdown() == result.to_markdown()
    assert loaded.verdicts == result.verdicts


def test_older_result_formats_still_read_as_natural_vs_robust(result, tmp_path):
    data = json.loads(result.to_json())
    data["format"] = "rvi-result-2"
    del data["models"]
    old = rvi.BenchmarkResult.from_json(json.dumps(data))
    assert old.models is None and old.model_set == records.NATURAL_ROBUST


def test_reference_can_be_named(three, colour):
    images, labels = colour
    out = rvi.compare(three, images[:8], labels[:8],
                      config(controls=("image",), metrics=("cosine",)), reference="robust_a")
    assert set(zip(out.differences["model"], out.differences["versus"])) == {
        ("natural", "robust_a"), ("robust_b", "robust_a")}
    assert set(out.records["model"]) == {"natural", "robust_a", "robust_b"}
    trivial = out.records.dropna(subset=["image/cosine/clean"])
    assert set(trivial["model"]) == {"robust_a"}  # stored with the reference


def test_a_list_of_model_sets_gives_seed_level_intervals(colour):
    images, labels = colour
    sets = [{"natural": small_cnn(10 + s), "robust": small_cnn(20 + s)} for s in range(2)]
    out = rvi.compare(sets, images[:8], labels[:8],
                      config(seeds=(3, 4), controls=("image",), metrics=("cosine",)))
    assert sorted(out.records["seed"].unique()) == [3, 4]
    row = out.differences.query("input == 'natural' and metric == 'cosine' and "
                                "explainer == 'guided_backprop'").iloc[0]
    assert row["seeds"] == 2 and row["interval"] == stats.SEEDS_INTERVAL
    assert len(out.model_info) == 4
    with pytest.raises(ValueError, match=r"config.seeds must have one seed per model set \(2\)"):
        rvi.compare(sets, images[:8], labels[:8], config())


# --- bad models: clear errors before any work ------------------------------------------------

class NoParameters(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :10]


class FunctionalRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 20 * 24, 10)

    def forward(self, x):
        return self.fc(F.relu(x.flatten(1)))


class NoReset(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(3 * 20 * 24, 10))

    def forward(self, x):
        return x.flatten(1) @ self.weight


class NotFinite(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 20 * 24, 10)

    def forward(self, x):
        return self.fc(x.flatten(1)) / 0.0


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if any attack, map or score is made."""
    def refuse(*args, **kwargs):
        raise AssertionError("work started before the models were checked")
    monkeypatch.setattr(importlib.import_module("rvi.studies.compare"), "score_model_set", refuse)


@pytest.mark.parametrize("bad, message", [
    (lambda: small_cnn(1, classes=3), r"^models\['robust'\] returns shape \(8, 3\), "
                                      r"expected \(8, 10\)$"),
    (lambda: NoParameters(), r"models\['robust'\] has no parameters"),
    (lambda: "model.pt", r"models\['robust'\] must be an nn.Module returning logits, got str"),
    (lambda: FunctionalRelu(), r"models\['robust'\]: .*relu"),
    (lambda: NoReset(), r"models\['robust'\]: cannot re-initialize module ''"),
    (lambda: NotFinite(), r"models\['robust'\] returns NaN or infinite logits"),
    (lambda: small_cnn(1, channels=1), r"models\['robust'\] fails on images of shape "
                                       r"\(8, 3, 20, 24\)"),
])
def test_bad_models_are_refused_by_name_before_any_work(colour, no_work, bad, message):
    images, labels = colour
    with pytest.raises(ValueError, match=message):
        rvi.compare({"natural": small_cnn(0), "robust": bad()}, images, labels, config())


def test_bad_images_labels_and_arguments_are_refused(colour, no_work):
    images, labels = colour
    pair = {"natural": small_cnn(0), "robust": small_cnn(1)}
    with pytest.raises(ValueError, match=r"images must be in \[0, 1\], got values in "
                                         r"\[-0.5, 1\]"):
        rvi.compare(pair, images - 0.5 * (images == 0), labels, config())
    with pytest.raises(ValueError, match=r"images must be in \[0, 1\], got values in \[0, 255\]"):
        rvi.compare(pair, images * 255, labels, config())
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\)"):
        rvi.compare(pair, images, labels + 10, config())
    with pytest.raises(ValueError, match=r"at least two models"):
        rvi.compare({"natural": small_cnn(0)}, images, labels, config())
    with pytest.raises(ValueError, match=r"reference must be one of 'natural', 'robust', got "
                                         r"'other'"):
        rvi.compare(pair, images, labels, config(), reference="other")
    with pytest.raises(ValueError, match=r"model names must be .* got 'random_weights:x'"):
        rvi.compare({"natural": small_cnn(0), "random_weights:x": small_cnn(1)}, images, labels,
                    config())
    with pytest.raises(ValueError, match=r"models\[1\] must name the same models"):
        rvi.compare([pair, {"natural": small_cnn(0)}], images, labels, config(seeds=(0, 1)))


def test_a_three_class_reference_sets_k_for_the_others(colour, no_work):
    images, labels = colour
    with pytest.raises(ValueError, match=r"^models\['b'\] returns shape \(8, 10\), expected "
                                         r"\(8, 3\)$"):
        rvi.compare({"a": small_cnn(0, classes=3), "b": small_cnn(1)}, images, labels % 3,
                    config())


# --- the command line ----------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning",
                            "ignore:`torch.jit.save` is deprecated:FutureWarning")
def test_cli_compares_saved_modules_and_torchscript(colour, tmp_path, capsys):
    images, labels = colour
    torch.save({"images": images[:6], "labels": labels[:6]}, tmp_path / "images.pt")
    torch.save(small_cnn(0), tmp_path / "natural.pt")
    torch.jit.save(torch.jit.script(small_cnn(1)), tmp_path / "robust.ts")
    base = ["compare", "--model", f"natural={tmp_path / 'natural.pt'}",
            "--model", f"robust={tmp_path / 'robust.ts'}", "--images", str(tmp_path / "images.pt"),
            "--methods", "saliency", "--metrics", "cosine", "--controls", "image",
            "--eval-attacks", "fgsm", "--attack-steps", "2", "--attack-eps", "0.1",
            "--attack-alpha", "0.05", "--bootstrap", "100", "--quiet",
            "--out-dir", str(tmp_path / "out")]  # 3x20x24 images: no dataset's default attack
    assert main(base) == 2  # a pickled module needs --trust-pickle
    assert "--trust-pickle" in capsys.readouterr().err
    assert main(base + ["--trust-pickle"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("rvi compare: natural, robust on images from")
    assert "these models only, not the training methods" in " ".join(text.split())
    assert "not a claim about the training methods" in (tmp_path / "out" / "tables.md").read_text()
    loaded = rvi.BenchmarkResult.load(tmp_path / "out")
    sources = loaded.model_info.set_index("model")["source"]
    assert sources["robust"].endswith("robust.ts")
    assert set(loaded.records["model"]) == {"natural", "robust"}


def test_cli_reads_rvi_checkpoints_and_refuses_bad_specs(tmp_path, capsys):
    from rvi.models.train import save_checkpoint
    from rvi.config import TrainConfig

    for seed, name in ((0, "a"), (1, "b")):
        torch.manual_seed(seed)
        save_checkpoint(tmp_path / f"{name}.pt", rvi.build_model("lenet"), TrainConfig(), [],
                        architecture="lenet")
    out = tmp_path / "out"
    args = ["compare", "--model", f"a={tmp_path / 'a.pt'}", "--model", f"b={tmp_path / 'b.pt'}",
            "--data", "synthetic", "--n-test", "6", "--methods", "guided_backprop",
            "--metrics", "cosine", "--controls", "random_weights", "--eval-attacks", "fgsm",
            "--attack-steps", "2", "--bootstrap", "100", "--quiet", "--out-dir", str(out)]
    assert main(args) == 0
    result = rvi.BenchmarkResult.load(out)
    assert set(result.records["model"]) == {"a", "b", "random_weights:a", "random_weights:b"}
    assert result.config.dataset == "synthetic"
    with gzip.open(out / "result.json.gz") as handle:
        assert json.load(handle)["format"] == "rvi-result-3"
    capsys.readouterr()
    assert main(args[:1] + ["--model", "a"] + args[3:] + ["--overwrite"]) == 2
    assert "--model must be NAME=PATH" in capsys.readouterr().err
