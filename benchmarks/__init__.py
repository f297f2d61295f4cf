"""Benchmarks for mockllm-tui (not part of the test suite): `python -m benchmarks.run`."""
