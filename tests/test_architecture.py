"""rvi's imports follow the layers written in docs/architecture.md: every module is placed in a
layer, imports only from its own layer or below, at module level, without circles and without
another module's private names."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "rvi"
LAYERS_DOC = ROOT / "docs" / "architecture.md"


def documented_layers() -> dict:
    """``{module: layer number}`` from the layer table of docs/architecture.md (rows
    ``| N name | `module`, `module` | ... |``)."""
    layers = {}
    for line in LAYERS_DOC.read_text().splitlines():
        row = re.match(r"\|\s*(\d+)\b[^|]*\|([^|]*)\|", line)
        if row:
            for module in re.findall(r"`([A-Za-z_]+)`", row.group(2)):
                layers[module] = int(row.group(1))
    return layers


def rvi_imports(path: Path) -> list:
    """``(line, imported rvi module, imported names, at module level)`` for each import of an
    rvi module in the file (relative imports and ``rvi.x`` alike)."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            parts = (node.module or "").split(".")
            if node.level == 1:
                module = parts[0] or None
            elif node.level == 0 and parts[0] == "rvi":
                module = parts[1] if len(parts) > 1 else None
            else:
                continue
            names = [alias.name for alias in node.names]
            if module is None:  # from . import x, y: each name is a module
                found += [(node.lineno, name, [], id(node) in top_level) for name in names]
            else:
                found.append((node.lineno, module, names, id(node) in top_level))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "rvi" and len(parts) > 1:
                    found.append((node.lineno, parts[1], [], id(node) in top_level))
    return found


MODULES = sorted(p.stem for p in PACKAGE.glob("*.py"))
LAYERS = documented_layers()
IMPORTS = {m: rvi_imports(PACKAGE / f"{m}.py") for m in MODULES}


def test_every_module_has_a_documented_layer():
    missing = [m for m in MODULES if m not in LAYERS]
    assert not missing, f"add these modules to the layer table of {LAYERS_DOC.name}: {missing}"
    gone = [m for m in LAYERS if m not in MODULES]
    assert not gone, f"the layer table of {LAYERS_DOC.name} names modules that do not exist: {gone}"


@pytest.mark.parametrize("module", MODULES)
def test_imports_go_down_the_layers_at_module_level(module):
    for line, target, names, top in IMPORTS[module]:
        where = f"rvi/{module}.py:{line} imports {target}"
        assert target in LAYERS, f"{where}, which is not an rvi module in the layer table"
        assert LAYERS[target] <= LAYERS[module], \
            f"{where} (layer {LAYERS[target]}) from layer {LAYERS[module]}: an upward import"
        assert top, f"{where} inside a function: import it at the top of the module"
        private = [n for n in names if n.startswith("_") and n != "__version__"]
        assert not private, f"{where}'s private names {private}: make them public or move them"


def test_no_import_circles():
    graph = {m: {t for _, t, _, _ in IMPORTS[m] if t != m} for m in MODULES}
    graph["__init__"] = set()  # the package imports everything; nothing imports it back
    state: dict = {}

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycle = path[path.index(target):] + [target]
                pytest.fail(f"import circle: {' -> '.join(cycle)}")
            if target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in MODULES:
        if module not in state:
            visit(module, [module])


def test_the_checker_sees_local_private_and_upward_imports(tmp_path):
    """The parser finds what the rules are about (else the tests above could not fail)."""
    source = tmp_path / "example.py"
    source.write_text("from . import stats, records\nfrom .pipeline import _private\n"
                      "import rvi.cli\n\ndef f():\n    from .report import markdown\n")
    assert rvi_imports(source) == [
        (1, "stats", [], True), (1, "records", [], True), (2, "pipeline", ["_private"], True),
        (3, "cli", [], True), (6, "report", ["markdown"], False)]
    assert LAYERS["cli"] > LAYERS["pipeline"] > LAYERS["records"] > LAYERS["_checks"]
