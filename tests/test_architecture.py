"""rvi's imports follow the layers written in docs/architecture.md: every top-level module and
subpackage of rvi is placed in a layer; a module imports only from its own layer or below, at module
level, without circles and without another module's private names; and the two registries are
filled by modules their owner packages import."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "rvi"
LAYERS_DOC = ROOT / "docs" / "architecture.md"


def documented_layers() -> dict:
    """``{component: layer number}`` from the layer table of docs/architecture.md (rows
    ``| N name | `component`, `component` | ... |``); a component is a subpackage of rvi or a
    module directly in rvi/."""
    layers = {}
    for line in LAYERS_DOC.read_text().splitlines():
        row = re.match(r"\|\s*(\d+)\b[^|]*\|([^|]*)\|", line)
        if row:
            for component in re.findall(r"`([A-Za-z_]+)/?`", row.group(2)):
                layers[component] = int(row.group(1))
    return layers


def module_name(path: Path) -> str:
    """``rvi/scoring/pipeline.py`` -> ``scoring.pipeline``; a package's ``__init__.py`` -> the
    package (``scoring``), rvi's own -> ``__init__``."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def component(module: str) -> str:
    return module.split(".")[0]


def resolve(module: str, name: str) -> str:
    """The rvi module ``module.name`` if it is one (``from package import submodule``), else
    ``module`` itself (a name it defines)."""
    candidate = name if module == "__init__" else f"{module}.{name}"
    return candidate if candidate in MODULE_SET else module


def rvi_imports(path: Path, package: str = "") -> list:
    """``(line, imported rvi module, imported names, at module level)`` for each import of an
    rvi module in the file (relative imports and ``rvi.x`` alike); ``package`` is the dotted
    package the file is in ("" for rvi/ itself)."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = [alias.name for alias in node.names]
            parts = [p for p in (node.module or "").split(".") if p]
            if node.level:
                here = package.split(".") if package else []
                base = here[:len(here) - (node.level - 1)]
            elif parts[:1] == ["rvi"]:
                base, parts = [], parts[1:]
            else:
                continue
            module = ".".join(base + parts) or "__init__"
            submodules = [name for name in names if resolve(module, name) != module]
            names = [name for name in names if name not in submodules]
            found += [(node.lineno, resolve(module, name), [], id(node) in top_level)
                      for name in submodules]
            if names:
                found.append((node.lineno, module, names, id(node) in top_level))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "rvi" and len(parts) > 1:
                    found.append((node.lineno, ".".join(parts[1:]), [], id(node) in top_level))
    return found


FILES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
MODULE_SET = set(FILES)
PACKAGES = {module_name(p) for p in PACKAGE.rglob("__init__.py")} - {"__init__"}
MODULES = sorted(FILES)
LAYERS = documented_layers()


def package_of(module: str) -> str:
    """The dotted package a module's relative imports start from."""
    if module in PACKAGES:
        return module
    return module.rsplit(".", 1)[0] if "." in module else ""


IMPORTS = {m: rvi_imports(FILES[m], package_of(m)) for m in MODULES}


def test_every_component_has_a_documented_layer():
    components = {component(m) for m in MODULES}
    missing = sorted(components - set(LAYERS))
    assert not missing, f"add these modules or packages to the layer table of {LAYERS_DOC.name}: {missing}"
    gone = sorted(set(LAYERS) - components)
    assert not gone, f"the layer table of {LAYERS_DOC.name} names components that do not exist: {gone}"


@pytest.mark.parametrize("module", MODULES)
def test_imports_go_down_the_layers_at_module_level(module):
    for line, target, names, top in IMPORTS[module]:
        where = f"rvi/{FILES[module].relative_to(PACKAGE)}:{line} imports {target}"
        assert target in MODULE_SET, f"{where}, which is not an rvi module"
        assert LAYERS[component(target)] <= LAYERS[component(module)], \
            f"{where} (layer {LAYERS[component(target)]}) from layer {LAYERS[component(module)]}: " \
            f"an upward import"
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


REGISTRIES = {"METRIC_REGISTRY": "metrics", "METHOD_REGISTRY": "attribution"}


def registering_modules(registry: str) -> set:
    """The modules that call ``REGISTRY.register(...)``."""
    found = set()
    for module, path in FILES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "register" and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == registry):
                found.add(module)
    return found


@pytest.mark.parametrize("registry", sorted(REGISTRIES))
def test_every_registering_module_is_imported_by_the_registry_owner(registry):
    """The owner package's ``__init__`` imports each module that registers into its registry, so
    the registry is complete as soon as anything imports the owner, whatever the import order."""
    owner = REGISTRIES[registry]
    registering = registering_modules(registry)
    assert registering, f"no module registers into {registry}"
    imported_by_owner = {target for _, target, _, _ in IMPORTS[owner]}
    for module in sorted(registering):
        assert component(module) == owner, f"rvi/{module} registers into {registry} outside {owner}/"
        assert module in imported_by_owner, \
            f"rvi/{owner}/__init__.py does not import {module}, which registers into {registry}"


@pytest.mark.parametrize("registry", sorted(REGISTRIES))
def test_readers_take_the_registry_from_its_owner(registry):
    """Outside its owner package, a registry is imported from the owner (whose import completes
    it), never from ``rvi._core.registry`` directly."""
    owner = REGISTRIES[registry]
    for module in MODULES:
        if component(module) == owner:
            continue
        for line, target, names, _ in IMPORTS[module]:
            assert not (target == "_core.registry" and registry in names), \
                f"rvi/{FILES[module].relative_to(PACKAGE)}:{line} takes {registry} from " \
                f"_core.registry: import it from rvi.{owner}"


def test_the_checker_sees_local_private_and_upward_imports(tmp_path):
    """The parser finds what the rules are about (else the tests above could not fail)."""
    source = tmp_path / "example.py"
    source.write_text("from . import records, stats\nfrom .pipeline import _private\n"
                      "from .._core import checks\nfrom ..metrics import METRICS\n"
                      "import rvi.cli\n\ndef f():\n    from ..report.tables import markdown\n")
    assert rvi_imports(source, "scoring") == [
        (1, "scoring.records", [], True), (1, "scoring", ["stats"], True),
        (2, "scoring.pipeline", ["_private"], True), (3, "_core.checks", [], True),
        (4, "metrics", ["METRICS"], True), (5, "cli", [], True),
        (8, "report.tables", ["markdown"], False)]
    assert LAYERS["cli"] > LAYERS["studies"] > LAYERS["report"] > LAYERS["scoring"] > LAYERS["_core"]
    assert registering_modules("METHOD_REGISTRY") == {"attribution.saliency"}
