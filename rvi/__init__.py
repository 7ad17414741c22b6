"""rvi: are adversarially robust neural networks more interpretable?

Adversarial examples come from torchattacks, attributions from Captum; rvi trains the models,
scores how clean their saliency maps are (with sanity controls) and reports the comparison.
"""

from . import controls, distributed, faithfulness, relative, similarity
from . import quantus_metrics  # noqa: F401 (registers the quantus:NAME metrics after rvi's own)
from ._modelstate import prefer_channels_last
from .attacks import attack
from .benchmark import run_benchmark
from .compare import compare
from .config import AttackConfig, BenchmarkConfig, SweepConfig, TrainConfig
from .data import DATASETS, Dataset, load_dataset
from .evaluate import evaluate, predict
from .metrics import METRICS, cleanliness, score
from .models import MODELS, build_model
from .result import BenchmarkResult
from .saliency import METHODS, Attribution, explain
from .sweep import run_sweep
from .sweep_result import SweepResult
from .train import load_checkpoint, load_model, new_model, train_model, training_summary
from .version import __version__  # noqa: F401 (rvi.__version__)
from .zoo import gbp_safe_copy, load_robustbench


__all__ = [
    "AttackConfig", "Attribution", "BenchmarkConfig", "BenchmarkResult", "DATASETS", "Dataset",
    "METHODS", "METRICS", "MODELS", "SweepConfig", "SweepResult", "TrainConfig", "attack",
    "build_model", "cleanliness", "compare", "controls", "distributed", "evaluate", "explain",
    "faithfulness", "gbp_safe_copy", "load_checkpoint", "load_dataset", "load_model",
    "load_robustbench", "new_model", "predict",
    "prefer_channels_last", "relative", "run_benchmark", "run_sweep", "score", "similarity", "train_model",
    "training_summary",
]
