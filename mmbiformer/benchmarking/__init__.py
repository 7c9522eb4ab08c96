"""Benchmarks behind ``tools/benchmark.py``: ``pipeline`` times whole configs' training
iterations (:mod:`.pipeline`)."""
