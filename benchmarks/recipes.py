"""The training recipes the benchmark scripts share (so their cached models are the same)."""

from rvi import AttackConfig, TrainConfig

#: The seed study's training attack: torchattacks PGD(eps=0.3, alpha=0.1, steps=7).
SEED_ATTACK = AttackConfig(name="pgd", eps=0.3, alpha=0.1, steps=7, random_start=True)

#: Faster than the seed's 50 epochs of Adam 1e-3: a one-cycle schedule reaches its numbers sooner.
NATURAL = TrainConfig(adversarial=False, epochs=10, batch_size=128, optimizer="adam", lr=3e-3,
                      schedule="onecycle", seed=0)
ROBUST = TrainConfig(adversarial=True, attack=SEED_ATTACK, epochs=30, batch_size=128,
                     optimizer="adam", lr=3e-3, schedule="onecycle", seed=0)
