"""RobustBench's model zoo as compared models: :func:`load_robustbench` loads a zoo model (its
checkpoint from a local folder, else downloaded by robustbench), :func:`gbp_safe_copy` gives a
model its own non-in-place ``nn.ReLU`` modules for Guided Backprop.

robustbench is an optional dependency (``pip install "rvi[robustbench]"``), imported only when a
zoo model is loaded.
"""

from __future__ import annotations

import copy
import difflib
import importlib.util
import os
import pickle
import sys
import types
import warnings
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from .._core.checks import check_choice, check_path, require_installed
from .._core.io import first_line
from .._core.modelstate import preserved_state
from ..errors import MissingPackageError, UnreadableFileError

#: The datasets and threat models of RobustBench's zoo (``corruptions_3d`` models are the
#: ``corruptions`` ones, as in ``robustbench.utils.load_model``).
DATASETS = ("cifar10", "cifar100", "imagenet")
THREAT_MODELS = ("Linf", "L2", "corruptions", "corruptions_3d")
#: The image shape of each dataset's zoo models (the example :func:`load_robustbench` checks on).
IMAGE_SHAPES = {"cifar10": (3, 32, 32), "cifar100": (3, 32, 32), "imagenet": (3, 224, 224)}
#: Notices that importing robustbench 1.1.1 prints (its dependencies' deprecations, not ours).
_IMPORT_NOISE = ((DeprecationWarning, r"Importing from timm\."),
                 (FutureWarning, r"`torch\.jit\.interface` is deprecated"),
                 (UserWarning, r"pkg_resources is deprecated"))
INSTALL = 'pip install "rvi[robustbench]"'


def default_robustbench_dir() -> Path:
    """``$XDG_CACHE_HOME/rvi/robustbench`` (default ``~/.cache/rvi/robustbench``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rvi" / "robustbench"


def _resource_filename(module: str, resource: str) -> str:
    """``pkg_resources.resource_filename`` for a module installed as files (robustbench's use)."""
    return os.path.join(os.path.dirname(sys.modules[module].__file__), resource)


def packaging_shims() -> dict:
    """``{module name: module}`` that robustbench 1.1.1 needs while it is imported.

    Its packaging has two faults: it imports ``autoattack``, but its declared dependency
    ``pyautoattack`` installs that code as the package ``pyautoattack``; and ``robustbench.loaders``
    imports ``pkg_resources`` (gone from setuptools >= 81) for ``resource_filename`` only. Each
    shim is made only when the real module is missing: ``autoattack`` (and its submodules) alias
    ``pyautoattack``'s, and ``pkg_resources`` is a stub with ``resource_filename``.
    """
    shims: dict = {}
    if importlib.util.find_spec("autoattack") is None:
        if importlib.util.find_spec("pyautoattack") is None:
            raise MissingPackageError("robustbench imports 'autoattack', which is not "
                                      "installed: pip install pyautoattack (robustbench's own "
                                      f"dependency) or {INSTALL}")
        import pyautoattack  # noqa: F401 (optional: robustbench's dependency, imported only here)
        shims = {"autoattack" + name[len("pyautoattack"):]: module
                 for name, module in sys.modules.items()
                 if name == "pyautoattack" or name.startswith("pyautoattack.")}
    if importlib.util.find_spec("pkg_resources") is None:
        shims["pkg_resources"] = types.ModuleType("pkg_resources", "rvi's stub for robustbench")
        shims["pkg_resources"].resource_filename = _resource_filename
    return shims


def import_robustbench() -> types.ModuleType:
    """The ``robustbench`` package, imported with :func:`packaging_shims` in ``sys.modules`` for
    the import only (robustbench keeps what it bound; nothing else sees the shims).

    Raises:
        ImportError: robustbench is not installed (naming ``pip install "rvi[robustbench]"``).
    """
    if "robustbench.utils" in sys.modules:
        return sys.modules["robustbench"]
    require_installed("robustbench", "robustbench", "RobustBench models")
    shims = packaging_shims()
    before = {name: sys.modules[name] for name in shims if name in sys.modules}  # None: blocked
    sys.modules.update(shims)
    try:
        with warnings.catch_warnings():
            for category, message in _IMPORT_NOISE:
                warnings.filterwarnings("ignore", message=message, category=category)
            import robustbench.utils  # noqa: F401 (optional dependency, imported only here)
    finally:
        for name in shims:
            sys.modules.pop(name, None)
        sys.modules.update(before)
    return sys.modules["robustbench"]


def load_robustbench(name: str, dataset: str = "cifar10", threat_model: str = "Linf",
                     model_dir=None) -> nn.Module:
    """RobustBench zoo model ``name`` through ``robustbench.utils.load_model``, in eval mode, its
    ReLUs made as :func:`gbp_safe_copy` makes them (in place; checked on one random image).

    Like every zoo model it takes images in [0, 1] (zoo models trained on normalized inputs hold
    the normalization; ``Standard`` and ``Carmon2019Unlabeled`` were trained on [0, 1] images) and
    returns logits; ImageNet models expect 224x224 crops. The checkpoint is read from
    ``model_dir/DATASET/THREAT_MODEL/NAME.pt`` (ensembles: ``NAME.pt_m0.pt``, ...; default folder
    :func:`default_robustbench_dir`), which robustbench downloads only when it is missing.

    Raises:
        ValueError: an unknown ``name``, ``dataset`` or ``threat_model``, or a checkpoint that
            ``torch.load(weights_only=True)`` refuses (:class:`~rvi.errors.UnreadableFileError`:
            one it cannot read at all).
        FileNotFoundError: the checkpoint is missing and robustbench could not download it.
        rvi.errors.MissingPackageError: (an ``ImportError``) robustbench is not installed.
    """
    check_choice("dataset", dataset, DATASETS)
    check_choice("threat_model", threat_model, THREAT_MODELS)
    check_path("model_dir", model_dir, optional=True)
    robustbench = import_robustbench()
    enums = robustbench.model_zoo.enums
    zoo = robustbench.model_zoo.model_dicts[enums.BenchmarkDataset(dataset)]
    folder = threat_model.replace("_3d", "")
    models = zoo.get(enums.ThreatModel(folder), {})
    if not models:
        raise ValueError(f"threat_model {threat_model!r} has no {dataset} models in RobustBench")
    if name not in models:
        close = difflib.get_close_matches(str(name), list(models), n=3)
        hint = f"did you mean {', '.join(map(repr, close))}?" if close else \
            f"one of its {len(models)} names, e.g. {next(iter(models))!r}"
        raise ValueError(f"name must be a RobustBench {dataset} {threat_model} model ({hint}), "
                         f"got {name!r}")
    model_dir = Path(model_dir) if model_dir is not None else default_robustbench_dir()
    path = model_dir / dataset / folder / f"{name}.pt"
    ids = models[name]["gdrive_id"]
    files = [Path(f"{path}_m{i}.pt") for i in range(len(ids))] if isinstance(ids, list) else [path]
    missing = [f for f in files if not f.is_file()]
    try:
        model = robustbench.utils.load_model(name, model_dir, dataset, threat_model)
    except OSError as err:
        if not missing:
            raise
        raise FileNotFoundError(f"RobustBench checkpoint {missing[0]} is missing and could not be "
                                f"downloaded ({type(err).__name__}: {err}); put it there or pass "
                                "the folder holding DATASET/THREAT_MODEL/NAME.pt") from err
    except pickle.UnpicklingError as err:
        raise ValueError(f"torch.load(weights_only=True) refuses the checkpoint of {name!r} in "
                         f"{path.parent} ({err}); if you trust the file, re-save its state_dict "
                         "alone with torch.save") from err
    except (RuntimeError, EOFError) as err:  # torch.load of a truncated or damaged file
        if missing:
            raise
        raise UnreadableFileError(f"RobustBench checkpoint of {name!r} in {path.parent} cannot be "
                                  f"read (truncated or damaged?): {first_line(err)}; delete it to "
                                  "download it again, or put an intact copy there") from err
    example = torch.rand(1, *IMAGE_SHAPES[dataset], generator=torch.Generator().manual_seed(0))
    return _own_relus(model.eval(), example)


def gbp_safe_copy(model: nn.Module, example: Optional[torch.Tensor] = None) -> nn.Module:
    """A copy of ``model`` in which every ``nn.ReLU`` that is in-place, or one module object
    registered under several names, is replaced by its own fresh ``nn.ReLU()``.

    The function is the same (in-place and not give equal values); with ``example`` ((n, C, H, W)
    on the model's device) this is checked: both run in eval mode and must return equal outputs,
    which fails only when an in-place ReLU's input is read again after it. A module whose
    ``forward`` calls ``F.relu`` (or another activation function) cannot be changed from outside:
    :func:`rvi.attribution.preflight.check_guided_backprop_model` names that module and the line calling it.

    Raises:
        ValueError: the copy's output differs from the model's on ``example``.
    """
    return _own_relus(copy.deepcopy(model), example)


def _own_relus(model: nn.Module, example: Optional[torch.Tensor]) -> nn.Module:
    """:func:`gbp_safe_copy` in place (no copy of a large zoo model)."""
    expected = _eval_output(model, example)
    seen = set()
    for parent in list(model.modules()):
        for attr, child in list(parent._modules.items()):  # named_children() skips 2nd names
            if type(child) is nn.ReLU and (child.inplace or id(child) in seen):
                setattr(parent, attr, nn.ReLU())
            seen.add(id(child))
    if example is not None and not torch.allclose(_eval_output(model, example), expected,
                                                  rtol=1e-5, atol=1e-6):
        raise ValueError(f"gbp_safe_copy changes the output of this {type(model).__name__} (an "
                         "in-place ReLU's input is read again after it); give that ReLU its own "
                         "input or use method 'saliency'")
    return model


def _eval_output(model: nn.Module, example: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """``model(example)`` in eval mode without gradients (mode restored); None without example."""
    if example is None:
        return None
    with preserved_state(model), torch.no_grad():
        return model.eval()(example)
