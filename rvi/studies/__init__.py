"""The studies users run: the 2×2 benchmark, users' and RobustBench models compared, and eps sweeps
with the engines that run their jobs."""
