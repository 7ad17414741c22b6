"""The leaf module of checks and registries (rvi/_checks.py)."""

import ast
from pathlib import Path

import pytest
import torch

import rvi
from rvi import _checks


def _rvi_imports(module: str) -> set:
    tree = ast.parse(Path(rvi.__file__).with_name(f"{module}.py").read_text())
    return {node.module for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 1}


def test_checks_is_a_leaf_and_config_imports_only_it():
    assert _rvi_imports("_checks") == set()
    assert _rvi_imports("config") == {"_checks"}


def test_registries_are_reexported_and_agree():
    assert rvi.data.DATASETS == _checks.DATASETS == rvi.DATASETS
    assert rvi.models.MODELS == _checks.MODELS
    assert rvi.saliency.METHODS == _checks.METHODS
    assert tuple(rvi.metrics.METRICS) == _checks.METRIC_NAMES
    assert rvi.config.CONTROLS == _checks.CONTROLS
    assert rvi.attacks.check_images is _checks.check_images and rvi.attacks.seeded is _checks.seeded


@pytest.mark.parametrize("call, message", [
    (lambda: _checks.check_range("eps", 2.0, 0.0, 1.0), r"eps must be in \(0.0, 1.0\], got 2.0"),
    (lambda: _checks.check_range("eps", float("nan"), 0.0, 1.0), "eps must be in"),
    (lambda: _checks.check_range("eps", "0.1", 0.0, 1.0), "eps must be in .*got '0.1'"),
    (lambda: _checks.check_int("steps", 1.5, 1), "steps must be an integer >= 1, got 1.5"),
    (lambda: _checks.check_int("steps", True, 1), "steps must be an integer >= 1, got True"),
    (lambda: _checks.check_bool("transfer", 1), "transfer must be True or False, got 1"),
    (lambda: _checks.check_choice("model", "vgg", ("lenet",)), "model must be one of lenet; got 'vgg'"),
    (lambda: _checks.check_choice("model", ["x"], ("lenet",)), "model must be one of lenet"),
    (lambda: _checks.optional_int(0, "n"), "n must be an integer >= 1, got 0"),
    (lambda: _checks.check_labels(torch.tensor([0, 12, 3]), 10),
     r"labels must be in \[0, 10\), got values in \[0, 12\]"),
    (lambda: _checks.check_images(torch.rand(2, 1, 4, 4), torch.tensor([0, 10]), num_classes=10),
     r"labels must be in \[0, 10\)"),
])
def test_checks_name_argument_value_and_expectation(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_checks_accept_good_values():
    _checks.check_range("eps", 1.0, 0.0, 1.0)
    _checks.check_range("momentum", 0.0, 0.0, 1.0, low_open=False)
    _checks.check_labels(torch.tensor([0, 9]), 10)
    assert _checks.optional_int(None, "n") is None
