import dataclasses
import json

import pytest
import torch

from rvi.cli import _build_parser, main
from rvi.config import BenchmarkConfig, TrainConfig


def _flags(subcommand):
    parser = _build_parser()
    sub = parser._subparsers._group_actions[0].choices[subcommand]
    return {opt for action in sub._actions for opt in action.option_strings}


def test_every_config_field_has_exactly_one_flag():
    flags = _flags("train")
    for spec in dataclasses.fields(TrainConfig):
        if spec.name == "attack":
            continue
        assert "--" + spec.name.replace("_", "-") in flags
    assert {"--attack-eps", "--attack-alpha", "--attack-steps", "--attack-random-start"} <= flags
    bench = _flags("bench")
    for spec in dataclasses.fields(BenchmarkConfig):
        if spec.name not in ("natural", "robust", "attack"):
            assert "--" + spec.name.replace("_", "-") in bench, spec.name
    assert {"--natural-epochs", "--robust-epochs", "--robust-attack-eps", "--attack-steps"} <= bench


def test_help_explains_each_flag(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = capsys.readouterr().out
    flat = " ".join(text.split())
    assert "--robust-attack-eps" in text and "the largest pixel change (Linf)" in flat
    assert "(default: per dataset: mnist 0.3, mnist-5k 0.3, fashion-mnist 0.1, cifar10 8/255" in flat
    assert "(default: per dataset: mnist 0.1, mnist-5k 0.1, fashion-mnist 0.0333333, cifar10 2/255" \
        in flat


@pytest.mark.parametrize("argv, file, eps, alpha", [
    (["--dataset", "cifar10"], None, 8 / 255, 2 / 255),
    (["--dataset", "fashion-mnist"], None, 0.1, 0.0333333333),
    ([], {"dataset": "cifar10"}, 8 / 255, 2 / 255),
    (["--dataset", "cifar10"], {"dataset": "mnist"}, 8 / 255, 2 / 255),
    ([], None, 0.3, 0.1),
])
def test_attack_defaults_follow_the_dataset(tmp_path, argv, file, eps, alpha):
    config = _bench_config(argv, tmp_path, file)
    for attack in (config.attack, config.robust.attack, config.natural.attack):
        assert (attack.eps, attack.alpha, attack.steps) == (eps, alpha, 7)


def test_given_attack_values_win_over_the_dataset_defaults(tmp_path):
    config = _bench_config(["--dataset", "cifar10", "--attack-eps", "0.05",
                            "--robust-attack-steps", "3"], tmp_path, {"robust": {"lr": 0.01}})
    # the given field wins, the others keep CIFAR-10's defaults
    assert (config.attack.eps, config.attack.alpha) == (0.05, 2 / 255)
    assert (config.robust.attack.eps, config.robust.attack.steps, config.robust.lr) == \
        (8 / 255, 3, 0.01)
    assert config.robust.adversarial and not config.natural.adversarial


def test_train_attack_follows_the_dataset():
    from rvi.cli import _train_config

    args = _build_parser().parse_args(["train", "--dataset", "cifar10", "--adversarial"])
    assert (_train_config(args).attack.eps, _train_config(args).attack.alpha) == (8 / 255, 2 / 255)
    args = _build_parser().parse_args(["train", "--dataset", "fashion-mnist", "--adversarial",
                                       "--attack-alpha", "0.05"])
    assert (_train_config(args).attack.eps, _train_config(args).attack.alpha) == (0.1, 0.05)


def test_train_then_evaluate(tmp_path, capsys):
    out = tmp_path / "models"
    assert main(["train", "--dataset", "synthetic", "--epochs", "1", "--out", str(out),
                 "--quiet"]) == 0
    (checkpoint,) = out.iterdir()
    assert checkpoint.name.startswith("synthetic-lenet-natural-")
    capsys.readouterr()
    assert main(["evaluate", str(checkpoint), "--attacks", "fgsm",
                 "--attack-eps", "0.1", "--n", "32", "--json"]) == 0  # dataset from the checkpoint
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 32 and set(result) == {"n", "clean", "FGSM eps=0.1"}
    assert main(["evaluate", str(checkpoint), "--split", "train", "--attacks", "fgsm"]) == 2
    assert "--split train is the split checkpoint" in capsys.readouterr().err
    assert main(["evaluate", str(checkpoint), "--attacks", "pgd-40x5", "pgd-x"]) == 2
    assert "--attacks: eval_attacks entry must be fgsm, pgd, pgd-STEPSxRESTARTS or autoattack; " \
        "got 'pgd-x'" in capsys.readouterr().err
    assert main(["evaluate", str(checkpoint), "--split", "train", "--allow-train-split",
                 "--attacks", "fgsm", "--n", "8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 8
    assert main(["evaluate", str(checkpoint), "--model", "madry-cnn"]) == 2
    assert "--model 'madry-cnn' differs from the checkpoint's architecture 'lenet'" \
        in capsys.readouterr().err


def test_evaluate_old_checkpoint_needs_an_explicit_dataset(tmp_path, capsys):
    from rvi.models.train import save_checkpoint
    import rvi

    path = tmp_path / "old.pt"
    save_checkpoint(path, rvi.build_model("lenet"), TrainConfig(), [], architecture="lenet")
    assert main(["evaluate", str(path), "--attacks", "fgsm"]) == 2
    assert "records no dataset" in capsys.readouterr().err
    assert main(["evaluate", str(path), "--dataset", "synthetic", "--attacks", "fgsm", "--n", "4",
                 "--json"]) == 0


def test_evaluate_refuses_test_images_that_were_training_images(tmp_path, monkeypatch, capsys):
    """A model trained on "mnist" scored on "mnist-5k" test images it saw in training."""
    import rvi
    from rvi.data import Dataset, make_synthetic
    from rvi.models.train import save_checkpoint

    small = make_synthetic(40, 20)
    big = Dataset("mnist", torch.cat([small.train_images, small.test_images[:5]]),
                  torch.cat([small.train_labels, small.test_labels[:5]]),
                  small.test_images, small.test_labels, split={"train": "official train"})
    subset = dataclasses.replace(small, name="mnist-5k")
    monkeypatch.setattr(rvi.cli, "load_dataset",
                        lambda name, *a, **k: {"mnist": big, "mnist-5k": subset}[name])
    path = tmp_path / "m.pt"
    save_checkpoint(path, rvi.build_model("lenet"), TrainConfig(), [], architecture="lenet",
                    dataset=big.info())
    assert main(["evaluate", str(path), "--dataset", "mnist-5k", "--attacks", "fgsm"]) == 2
    assert "5 of the 20 mnist-5k test images are among the mnist training images" \
        in capsys.readouterr().err
    assert main(["evaluate", str(path), "--dataset", "mnist-5k", "--allow-train-split",
                 "--attacks", "fgsm", "--json"]) == 0


def test_bad_flag_value_is_a_clear_error(tmp_path, capsys):
    code = main(["train", "--dataset", "synthetic", "--attack-eps", "2.0", "--out", str(tmp_path)])
    assert code == 2
    assert "eps must be in (0.0, 1.0], got 2.0" in capsys.readouterr().err


def test_bench_writes_results_and_prints_the_table(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"dataset": "synthetic", "n_test": 16, "metrics": ["cosine"],
                                  "methods": ["saliency"], "controls": ["image"],
                                  "eval_attacks": ["fgsm"], "natural": {"epochs": 1},
                                  "robust": {"adversarial": True, "epochs": 1,
                                             "attack": {"steps": 1}}}))
    args = ["bench", "--config", str(config), "--robust-attack-steps", "2", "--attack-steps", "1",
            "--bootstrap", "100", "--cache-dir", str(tmp_path / "cache"),
            "--out-dir", str(tmp_path / "out"), "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out  # the short summary only
    assert printed.startswith("rvi bench: lenet on synthetic") and "## " not in printed
    assert "cosine ↑" in printed and f"full tables: {tmp_path / 'out' / 'tables.md'}" in printed
    assert max(len(line) for line in printed.splitlines()) <= 100
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())["config"]
    assert saved["n_test"] == 16 and saved["methods"] == ["saliency"]          # from the file
    assert saved["robust"]["attack"]["steps"] == 2                             # flag wins
    assert saved["robust"]["epochs"] == 1 and saved["natural"]["epochs"] == 1  # file wins
    assert main(args) == 2  # refuses to overwrite
    assert "already holds a result" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0
    tables = (tmp_path / "out" / "tables.md").read_text()
    (tmp_path / "out" / "tables.md").unlink()
    capsys.readouterr()
    assert main(["report", str(tmp_path / "out"), "--full"]) == 0
    assert (tmp_path / "out" / "tables.md").read_text() == tables
    printed = capsys.readouterr().out  # the summary, then every table
    assert printed.startswith("rvi bench: lenet on synthetic") and "## Verdicts" in printed
    assert printed.index("full tables:") < printed.index("## Accuracy")
    assert main(["report", str(tmp_path)]) == 2
    assert "no rvi result in" in capsys.readouterr().err


def _bench_config(argv, tmp_path, file=None):
    """The BenchmarkConfig ``rvi bench argv`` would run (optionally with a --config file)."""
    from rvi.cli import _merged_config

    path = None
    if file is not None:
        path = tmp_path / "config.json"
        path.write_text(json.dumps(file))
        argv = ["--config", str(path)] + argv
    args = _build_parser().parse_args(["bench"] + argv)
    return _merged_config(BenchmarkConfig, args, file_path=args.config)


@pytest.mark.parametrize("argv, field, expected", [
    (["--no-download"], "download", False),
    (["--download"], "download", True),
    (["--no-transfer"], "transfer", False),
    (["--transfer"], "transfer", True),
    (["--n-test", "7"], "n_test", 7),
    (["--n-test=7"], "n_test", 7),
    (["--seeds", "1", "2"], "seeds", (1, 2)),
])
def test_every_flag_spelling_beats_the_config_file(tmp_path, argv, field, expected):
    file = {"download": not expected if isinstance(expected, bool) else True,
            "transfer": not expected if isinstance(expected, bool) else False,
            "n_test": 3, "seeds": [5]}
    assert getattr(_bench_config(argv, tmp_path, file), field) == expected


def test_file_values_beat_defaults_and_untyped_flags_do_not_override(tmp_path):
    config = _bench_config(["--n-test", "4"], tmp_path, {"download": False, "transfer": True})
    assert config.download is False and config.transfer is True and config.n_test == 4


@pytest.mark.parametrize("argv", [["--n-tes", "3"], ["--no-down"], ["--overwr"],
                                  ["--robust-ep", "2"]])
def test_abbreviated_flags_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _build_parser().parse_args(["bench"] + argv)
    assert exit_info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_abbreviations_refused_in_train_and_evaluate(capsys):
    for argv in (["train", "--epoch", "2"], ["evaluate", "x.pt", "--allow-train"]):
        with pytest.raises(SystemExit):
            _build_parser().parse_args(argv)
    assert "unrecognized arguments" in capsys.readouterr().err


def test_partial_nested_recipe_is_filled_from_the_benchmark_recipe(tmp_path):
    config = _bench_config([], tmp_path, {"natural": {"epochs": 5},
                                          "robust": {"attack": {"steps": 3}}})
    default = BenchmarkConfig()
    assert config.natural == dataclasses.replace(default.natural, epochs=5)
    assert config.robust.attack == dataclasses.replace(default.robust.attack, steps=3)
    # filled from the benchmark's robust recipe, not from TrainConfig() (which is natural)
    assert config.robust == dataclasses.replace(default.robust, attack=config.robust.attack)
    assert config.robust.adversarial and not TrainConfig().adversarial


def test_nested_flag_on_top_of_a_partial_file_recipe(tmp_path):
    config = _bench_config(["--natural-lr", "0.01", "--no-robust-attack-random-start"], tmp_path,
                           {"natural": {"epochs": 5}})
    assert config.natural.epochs == 5 and config.natural.lr == 0.01
    assert config.robust.attack.random_start is False


@pytest.mark.parametrize("file, message", [
    ([1, 2], "must hold a JSON object"),
    ({"natral": {}}, "unknown BenchmarkConfig field"),
    ({"natural": {"epoch": 3}}, "unknown TrainConfig field"),
    ({"natural": 5}, "natural must be a TrainConfig, got 5"),
])
def test_bad_config_files(tmp_path, file, message, capsys):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(file))
    assert main(["bench", "--config", str(path), "--out-dir", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_unreadable_config_file_names_it(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text("{not json")
    assert main(["bench", "--config", str(path)]) == 2
    assert f"--config {str(path)!r} is not a readable JSON file" in capsys.readouterr().err


def test_train_flag_spellings(tmp_path):
    from rvi.cli import _merged_config

    args = _build_parser().parse_args(["train", "--no-attack-random-start", "--epochs=2",
                                       "--adversarial"])
    config = _merged_config(TrainConfig, args)
    assert config.epochs == 2 and config.adversarial and config.attack.random_start is False
    assert _build_parser().parse_args(["train", "--no-download"]).download is False


def test_report_on_a_corrupt_result_names_the_file(tmp_path, capsys):
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "result.json.gz").write_bytes(b"\x1f\x8b\x08\x00truncated")
    assert main(["report", str(folder)]) == 2
    err = capsys.readouterr().err
    assert str(folder / "result.json.gz") in err and "not a readable gzip file" in err


def test_evaluate_missing_checkpoint(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "none.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_bench_and_train_refuse_a_bad_out_before_any_work(tmp_path, monkeypatch, capsys):
    import rvi.studies.benchmark

    def no_run(*args, **kwargs):
        raise AssertionError("ran the benchmark before checking --out-dir")

    monkeypatch.setattr(rvi.cli, "run_benchmark", no_run)
    file = tmp_path / "file.txt"
    file.write_text("x")
    assert main(["bench", "--dataset", "synthetic", "--out-dir", str(file)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    assert main(["bench", "--dataset", "synthetic", "--out-dir", str(tmp_path / "other")]) == 2
    assert "is not an rvi result" in capsys.readouterr().err
    assert main(["train", "--dataset", "synthetic", "--out", str(file)]) == 2
    assert f"--out must be a folder, got the file {str(file)!r}" in capsys.readouterr().err


def test_evaluate_a_synthetic_model_of_another_size_on_another_dataset(tmp_path, capsys):
    """The training data is rebuilt at the recorded size, so the overlap check can run."""
    from rvi.models.cache import get_trained_model
    from rvi.data import make_synthetic

    _, _, checkpoint = get_trained_model(make_synthetic(100, 40), "lenet",
                                         TrainConfig(epochs=1, batch_size=100), tmp_path, quiet=True)
    assert main(["evaluate", str(checkpoint), "--dataset", "mnist-5k", "--attacks", "fgsm",
                 "--n", "8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 8
    assert main(["evaluate", str(checkpoint), "--attacks", "fgsm", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 40  # the recorded synthetic test split
