"""Models: the architectures, RobustBench's zoo, the training loop (natural or PGD adversarial
training) and the cache of trained models."""
