"""Faults a user will hit: one line and exit code 2 for a user's mistake (a traceback only for a
bug in rvi), checks before any work, a cache that checks what it serves, result folders that two
runs cannot mix, non-finite model outputs refused, and data-aware defaults for --images."""

import gzip
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import rvi
from rvi import cli
from rvi.models import cache
from rvi.report import result as result_module
from rvi.cli import main
from rvi.config import TrainConfig
from rvi.data import make_synthetic
from rvi.errors import NonFiniteOutputError, ResultNotSavedError
from rvi._core.io import file_lock, lock_path_of

REPO = Path(__file__).resolve().parents[1]
#: The cheapest compare: one map method, one metric, one control, one attack step.
CHEAP = ["--methods", "saliency", "--metrics", "cosine", "--controls", "image",
         "--eval-attacks", "fgsm", "--attack-steps", "1", "--bootstrap", "100",
         "--grid-images", "1", "--quiet"]
JIT_WARNINGS = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning",
                                          "ignore:`torch.jit.save` is deprecated:FutureWarning")


def small_cnn(seed, channels=3):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, 10))


class NaNModel(nn.Module):
    """A classifier whose logits are NaN (as after a training run that diverged)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(28 * 28, 10)

    def forward(self, x):
        return self.linear(x.flatten(1)) * float("nan")


@pytest.fixture
def files(tmp_path):
    """Two TorchScript models and a file of eight 3x12x12 images."""
    images = torch.rand(8, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    torch.save({"images": images, "labels": torch.arange(8) % 10}, tmp_path / "images.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        for seed, name in enumerate(("a", "b")):
            torch.jit.save(torch.jit.script(small_cnn(seed)), tmp_path / f"{name}.ts")
    return tmp_path


def compare_args(folder, out, *extra):
    return ["compare", "--model", f"a={folder / 'a.ts'}", "--model", f"b={folder / 'b.ts'}",
            "--images", str(folder / "images.pt"), "--attack-eps", "0.1", "--attack-alpha",
            "0.05", *CHEAP, "--out-dir", str(out), *extra]


def one_line_error(capsys, command):
    """stderr of a call that must have failed with one line ``rvi CMD: error: ...``."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"rvi {command}: error: "), err
    return lines[0]


# --- one error boundary -----------------------------------------------------------------------

@JIT_WARNINGS
def test_a_truncated_checkpoint_is_one_line_with_or_without_trust_pickle(files, capsys):
    torch.save(small_cnn(0), files / "whole.pt")  # a module saved whole, then cut short
    whole = (files / "whole.pt").read_bytes()
    (files / "cut.pt").write_bytes(whole[:len(whole) // 2])
    args = ["compare", "--model", f"a={files / 'cut.pt'}", "--model", f"b={files / 'b.ts'}",
            "--images", str(files / "images.pt"), "--attack-eps", "0.1", "--attack-alpha", "0.05",
            *CHEAP, "--out-dir", str(files / "out")]
    for extra in ([], ["--trust-pickle"]):  # the advice not to follow: --trust-pickle
        assert main(args + extra) == 2
        line = one_line_error(capsys, "compare")
        assert "cut.pt cannot be read by torch.load (truncated or damaged?)" in line
        assert "--trust-pickle" not in line
    assert not (files / "out").exists()


def test_a_bug_in_rvi_shows_its_traceback_and_says_so(monkeypatch, capsys, tmp_path):
    def broken(*args, **kwargs):
        raise RuntimeError("an rvi bug")

    monkeypatch.setattr(cli, "run_benchmark", broken)
    assert main(["bench", "--quiet", "--out-dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: an rvi bug" in err
    assert err.strip().splitlines()[-1] == (f"rvi bench: internal error: this is a bug in rvi "
                                            f"{rvi.__version__}, not in your input; please report "
                                            "it with the traceback above")


def test_an_interrupted_run_exits_130_without_a_traceback(monkeypatch, capsys, tmp_path):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_benchmark", interrupted)
    assert main(["bench", "--quiet", "--out-dir", str(tmp_path / "out")]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "interrupted" in err


def test_an_os_error_names_its_class_and_what_to_check(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    assert main(["bench", "--quiet", "--out-dir", str(tmp_path / "file" / "out")]) == 2
    assert one_line_error(capsys, "bench").endswith(f"{tmp_path / 'file'} is a file, not a folder")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli, "run_benchmark", disk_full)
    assert main(["bench", "--quiet", "--out-dir", str(tmp_path / "out")]) == 2
    assert one_line_error(capsys, "bench") == (
        "rvi bench: error: OSError: [Errno 28] No space left on device (check the path, its "
        "permissions and the free space)")


# --- validation before work -------------------------------------------------------------------

@pytest.fixture
def no_training(monkeypatch):
    """Training or attacking anything fails the test: the run must stop before."""
    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the run was checked")

    monkeypatch.setattr(cache, "train_model", forbidden)
    monkeypatch.setattr(rvi.scoring.pipeline, "attack_part", forbidden)


@pytest.mark.parametrize("flags, message", [
    (["--robust-eps-warmup-epochs", "50"],
     "robust recipe on mnist-5k (4000 training images): eps_warmup_epochs must be at most "
     "epochs (32), got 50"),
    (["--natural-epochs", "1", "--robust-epochs", "2", "--robust-threshold-start-epochs", "3"],
     "threshold_start_epochs must be at most epochs (2), got 3"),
    (["--device", "cuda:7"], "device 'cuda:7' is not available here"),
])
def test_a_bad_config_fails_before_anything_is_trained_or_cached(flags, message, tmp_path, capsys,
                                                                 no_training):
    cached, out = tmp_path / "cache", tmp_path / "out"
    assert main(["bench", "--quiet", "--cache-dir", str(cached), "--out-dir", str(out),
                 *flags]) == 2
    assert message in one_line_error(capsys, "bench")
    assert not out.exists() and not any(cached.glob("*.pt"))


def test_a_missing_optional_package_fails_before_training(tmp_path, capsys, no_training,
                                                          hide_distribution):
    hide_distribution("quantus")
    cached, out = tmp_path / "cache", tmp_path / "out"
    assert main(["bench", "--quiet", "--metrics", "quantus:Sparseness", "--cache-dir",
                 str(cached), "--out-dir", str(out)]) == 2
    line = one_line_error(capsys, "bench")
    assert "metric 'quantus:Sparseness' and the other quantus metrics need the quantus package" \
        in line and 'pip install "rvi[quantus]"' in line
    assert not out.exists() and not cached.exists()


@JIT_WARNINGS
def test_compare_checks_packages_before_the_models_run(files, capsys, no_training,
                                                       hide_distribution):
    hide_distribution("quantus")
    args = compare_args(files, files / "out")
    args[args.index("cosine")] = "quantus:Sparseness"
    assert main(args) == 2
    assert 'pip install "rvi[quantus]"' in one_line_error(capsys, "compare")


# --- a cache that checks what it serves -------------------------------------------------------

TINY = make_synthetic(64, 16)


def tiny_recipe(adversarial):
    return TrainConfig(adversarial=adversarial, epochs=1, batch_size=32,
                       attack=rvi.AttackConfig(eps=0.3, alpha=0.1, steps=1))


def test_a_checkpoint_copied_over_another_key_is_refused_moved_aside_and_retrained(tmp_path):
    natural, _, natural_path = cache.get_trained_model(TINY, "lenet", tiny_recipe(False), tmp_path,
                                                       quiet=True)
    robust_path = cache.cached_model_path(tmp_path, TINY, "lenet", tiny_recipe(True))
    robust_path.write_bytes(natural_path.read_bytes())  # the natural model under the robust key
    with pytest.warns(cache.CacheEntryRefused, match=f"cached model {robust_path.name} refused: "
                      "it records another recipe, dataset or architecture"):
        robust, history, path = cache.get_trained_model(TINY, "lenet", tiny_recipe(True),
                                                        tmp_path, quiet=True)
    assert path == robust_path
    assert cache.recorded_key(rvi.load_checkpoint(path)) == path.stem.rsplit("-", 1)[1]
    aside = list(tmp_path.glob(f"{robust_path.name}.refused-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == natural_path.read_bytes()
    assert not torch.equal(next(robust.parameters()), next(natural.parameters()))


def test_a_damaged_cache_entry_is_refused_and_retrained(tmp_path):
    path = cache.cached_model_path(tmp_path, TINY, "lenet", tiny_recipe(False))
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(cache.CacheEntryRefused, match="it cannot be read"):
        _, history, _ = cache.get_trained_model(TINY, "lenet", tiny_recipe(False), tmp_path,
                                                quiet=True)
    assert len(history) == 1


CONCURRENT_TRAINER = """
import sys
import rvi
from rvi.models import cache
from rvi.studies.benchmark import weights_fingerprint
from rvi.config import TrainConfig
from rvi.data import make_synthetic
trained = []
real = cache.train_model
cache.train_model = lambda *a, **k: trained.append(1) or real(*a, **k)
recipe = TrainConfig(epochs=2, batch_size=32)
model, history, path = cache.get_trained_model(make_synthetic(256, 16), "lenet", recipe,
                                               sys.argv[1], quiet=True)
print(len(trained), weights_fingerprint(model))
"""


def test_concurrent_trainers_of_one_key_get_one_model(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = [subprocess.Popen([sys.executable, "-c", CONCURRENT_TRAINER, str(tmp_path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for _ in range(2)]
    outputs = [run.communicate(timeout=240) for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    trained, prints = zip(*(out.split() for out, _ in outputs))
    assert sorted(trained) == ["0", "1"]  # one trained, the other loaded what it trained
    assert prints[0] == prints[1]
    assert len(list(tmp_path.glob("*.pt"))) == 1


# --- result folders that cannot mix -----------------------------------------------------------

def read_result(folder):
    """(n_test in the records, n_test in summary.json, the n in tables.md's header line)."""
    records = json.loads(gzip.decompress((folder / "result.json.gz").read_bytes()))
    summary = json.loads((folder / "summary.json").read_text())
    header = [line for line in (folder / "tables.md").read_text().splitlines()
              if " test images, seeds " in line][0]
    return records["meta"]["n_test"], summary["meta"]["n_test"], int(header.split()[1])


@JIT_WARNINGS
def test_two_processes_writing_one_folder_never_mix_it(files):
    out = files / "out"
    assert main(compare_args(files, out, "--n-test", "4")) == 0
    (out / "notes.txt").write_text("mine")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for round_ in range(3):
        runs = [subprocess.Popen([sys.executable, "-m", "rvi", *compare_args(
                    files, out, "--overwrite", "--n-test", str(n))],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                for n in (5, 6)]
        outputs = [run.communicate(timeout=240) for run in runs]
        codes = [run.returncode for run in runs]
        assert set(codes) <= {0, 2} and 0 in codes, outputs
        for code, (_, err) in zip(codes, outputs):
            if code == 2:  # refused before computing, with the reason
                assert "is being written by another rvi run" in err, err
        n = read_result(out)
        assert n[0] == n[1] == n[2] in (5, 6), f"round {round_}: files of two runs {n}"
        assert (out / "notes.txt").read_text() == "mine"
        assert not [p for p in out.parent.iterdir() if ".staging-" in p.name or
                    ".replaced-" in p.name]


@JIT_WARNINGS
def test_a_folder_another_run_writes_is_refused_before_any_work(files):
    out = files / "out"
    with file_lock(lock_path_of(out), wait=False, what="held by this test"):
        run = subprocess.run([sys.executable, "-m", "rvi", *compare_args(files, out)],
                             capture_output=True, text=True, timeout=240,
                             env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip() == (f"rvi compare: error: out folder {str(out)!r} is being written "
                                  f"by another rvi run (process {os.getpid()}); wait for it to "
                                  "finish or choose another folder")
    assert not out.exists()


@JIT_WARNINGS
def test_a_failed_save_keeps_the_old_result_and_saves_the_records_elsewhere(
        files, monkeypatch, capsys):
    out = files / "out"
    assert main(compare_args(files, out, "--n-test", "4")) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(result_module, "save_figures", disk_full)
    assert main(compare_args(files, out, "--n-test", "5", "--overwrite")) == 2
    line = one_line_error(capsys, "compare")
    assert "No space left on device" in line and "its records are saved in" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old result, whole
    fallback = [p for p in files.iterdir() if p.name.startswith("out.unsaved-")]
    assert len(fallback) == 1 and line.endswith(f"{fallback[0]} (rvi report renders them)")
    assert rvi.BenchmarkResult.load(fallback[0]).meta["n_test"] == 5


def test_save_raises_a_typed_error_naming_the_fallback(files, monkeypatch):
    images = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    models = {"a": small_cnn(0, channels=1), "b": small_cnn(1, channels=1)}
    result = rvi.compare(models, images, torch.arange(4), rvi.BenchmarkConfig(
        methods=("saliency",), metrics=("cosine",), controls=("image",), eval_attacks=(),
        bootstrap=100))

    def denied(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(result_module, "save_figures", denied)
    with pytest.raises(ResultNotSavedError) as caught:
        result.save(files / "new")
    assert not (files / "new").exists()
    assert rvi.BenchmarkResult.load(caught.value.fallback).records.equals(result.records)


# --- non-finite outputs -----------------------------------------------------------------------

def test_every_entry_point_that_runs_a_model_refuses_nan_logits():
    images = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2])
    model = NaNModel()
    message = "model NaNModel returns NaN or infinite logits for [13] of [13] images"
    for call in (lambda: rvi.explain(model, images),
                 lambda: rvi.evaluate(model, images, labels),
                 lambda: rvi.predict(model, images),
                 lambda: rvi.attack(model, images, labels, rvi.AttackConfig(steps=1))):
        with pytest.raises(NonFiniteOutputError, match=message):
            call()
    with pytest.raises(NonFiniteOutputError, match="model NaNModel returns NaN"):
        rvi.train_model(model, images, labels, TrainConfig(epochs=1), quiet=True)
    with pytest.raises(NonFiniteOutputError, match=r"models\['broken'\] returns NaN"):
        rvi.compare({"ok": small_cnn(0, channels=1), "broken": model}, images, labels)


def test_a_run_refuses_a_model_by_its_name_before_the_attacks(monkeypatch):
    from rvi.scoring.pipeline import CellSpec, score_model_set
    from rvi.scoring.records import NATURAL_ROBUST
    monkeypatch.setattr(rvi.scoring.pipeline, "attack_part", lambda *a, **k: pytest.fail("attacked"))
    images = torch.rand(4, 1, 28, 28)
    spec = CellSpec.from_benchmark(rvi.BenchmarkConfig(), 4)
    with pytest.raises(NonFiniteOutputError, match="^robust returns NaN"):
        score_model_set(spec, 0, {"natural": small_cnn(0, channels=1), "robust": NaNModel()}, {},
                        NATURAL_ROBUST, images, torch.arange(4), 10, {})


# --- data-aware defaults and names shown literally ---------------------------------------------

@JIT_WARNINGS
def test_images_get_the_defaults_of_the_one_dataset_their_shape_fits(tmp_path, capsys):
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.save({"images": images, "labels": torch.arange(4)}, tmp_path / "cifar.pt")
    torch.save({"images": images[:, :1, 2:30, 2:30].contiguous(), "labels": torch.arange(4)},
               tmp_path / "digits.pt")
    for seed, name in enumerate(("a", "b")):
        for channels in (1, 3):
            torch.jit.save(torch.jit.script(small_cnn(seed, channels)),
                           tmp_path / f"{name}{channels}.ts")

    def run(images_file, channels, *extra):
        return main(["compare", "--model", f"a={tmp_path / f'a{channels}.ts'}", "--model",
                     f"b={tmp_path / f'b{channels}.ts'}", "--images", str(tmp_path / images_file),
                     *CHEAP, "--out-dir", str(tmp_path / f"out-{images_file}-{len(extra)}"),
                     *extra])

    assert run("cifar.pt", 3) == 0
    config = rvi.BenchmarkResult.load(tmp_path / "out-cifar.pt-0").config
    assert config.dataset == "cifar10" and config.attack.eps == pytest.approx(8 / 255)
    capsys.readouterr()
    assert run("digits.pt", 1) == 2  # MNIST (eps 0.3) and Fashion-MNIST (0.1) both fit 1x28x28
    line = one_line_error(capsys, "compare")
    assert "1x28x28 images, which fit datasets with different default attacks" in line
    assert "fashion-mnist: eps 0.1" in line and "--dataset NAME" in line
    assert run("digits.pt", 1, "--dataset", "fashion-mnist") == 0
    config = rvi.BenchmarkResult.load(tmp_path / "out-digits.pt-2").config
    assert config.attack.eps == pytest.approx(0.1)


@JIT_WARNINGS
def test_user_names_are_shown_literally_in_tables_and_figures(files):
    names = ("a|*b*", "c$x^2$_")
    args = compare_args(files, files / "out")
    args[2], args[4] = f"{names[0]}={files / 'a.ts'}", f"{names[1]}={files / 'b.ts'}"
    assert main(args) == 0
    text = (files / "out" / "tables.md").read_text()
    assert "a\\|\\*b\\*" in text and "c\\$x^2\\$\\_" in text
    lines = text.splitlines()
    header = lines.index("## Accuracy (%)") + 2  # the accuracy table: one row per model
    cells = [len(re.findall(r"(?<!\\)\|", line)) for line in lines[header:header + 4]]
    assert cells == [cells[0]] * 4, lines[header:header + 4]  # no name breaks a row
    assert lines[header + 2].startswith("| a\\|\\*b\\* ")
    assert (files / "out" / "accuracy.png").stat().st_size > 0  # math text would fail to draw
    assert "c$x^2$_" in (files / "out" / "report.html").read_text()
