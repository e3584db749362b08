"""Benchmarks run by ``edge-agent bench NAME``: each module has ``add_arguments`` and ``run``."""
