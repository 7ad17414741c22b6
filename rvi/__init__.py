"""rvi: are adversarially robust neural networks more interpretable?

Adversarial examples come from torchattacks, attributions from Captum; rvi trains the models,
scores how clean their saliency maps are (with sanity controls) and reports the comparison.
"""

from . import distributed
from ._core.modelstate import prefer_channels_last
from .attacks.accuracy import evaluate, predict
from .attacks.adversarial import attack
from .attribution.saliency import METHODS, Attribution, explain
from .config import AttackConfig, BenchmarkConfig, SweepConfig, TrainConfig
from .data import DATASETS, Dataset, load_dataset
from .metrics import METRICS, cleanliness, faithfulness, relative, score, similarity
from .models.architectures import MODELS, build_model
from .models.train import load_checkpoint, load_model, new_model, train_model, training_summary
from .models.zoo import gbp_safe_copy, load_robustbench
from .report.result import BenchmarkResult
from .report.sweep_result import SweepResult
from .scoring import controls
from .studies.benchmark import run_benchmark
from .studies.compare import compare
from .studies.sweep import run_sweep
from .version import __version__  # noqa: F401 (rvi.__version__)


__all__ = [
    "AttackConfig", "Attribution", "BenchmarkConfig", "BenchmarkResult", "DATASETS", "Dataset",
    "METHODS", "METRICS", "MODELS", "SweepConfig", "SweepResult", "TrainConfig", "attack",
    "build_model", "cleanliness", "compare", "controls", "distributed", "evaluate", "explain",
    "faithfulness", "gbp_safe_copy", "load_checkpoint", "load_dataset", "load_model",
    "load_robustbench", "new_model", "predict",
    "prefer_channels_last", "relative", "run_benchmark", "run_sweep", "score", "similarity", "train_model",
    "training_summary",
]
