"""Scoring one cell at a time: attack, accuracy, explain, score and the controls, into per-image
records (:mod:`~rvi.scoring.pipeline`), and a run's cost predicted before it starts."""
