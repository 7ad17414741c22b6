"""The training recipes the benchmark scripts share (so their cached models are the same).

They are rvi's defaults (``TrainConfig()``: Adam, one-cycle to 3e-3, batch 128, 20 epochs for
natural and adversarial training alike) with the epochs written out. 20 PGD-7 epochs are the
fewest tried on the CPU that reach the seed study's accuracy table (``recipe_sweep.md``,
``seed_accuracy.md``; 15 epochs, rvi 0.4's default, fell short for each of 5 seeds). The seed
study's own recipes were Adam at a constant 1e-3, batch 128, 50 epochs each
(``TrainConfig(epochs=50, lr=1e-3, schedule="constant")``, adversarial or not).
"""

from rvi import AttackConfig, TrainConfig

#: The seed study's training attack: torchattacks PGD(eps=0.3, alpha=0.1, steps=7).
SEED_ATTACK = AttackConfig(name="pgd", eps=0.3, alpha=0.1, steps=7, random_start=True)

NATURAL = TrainConfig(adversarial=False, epochs=20, seed=0)
ROBUST = TrainConfig(adversarial=True, attack=SEED_ATTACK, epochs=20, seed=0)
