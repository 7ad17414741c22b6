import dataclasses
import json

import pytest

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
    assert "--robust-attack-eps" in text and "L-inf budget" in text and "(default: 0.3)" in text


def test_train_then_evaluate(tmp_path, capsys):
    out = tmp_path / "models"
    assert main(["train", "--dataset", "synthetic", "--epochs", "1", "--out", str(out),
                 "--quiet"]) == 0
    (checkpoint,) = out.iterdir()
    assert checkpoint.name.startswith("synthetic-lenet-natural-")
    capsys.readouterr()
    assert main(["evaluate", str(checkpoint), "--dataset", "synthetic", "--attacks", "fgsm",
                 "--attack-eps", "0.1", "--n", "32", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 32 and set(result) == {"n", "clean", "FGSM eps=0.1"}


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
    printed = capsys.readouterr().out
    assert "## Accuracy" in printed and "## Verdicts" in printed
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
    assert main(["report", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "tables.md").read_text() == tables
    assert "## Verdicts" in capsys.readouterr().out
    assert main(["report", str(tmp_path)]) == 2
    assert "no rvi result in" in capsys.readouterr().err
