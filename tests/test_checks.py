"""The leaf modules of checks (rvi/_core/checks.py) and registries (rvi/_core/registry.py)."""

import ast
import dataclasses
from pathlib import Path

import pytest
import torch

import rvi
from rvi._core import catalog, checks as _checks, formatting
from rvi._core.registry import FAMILIES, METHOD_REGISTRY, METRIC_REGISTRY, Method, Metric, Registry


def _rvi_imports(module: str) -> set:
    """The rvi modules ``rvi/<module>.py`` imports, as written (``.._core.checks``, ``.errors``)."""
    tree = ast.parse(Path(rvi.__file__).parent.joinpath(f"{module}.py").read_text())
    return {"." * node.level + (node.module or "") for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level}


def test_checks_and_registry_are_leaves_and_config_imports_only_them_and_the_registries():
    assert _rvi_imports("errors") == _rvi_imports("_core/formatting") == set()
    assert _rvi_imports("_core/checks") == {"..errors"}  # its checks raise rvi's exception classes
    assert _rvi_imports("_core/registry") == _rvi_imports("_core/catalog") == set()
    # config checks names against the registries, taken from their owner packages, and reads
    # older recipe dicts through the compat module
    assert _rvi_imports("config") == {"._core.catalog", "._core.checks", "._core.compat",
                                      "._core.registry", ".attribution", ".metrics"}
    assert _rvi_imports("_core/compat") == set()


def test_every_listed_name_works_where_it_is_accepted():
    """The fixed name lists are what the code behind them does: every architecture builds and
    gives 10 logits for its datasets' image shape, every control is a config's control, every
    dataset has an image shape; the lists name no method or metric (the registries do)."""
    for name in catalog.MODELS:
        channels = 3 if name == "resnet18" else 1
        size = 32 if name == "resnet18" else 28
        with torch.no_grad():
            assert rvi.build_model(name, channels).eval()(torch.rand(1, channels, size, size)).shape \
                == (1, 10), name
    for control in catalog.CONTROLS:
        assert rvi.BenchmarkConfig(controls=(control,)).controls == (control,)
    assert set(catalog.IMAGE_SHAPES) == set(catalog.DATASETS) - {"synthetic"}
    assert not hasattr(catalog, "METHODS") and not hasattr(catalog, "METRIC_NAMES")


def test_configs_accept_exactly_the_registered_names():
    for name in METHOD_REGISTRY.names():
        assert rvi.BenchmarkConfig(methods=(name,)).methods == (name,)
    for name in METRIC_REGISTRY:
        assert rvi.BenchmarkConfig(metrics=(name,)).metrics == (name,)
    with pytest.raises(ValueError, match="methods"):
        rvi.BenchmarkConfig(methods=("lrp",))
    with pytest.raises(ValueError, match="metrics"):
        rvi.BenchmarkConfig(metrics=("sharpness",))
    assert isinstance(rvi.METHODS, tuple) and rvi.METHODS == METHOD_REGISTRY.names()


def _metric(name, **kwargs):
    return Metric(name, 0.0, 1.0, True, False, True, "a test metric", function=lambda *a, **k: None,
                  **kwargs)


def test_a_duplicate_name_is_refused_and_names_keep_their_order():
    registry = Registry("metric")
    first = registry.register(_metric("one"))
    registry.register(_metric("two"))
    with pytest.raises(ValueError, match="metric 'one' is already registered"):
        registry.register(_metric("one"))
    assert registry["one"] is first and registry.names() == ("one", "two") and len(registry) == 2
    with pytest.raises(ValueError, match="non-empty string name"):
        registry.register(_metric(""))
    for name in ("cosine", "deletion"):  # the real registries refuse a second copy too
        with pytest.raises(ValueError, match=f"metric '{name}' is already registered"):
            METRIC_REGISTRY.register(METRIC_REGISTRY[name])
    with pytest.raises(ValueError, match="method 'smoothgrad' is already registered"):
        METHOD_REGISTRY.register(METHOD_REGISTRY["smoothgrad"])
    with pytest.raises(TypeError):
        registry["three"] = first  # read-only


@pytest.mark.parametrize("make, message", [
    (lambda: _metric("x", family="style"), "family must be one of cleanliness, faithfulness"),
    (lambda: Metric("x", 0.0, 1.0, True, False, True, "d", function=None), "callable function"),
    (lambda: _metric("x", expansion=-1), "expansion must be an integer >= 0"),
    (lambda: _metric("x", passes_per_image=1.5), "passes_per_image must be an integer >= 0"),
    (lambda: Method("x", "Captum()", print, "d", random_draws=True), "needs skip_draws"),
    (lambda: Method("x", "Captum()", print, "d", expansion=5), "needs its expansion_option"),
    (lambda: Method("x", "Captum()", None, "d"), "callable attribute"),
])
def test_incomplete_objects_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_every_registered_metric_is_complete():
    fields = {f.name for f in dataclasses.fields(Metric)}
    assert fields >= {"name", "function", "higher_is_better", "low", "high", "family", "needs_model",
                      "needs_targets", "needs_method", "uses_map", "uses_sign", "random_draws",
                      "expansion", "passes_per_image", "align_shards", "description", "cannot_show"}
    for name, metric in METRIC_REGISTRY.items():
        assert isinstance(metric, Metric) and metric.name == name
        assert callable(metric.function) and metric.description and metric.cannot_show
        assert metric.low < metric.high and metric.family in FAMILIES
        assert not metric.needs_targets or metric.needs_model
        # a metric that calls the model costs passes and cuts its calls by its expansion
        assert (metric.expansion > 0) == metric.needs_model == (metric.passes_per_image > 0)
        assert metric.passes_per_image >= metric.expansion
        assert not metric.align_shards or metric.random_draws
        assert not metric.uses_sign or metric.uses_map
        assert metric.images_per_call(250) == (max(1, 250 // metric.expansion)
                                               if metric.expansion else 250)


def test_every_registered_method_is_complete():
    for name, method in METHOD_REGISTRY.items():
        assert isinstance(method, Method) and method.name == name
        assert callable(method.attribute) and callable(method.settings)
        assert method.captum and method.description
        assert method.expansion >= 1 and method.passes_per_image == method.expansion + 1
        assert not method.random_draws or method.skip_draws is not None


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


def test_installed_reads_the_distribution_not_the_module_name(monkeypatch, tmp_path):
    """A module named like a package is not the package (torchattacks 3.5.1 ships a robustbench
    folder): only the distribution's metadata makes it installed."""
    (tmp_path / "rvi_standin").mkdir()
    (tmp_path / "rvi_standin" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert __import__("rvi_standin") is not None
    assert not _checks.installed("rvi_standin")
    with pytest.raises(ImportError, match=r'^stand-ins need the rvi_standin package, which is not '
                                          r'installed: pip install "rvi\[extra\]"$'):
        _checks.require_installed("rvi_standin", "extra", "stand-ins")
    info = tmp_path / "rvi_standin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rvi_standin\nVersion: 1.0\n")
    assert _checks.installed("rvi_standin")
    _checks.require_installed("rvi_standin", "extra", "stand-ins")
    assert _checks.installed("torch") and _checks.installed("captum")


def test_numbers_read_without_nan_or_p_zero():
    nan = float("nan")
    assert formatting.interval(0.4114, 0.2812, 0.5419) == "0.411 [0.281, 0.542]"
    assert formatting.interval(17.0, nan, nan, "+.3g") == "+17 —"
    assert formatting.interval(-0.5, -1.0, float("inf"), ".1f") == "-0.5 —"
    assert formatting.p_value(0.0) == formatting.p_value(1e-310) == "< 1e-300"
    assert formatting.p_value(1e-300) == "1e-300" and formatting.p_value(0.0123) == "0.012"
    assert formatting.p_value(nan) == "—"
