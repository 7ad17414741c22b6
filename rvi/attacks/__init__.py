"""Adversarial examples from torchattacks (:mod:`~rvi.attacks.adversarial`: PGD, FGSM,
AutoAttack in L-inf or L2, sharded by one rule) and accuracy under them
(:mod:`~rvi.attacks.accuracy`: the one accuracy count)."""
