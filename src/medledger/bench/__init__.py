"""Benchmarks: reproducible workloads whose every printed figure is measured in the run."""
