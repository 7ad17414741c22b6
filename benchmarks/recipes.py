"""The training recipes the benchmark scripts share (so their cached models are the same).

``NATURAL`` and ``ROBUST`` are rvi's defaults (``TrainConfig()``: Adam, one-cycle to 3e-3, batch
128) with the seed study's attack. For the seed's LeNet on full MNIST the automatic recipe is 12
epochs for natural and adversarial training alike, the adversarial eps rising over the first 3
and the first layer's filter 0 held at a single-pixel threshold for the first 6; it met the seed
study's accuracy table on each of 5 seeds (``seed_accuracy.md``). ``NATURAL_40``/``ROBUST_40``
are rvi 0.7-0.9's default (40 epochs, eps warm-up 5, no start; also each of 5 seeds,
``seed_accuracy_40_epochs.md``), still the automatic recipe outside MNIST and for models whose
first layer does not take the start. The seed study's own recipes were Adam at a constant 1e-3,
batch 128, 50 epochs each (``TrainConfig(epochs=50, lr=1e-3, schedule="constant")``, adversarial
or not).
"""

from typing import Optional

from rvi import AttackConfig, TrainConfig

#: The seed study's training attack: torchattacks PGD(eps=0.3, alpha=0.1, steps=7).
SEED_ATTACK = AttackConfig(name="pgd", eps=0.3, alpha=0.1, steps=7, random_start=True)

NATURAL = TrainConfig(adversarial=False, seed=0)
ROBUST = TrainConfig(adversarial=True, attack=SEED_ATTACK, seed=0)


def fewer_steps_attack(steps: int, alpha: Optional[float] = None) -> AttackConfig:
    """The training attack of ``recipe_sweep.py``'s fewer-steps family: PGD-``steps`` at the
    seed's eps with step ``alpha`` (default 2.5 eps / steps, the rule that gives about the seed's
    0.1 for 7)."""
    return AttackConfig(name="pgd", eps=0.3, alpha=alpha or 2.5 * 0.3 / steps, steps=steps,
                        random_start=True)


#: rvi 0.7-0.9's default recipe, written out: 40 epochs each, the eps warmed up over 5, no start.
ROBUST_40 = TrainConfig(adversarial=True, attack=SEED_ATTACK, epochs=40, eps_warmup_epochs=5,
                        threshold_start_epochs=0, seed=0)
NATURAL_40 = TrainConfig(adversarial=False, epochs=40, seed=0)
