"""The training recipes the benchmark scripts share (so their cached models are the same).

They are rvi's defaults (``TrainConfig()``: Adam, one-cycle to 3e-3, batch 128, 40 epochs for
natural and adversarial training alike, the adversarial eps rising over the first 5), with the
seed study's attack. 40 PGD-7 epochs with that warm-up met the seed study's accuracy table on
each of 5 seeds (``recipe_sweep.md``); 20 epochs (rvi 0.5) met it on 2 of 5. The seed study's own
recipes were Adam at a constant 1e-3, batch 128, 50 epochs each
(``TrainConfig(epochs=50, lr=1e-3, schedule="constant")``, adversarial or not).
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


#: 0.3 of the default's training: 12 epochs, eps warm-up over 3, and filter 0 of the first layer
#: held at a single-pixel threshold at 1 - eps for the first 6 (``threshold_probe.py`` found that
#: start to meet the seed's targets on 5 of 5 seeds; the same recipe without it missed on seed 0).
ROBUST_THRESHOLD_START = TrainConfig(adversarial=True, attack=SEED_ATTACK, epochs=12,
                                     eps_warmup_epochs=3, threshold_start_epochs=6, seed=0)
#: Its natural partner, trained for the same 12 epochs.
NATURAL_12 = TrainConfig(adversarial=False, epochs=12, seed=0)
