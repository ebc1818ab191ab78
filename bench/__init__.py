"""Benchmarks that print JSON lines; run them from the repository root as ``python -m bench.<name>``."""
