"""rvi: are adversarially robust neural networks more interpretable?

Adversarial examples come from torchattacks, attributions from Captum; rvi trains the models,
scores how clean their saliency maps are (with sanity controls) and reports the comparison.
"""

from .attacks import attack
from .config import AttackConfig, TrainConfig
from .data import DATASETS, Dataset, load_dataset
from .evaluate import evaluate, predict
from .models import MODELS, build_model
from .train import load_checkpoint, load_model, new_model, train_model

__version__ = "0.1.0"

__all__ = [
    "AttackConfig", "DATASETS", "Dataset", "MODELS", "TrainConfig", "attack", "build_model",
    "evaluate", "load_checkpoint", "load_dataset", "load_model", "new_model", "predict",
    "train_model",
]
