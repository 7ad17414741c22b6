"""README.md's Python blocks: every name they use exists (fast), and they run as written (slow)."""

import ast
import dataclasses
import re
from pathlib import Path

import pytest

import rvi

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README.md has no python block"
    return blocks


def _rvi_attribute_chains(tree: ast.AST) -> list:
    """``["TrainConfig", "train.training_summary", ...]`` for every ``rvi.a.b`` in the code."""
    chains = []
    for node in ast.walk(tree):
        parts = []
        while isinstance(node, ast.Attribute):
            parts.insert(0, node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id == "rvi" and parts:
            chains.append(".".join(parts))
    return chains


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_block_names_exist(index):
    tree = ast.parse(python_blocks()[index])
    for chain in _rvi_attribute_chains(tree):
        target = rvi
        for part in chain.split("."):
            if not dataclasses.is_dataclass(target) or not isinstance(target, type):
                assert hasattr(target, part), f"README uses rvi.{chain}, which does not exist"
            target = getattr(target, part, None)
    for node in ast.walk(tree):  # keyword arguments of the config classes are fields
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("BenchmarkConfig", "TrainConfig", "AttackConfig", "SweepConfig"):
            fields = {f.name for f in dataclasses.fields(getattr(rvi, node.func.attr))}
            for keyword in node.keywords:
                assert keyword.arg in fields, f"{node.func.attr} has no field {keyword.arg!r}"


@pytest.mark.slow
def test_readme_blocks_run_as_written(tmp_path, monkeypatch, capsys):
    """Runs each block in order, in one namespace, in a temporary folder with its own model
    cache; the robust model of the "bring your own model" block must reach the numbers the
    README states (>= 95% clean, >= 80% PGD-7 on the 1,000 mnist-5k test images)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RVI_CACHE_DIR", str(tmp_path / "cache"))
    namespace: dict = {}
    for block in python_blocks():
        exec(compile(block, str(README), "exec"), namespace)
    accuracy = namespace["accuracy"]
    assert accuracy["clean"] >= 0.95
    assert accuracy[rvi.AttackConfig().label] >= 0.80
    assert "## Verdicts" in capsys.readouterr().out
