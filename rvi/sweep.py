"""The robustness-interpretability curve: models trained over a grid of training eps.

A sweep point is (dataset, architecture, training eps, seed). Its recipe is rvi's default
(:class:`~rvi.config.TrainConfig`) with the PGD-7 training attack scaled to eps (step size eps/3,
as the seed study's 0.3/0.1); eps 0 is the natural recipe. The eps 0.3 MNIST point is therefore
the very recipe of ``rvi bench``'s robust model, and shares its cached models.
"""

from __future__ import annotations

from ._checks import check_int, check_range
from .config import AttackConfig, TrainConfig

#: Training eps grids per dataset (MNIST: the seed study's 0.3 and around it; Fashion-MNIST's
#: usual budget is 0.1).
EPS_GRIDS = {
    "mnist": (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4),
    "mnist-5k": (0.0, 0.1, 0.2, 0.3),
    "fashion-mnist": (0.0, 0.05, 0.1, 0.15, 0.2),
    "synthetic": (0.0, 0.3),
}
#: PGD iterations of the training attack at every eps.
TRAIN_STEPS = 7


def sweep_recipe(eps: float, seed: int = 0) -> TrainConfig:
    """The training recipe of one sweep point: natural for ``eps == 0``, else PGD-7 at ``eps``
    with step size ``eps / 3`` (rounded to 10 decimals, so 0.3 gives exactly 0.1)."""
    check_range("eps", eps, 0.0, 1.0, low_open=False)
    check_int("seed", seed, 0)
    if eps == 0:
        return TrainConfig(seed=seed)
    attack = AttackConfig(eps=float(eps), alpha=round(eps / 3, 10), steps=TRAIN_STEPS)
    return TrainConfig(adversarial=True, attack=attack, seed=seed)
