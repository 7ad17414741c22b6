"""Results and how they read: :class:`~rvi.report.result.BenchmarkResult` and
:class:`~rvi.report.sweep_result.SweepResult` (save, load), their tables, figures, the terminal
summary and the one-page HTML report."""
